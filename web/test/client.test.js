// The connection: state machine, reconnects and backoff, tokens, commands, ping.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, DuplexError, ErrorCode, PROTOCOL, backoffDelay, shouldReconnect } from '../duplex.js';
import { connectClient, fakeWebSocket, flush, record } from './fake-websocket.js';

const URL = 'ws://gateway.test/ws';

// Every client a test makes is stopped after it, even when the test failed
// half-way, so that no timer outlives its test.
const clients = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function setup(options = {}) {
  const WS = fakeWebSocket();
  const client = new Client(URL, { WebSocket: WS, random: () => 0.5, ...options });
  clients.push(client);
  return { WS, client };
}

test('backoffDelay: full jitter under a cap that doubles up to the maximum', () => {
  assert.equal(backoffDelay(0, 500, 20000, () => 0), 0);
  assert.equal(backoffDelay(0, 500, 20000, () => 0.999999), 499);
  assert.equal(backoffDelay(1, 500, 20000, () => 0.5), 500);
  assert.equal(backoffDelay(3, 500, 20000, () => 0.5), 2000);
  assert.equal(backoffDelay(6, 500, 20000, () => 0.999999), 19999); // 32000 capped at 20000
  assert.equal(backoffDelay(1000, 500, 20000, () => 0.5), 10000); // no overflow
  for (let attempt = 0; attempt < 12; attempt++) {
    const d = backoffDelay(attempt, 500, 20000);
    assert.ok(d >= 0 && d < Math.min(20000, 500 * 2 ** attempt), `attempt ${attempt}: ${d}`);
  }
});

test('shouldReconnect follows the close code table', () => {
  for (const code of [1000, 1002, 1007, 1009, 4500, 4501, 4502, 4505, 4999]) {
    assert.equal(shouldReconnect(code), false, String(code));
  }
  for (const code of [1001, 1005, 1006, 1008, 1011, 4000, 4001, 4002, 4003, 4004, 4005, 4006, 4499]) {
    assert.equal(shouldReconnect(code), true, String(code));
  }
});

test('constructor needs a WebSocket implementation', () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    assert.throws(() => new Client(URL), TypeError);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('connect opens the socket with the subprotocol and sends connect first', async () => {
  const { WS, client } = setup({ token: 'jwt-1', name: 'tests' });
  const states = record(client, 'state');
  const connected = record(client, 'connected');
  assert.equal(client.state, 'disconnected');
  client.connect();
  assert.equal(client.state, 'connecting');
  const ws = WS.last;
  assert.equal(ws.url, URL);
  assert.equal(ws.protocols, PROTOCOL);
  assert.equal(PROTOCOL, 'duplex.v1.json');
  ws.open();
  await flush();
  assert.equal(ws.sent.length, 1);
  assert.deepEqual(JSON.parse(ws.sent[0]), { id: 1, method: 'connect', name: 'tests', token: 'jwt-1' });
  ws.reply('connect', { client: 'abc', user: 'alice', version: '1', ping: 25 });
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected']);
  assert.deepEqual(connected, [{ client: 'abc', user: 'alice', expires: 0, version: '1', transport: 'websocket' }]);
  client.disconnect();
});

test('anonymous connect sends the default name and no token', async () => {
  const { WS, client } = setup();
  client.connect();
  WS.last.open();
  await flush();
  assert.deepEqual(WS.last.commands[0], { id: 1, method: 'connect', name: 'duplex.js' });
  client.disconnect();
});

test('state machine: connecting → connected → disconnected → connecting → connected', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const states = record(client, 'state');
  const events = [];
  for (const e of ['connecting', 'connected', 'disconnected']) client.on(e, () => events.push(e));
  const ws1 = await connectClient(client, WS);
  const gone = record(client, 'disconnected');
  ws1.serverClose(1006);
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(gone, [{ code: 1006, reason: '', reconnect: true, delay: 250 }]);
  t.mock.timers.tick(249);
  assert.equal(WS.sockets.length, 1);
  t.mock.timers.tick(1);
  assert.equal(WS.sockets.length, 2);
  assert.equal(client.state, 'connecting');
  await connectClient(client, WS);
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
  assert.deepEqual(events, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
  client.disconnect();
});

test('no reconnect after 1000, 1002, 1007, 1009 and 4500–4999', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  for (const code of [1000, 1002, 1007, 1009, 4500, 4501, 4502, 4505, 4999]) {
    const { WS, client } = setup();
    const ws = await connectClient(client, WS);
    const gone = record(client, 'disconnected');
    ws.serverClose(code, 'bye');
    assert.deepEqual(gone, [{ code, reason: 'bye', reconnect: false }], String(code));
    assert.equal(client.state, 'disconnected');
    t.mock.timers.tick(60000);
    assert.equal(WS.sockets.length, 1, `no new socket after ${code}`);
  }
});

test('reconnect after 1001, 1006, 1008, 1011 and 4000–4499', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  for (const code of [1001, 1006, 1008, 1011, 4000, 4001, 4002, 4004, 4005, 4006, 4499]) {
    const { WS, client } = setup();
    const ws = await connectClient(client, WS);
    const gone = record(client, 'disconnected');
    ws.serverClose(code);
    assert.equal(gone[0].reconnect, true, String(code));
    t.mock.timers.tick(500);
    assert.equal(WS.sockets.length, 2, `new socket after ${code}`);
    assert.equal(client.state, 'connecting');
    client.disconnect();
  }
});

test('a failed connection attempt reconnects too', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  client.connect();
  WS.last.serverClose(1006); // the handshake failed: never opened
  assert.equal(client.state, 'disconnected');
  t.mock.timers.tick(250);
  assert.equal(WS.sockets.length, 2);
  client.disconnect();
});

test('backoff: delays grow under the cap with full jitter from the random option', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const randoms = [0.9, 0.1, 0.5, 0.99, 0.75, 0.2, 0.6];
  let i = 0;
  const { WS, client } = setup({ random: () => randoms[i++], minReconnectDelay: 100, maxReconnectDelay: 1000 });
  const gone = record(client, 'disconnected');
  client.connect();
  for (let n = 0; n < randoms.length; n++) {
    WS.last.serverClose(1006);
    t.mock.timers.tick(gone.at(-1).delay);
    assert.equal(WS.sockets.length, n + 2);
  }
  const caps = [100, 200, 400, 800, 1000, 1000, 1000];
  assert.deepEqual(
    gone.map((g) => g.delay),
    randoms.map((r, n) => Math.floor(r * caps[n])),
  );
  client.disconnect();
});

test('backoff starts over after a connection stayed up, not after a flapping one', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  const { WS, client } = setup({ random: () => 0.999, minReconnectDelay: 100, maxReconnectDelay: 100000 });
  const gone = record(client, 'disconnected');
  client.connect();
  WS.last.serverClose(1006);
  t.mock.timers.tick(gone.at(-1).delay);
  WS.last.serverClose(1006);
  t.mock.timers.tick(gone.at(-1).delay);
  let ws = await connectClient(client, WS);
  ws.serverClose(4004); // connected only a moment: keep backing off
  assert.equal(gone.at(-1).delay, 399);
  t.mock.timers.tick(gone.at(-1).delay);
  ws = await connectClient(client, WS);
  t.mock.timers.tick(60000); // stable now
  ws.serverClose(1001);
  assert.equal(gone.at(-1).delay, 99);
  client.disconnect();
});

test('disconnect() closes with 1000, stops reconnecting and rejects calls', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const inflight = client.publish('demo:x', 1);
  await flush();
  const gone = record(client, 'disconnected');
  client.disconnect();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: 'disconnect called' });
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(gone, [{ code: 1000, reason: 'disconnect called', reconnect: false }]);
  await assert.rejects(inflight, { code: ErrorCode.DISCONNECTED });
  const queued = client.publish('demo:x', 2);
  client.disconnect(); // again: rejects what waits, emits nothing new
  await assert.rejects(queued, { code: ErrorCode.DISCONNECTED });
  assert.equal(gone.length, 1);
  t.mock.timers.tick(100000);
  assert.equal(WS.sockets.length, 1);
});

test('disconnect() during the backoff wait cancels the reconnect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  (await connectClient(client, WS)).serverClose(1006);
  client.disconnect();
  t.mock.timers.tick(100000);
  assert.equal(WS.sockets.length, 1);
  client.connect(); // and connect() starts again at once
  assert.equal(WS.sockets.length, 2);
  client.disconnect();
});

test('disconnect() while connecting: one disconnected event, no error', async () => {
  const { WS, client } = setup({ token: 't', getToken: async () => 't2' });
  const gone = record(client, 'disconnected');
  const errors = record(client, 'error');
  client.connect();
  WS.last.open();
  await flush(); // connect sent, no reply yet
  client.disconnect();
  assert.deepEqual(gone, [{ code: 1000, reason: 'disconnect called', reconnect: false }]);
  assert.deepEqual(errors, []);
  assert.equal(WS.last.closedWith.code, 1000);
  // And while getToken is still running: no socket at all.
  const { WS: WS2, client: c2 } = setup({ getToken: () => new Promise((r) => setTimeout(r, 5, 'late')) });
  c2.connect();
  c2.disconnect();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(WS2.sockets.length, 0);
  assert.equal(c2.state, 'disconnected');
});

test('an error reply to connect is reported and the client reconnects', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const errors = record(client, 'error');
  const gone = record(client, 'disconnected');
  client.connect();
  WS.last.open();
  await flush();
  WS.last.replyError('connect', 107, 'bad request');
  assert.equal(errors[0].code, 107);
  assert.equal(WS.sockets[0].closedWith.code, 4000);
  assert.equal(gone[0].reconnect, true);
  t.mock.timers.tick(gone[0].delay);
  assert.equal(WS.sockets.length, 2);
});

test('a binary message is reported as an error', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const errors = record(client, 'error');
  ws.onmessage({ data: new ArrayBuffer(4) });
  assert.equal(errors[0].code, ErrorCode.BAD_MESSAGE);
  assert.equal(client.state, 'connected');
});

test('connect timeout: no connect reply in time closes with 4000 and reconnects', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup({ timeout: 3000 });
  const gone = record(client, 'disconnected');
  client.connect();
  WS.last.open();
  await flush();
  t.mock.timers.tick(3000);
  assert.equal(WS.sockets[0].closedWith.code, 4000);
  assert.equal(gone[0].code, 4000);
  assert.equal(gone[0].reconnect, true);
  t.mock.timers.tick(gone[0].delay);
  assert.equal(WS.sockets.length, 2);
  client.disconnect();
});

test('getToken is called when there is no token', async () => {
  let calls = 0;
  const { WS, client } = setup({ getToken: async () => `tok-${++calls}` });
  client.connect();
  await flush();
  WS.last.open();
  await flush();
  assert.equal(WS.last.last('connect').token, 'tok-1');
  client.disconnect();
});

test('4003 fetches a new token with getToken before reconnecting', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let calls = 0;
  const { WS, client } = setup({ token: 'old', getToken: async () => `new-${++calls}` });
  const ws = await connectClient(client, WS);
  assert.equal(ws.last('connect').token, 'old');
  assert.equal(calls, 0);
  ws.serverClose(4003, 'token expired');
  t.mock.timers.tick(250);
  await flush();
  assert.equal(calls, 1);
  WS.last.open();
  await flush();
  assert.equal(WS.last.last('connect').token, 'new-1');
  client.disconnect();
});

test('a failing getToken reports an error and retries with backoff', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let calls = 0;
  const { WS, client } = setup({
    getToken: async () => {
      if (++calls === 1) throw new Error('auth server down');
      return 'tok';
    },
  });
  const errors = record(client, 'error');
  const gone = record(client, 'disconnected');
  client.connect();
  await flush();
  assert.equal(WS.sockets.length, 0);
  assert.equal(errors[0].code, ErrorCode.TOKEN);
  assert.match(errors[0].message, /auth server down/);
  assert.equal(gone[0].reconnect, true);
  t.mock.timers.tick(gone[0].delay);
  await flush();
  assert.equal(WS.sockets.length, 1);
  client.disconnect();
});

test('refresh: a new token is sent at 80–90% of the time left before expires', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  let calls = 0;
  const { WS, client } = setup({ token: 't0', random: () => 0, getToken: async () => `t${++calls}` });
  const expires = Date.now() / 1000 + 100; // 100 s from now
  const ws = await connectClient(client, WS, { expires });
  t.mock.timers.tick(79_999);
  await flush();
  assert.equal(calls, 0);
  t.mock.timers.tick(1); // 80% of 100 s with random() = 0
  await flush();
  assert.equal(calls, 1);
  assert.equal(ws.last('refresh').token, 't1');
  ws.reply('refresh', { expires: Date.now() / 1000 + 50 });
  t.mock.timers.tick(40_000);
  await flush();
  assert.equal(calls, 2);
  assert.equal(ws.last('refresh').token, 't2');
  // The refreshed token is the one a reconnect uses.
  ws.reply('refresh', { expires: 0 });
  ws.serverClose(1006);
  t.mock.timers.tick(1000);
  WS.last.open();
  await flush();
  assert.equal(WS.last.last('connect').token, 't2');
  client.disconnect();
});

test('refresh error 109 is reported and the connection stays', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { WS, client } = setup({ token: 't0', random: () => 0.5, getToken: async () => 'bad' });
  const errors = record(client, 'error');
  const ws = await connectClient(client, WS, { expires: 10 });
  t.mock.timers.tick(8500); // 85% of 10 s
  await flush();
  ws.replyError('refresh', 109, 'invalid token');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 109);
  assert.equal(client.state, 'connected');
  client.disconnect();
});

test('no getToken, no refresh', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { WS, client } = setup({ token: 't0', pingInterval: 0 });
  const ws = await connectClient(client, WS, { expires: 10 });
  t.mock.timers.tick(20000);
  await flush();
  assert.equal(ws.last('refresh'), undefined);
  client.disconnect();
});

test('replies are matched by id; an error reply rejects with its code', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const a = client.publish('demo:a', { n: 1 });
  const b = client.history('demo:b', { limit: 2 });
  const c = client.presence('demo:c');
  await flush();
  const [pa, hb, pc] = ws.commands.slice(1);
  assert.deepEqual(pa, { id: pa.id, method: 'publish', channel: 'demo:a', data: { n: 1 } });
  assert.deepEqual(hb, { id: hb.id, method: 'history', channel: 'demo:b', limit: 2 });
  assert.deepEqual(pc, { id: pc.id, method: 'presence', channel: 'demo:c' });
  ws.push(
    { id: pc.id, error: { code: 103, message: 'permission denied' } },
    { id: pa.id, result: { offset: 7, epoch: 'E' } },
    { id: hb.id, result: { publications: [{ offset: 6, epoch: 'E', data: 'x' }], offset: 7, epoch: 'E', truncated: true } },
  );
  assert.deepEqual(await a, { offset: 7, epoch: 'E' });
  assert.deepEqual(await b, {
    publications: [{ channel: 'demo:b', data: 'x', offset: 6, epoch: 'E', info: undefined }],
    offset: 7,
    epoch: 'E',
    truncated: true,
  });
  const err = await c.catch((e) => e);
  assert.ok(err instanceof DuplexError);
  assert.equal(err.code, 103);
  assert.equal(err.message, 'permission denied');
  client.disconnect();
});

test('commands sent in the same tick go out as one message, one object a line', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const before = ws.sent.length;
  const calls = [client.publish('demo:a', 1), client.publish('demo:a', 2), client.presenceStats('demo:a')];
  for (const p of calls) p.catch(() => {}); // never answered: rejected by disconnect()
  await flush();
  assert.equal(ws.sent.length, before + 1);
  const lines = ws.sent.at(-1).split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((c) => c.method),
    ['publish', 'publish', 'presence_stats'],
  );
  assert.equal(new Set(lines.map((c) => c.id)).size, 3);
  client.disconnect();
});

test('incoming messages holding several objects separated by newlines', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const sub = client.subscribe('demo:chat');
  const p1 = client.publish('demo:chat', 'a');
  const p2 = client.publish('demo:chat', 'b');
  await flush();
  const [s, a, b] = ws.commands.slice(1);
  const pubs = record(sub, 'publication');
  ws.message(
    [
      { id: s.id, result: { epoch: 'E', offset: 0, recoverable: true } },
      { id: a.id, result: { offset: 1, epoch: 'E' } },
      { push: 'pub', channel: 'demo:chat', offset: 1, epoch: 'E', data: 'a' },
      { id: b.id, result: { offset: 2, epoch: 'E' } },
      { push: 'pub', channel: 'demo:chat', offset: 2, epoch: 'E', data: 'b' },
    ]
      .map((o) => JSON.stringify(o))
      .join('\n') + '\n',
  );
  assert.deepEqual(await p1, { offset: 1, epoch: 'E' });
  assert.deepEqual(await p2, { offset: 2, epoch: 'E' });
  assert.deepEqual(
    pubs.map((p) => p.data),
    ['a', 'b'],
  );
  client.disconnect();
});

test('invalid JSON is reported as an error and the other lines still count', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const errors = record(client, 'error');
  const p = client.publish('demo:a', 1);
  await flush();
  ws.message(`{oops\n${JSON.stringify({ id: ws.last('publish').id, result: {} })}`);
  assert.deepEqual(await p, {});
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, ErrorCode.BAD_MESSAGE);
  assert.equal(client.state, 'connected');
  client.disconnect();
});

test('calls made while disconnected wait for the connection', async () => {
  const { WS, client } = setup();
  const p = client.publish('demo:a', 'early');
  client.connect();
  WS.last.open();
  await flush();
  assert.equal(WS.last.last('publish'), undefined); // connect must succeed first
  WS.last.reply('connect', { client: 'c1' });
  await flush();
  const cmd = WS.last.reply('publish', { offset: 1, epoch: 'E' });
  assert.equal(cmd.data, 'early');
  assert.deepEqual(await p, { offset: 1, epoch: 'E' });
  client.disconnect();
});

test('rpc sends params and resolves with the backend\'s data; its errors reject with their code', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const p = client.rpc('whoami', { x: 1 });
  await flush();
  const cmd = ws.reply('rpc', { data: { user: 'alice' } });
  assert.deepEqual(cmd.params, { method: 'whoami', data: { x: 1 } });
  assert.deepEqual(await p, { user: 'alice' });
  const q = client.rpc('nope');
  await flush();
  assert.deepEqual(ws.last('rpc').params, { method: 'nope' });
  ws.replyError('rpc', 1404, 'no such method');
  await assert.rejects(q, { code: 1404, message: 'no such method' });
  client.disconnect();
});

test('calls waiting for a connection reject after timeout', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup({ timeout: 2000 });
  client.connect(); // never answered
  const p = client.presence('demo:a');
  t.mock.timers.tick(2000);
  await assert.rejects(p, { code: ErrorCode.TIMEOUT });
  client.disconnect();
  assert.equal(WS.sockets.length, 1);
});

test('a command without a reply rejects after timeout; a late reply is ignored', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup({ timeout: 2000, pingInterval: 0 });
  const ws = await connectClient(client, WS);
  const p = client.history('demo:a');
  await flush();
  t.mock.timers.tick(2000);
  await assert.rejects(p, { code: ErrorCode.TIMEOUT });
  ws.reply('history', { publications: [] }); // must not throw
  client.disconnect();
});

test('a command in flight rejects with CONNECTION_LOST when the connection drops', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const p = client.publish('demo:a', 1);
  await flush();
  ws.serverClose(1006);
  await assert.rejects(p, { code: ErrorCode.CONNECTION_LOST });
  client.disconnect();
});

test('calls waiting for a connection reject when the client stops for good', async () => {
  const { WS, client } = setup();
  client.connect();
  const p = client.publish('demo:a', 1);
  WS.last.serverClose(4501, 'unauthorized');
  await assert.rejects(p, { code: ErrorCode.DISCONNECTED });
});

test('ping: sent after pingInterval of silence; no reply within pingTimeout closes with 4000 and reconnects', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup({ pingInterval: 1000, pingTimeout: 500 });
  const gone = record(client, 'disconnected');
  const ws = await connectClient(client, WS);
  t.mock.timers.tick(999);
  await flush();
  assert.equal(ws.last('ping'), undefined);
  t.mock.timers.tick(1);
  await flush();
  assert.ok(ws.last('ping'));
  ws.reply('ping'); // answered: the connection stays
  t.mock.timers.tick(999);
  await flush();
  assert.equal(client.state, 'connected');
  assert.equal(ws.commands.filter((c) => c.method === 'ping').length, 1);
  t.mock.timers.tick(1); // second ping, never answered
  await flush();
  assert.equal(ws.commands.filter((c) => c.method === 'ping').length, 2);
  t.mock.timers.tick(499);
  assert.equal(client.state, 'connected');
  t.mock.timers.tick(1);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: 'ping timeout' });
  assert.equal(gone[0].code, 4000);
  assert.equal(gone[0].reconnect, true);
  t.mock.timers.tick(gone[0].delay);
  assert.equal(WS.sockets.length, 2);
  client.disconnect();
});

test('ping: incoming messages postpone it', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup({ pingInterval: 1000 });
  const ws = await connectClient(client, WS);
  client.subscribe('demo:a');
  await flush();
  ws.reply('subscribe', { epoch: '', offset: 0 });
  for (let i = 0; i < 5; i++) {
    t.mock.timers.tick(900);
    ws.push({ push: 'pub', channel: 'demo:a', data: i });
  }
  await flush();
  assert.equal(ws.last('ping'), undefined);
  client.disconnect();
});

test('a throwing listener does not break the client', async (t) => {
  const { WS, client } = setup();
  const thrown = [];
  globalThis.reportError = (err) => thrown.push(err); // as browsers have it
  t.after(() => delete globalThis.reportError);
  client.on('connected', () => {
    throw new Error('app bug');
  });
  const states = record(client, 'state');
  await connectClient(client, WS);
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected']);
  await flush();
  assert.equal(thrown.length, 1);
  assert.equal(thrown[0].message, 'app bug');
  client.disconnect();
});

test('off removes a listener', async () => {
  const { WS, client } = setup();
  const seen = [];
  const fn = (s) => seen.push(s);
  client.on('state', fn).off('state', fn);
  await connectClient(client, WS);
  assert.deepEqual(seen, []);
  client.disconnect();
});
