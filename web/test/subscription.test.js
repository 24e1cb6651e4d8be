// Subscriptions: resubscribe with recovery, exactly-once delivery, gaps, server pushes.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ErrorCode } from '../duplex.js';
import { connectClient, fakeWebSocket, flush, record } from './fake-websocket.js';

const CH = 'demo:chat';

// Every client a test makes is stopped after it, even when the test failed
// half-way, so that no timer outlives its test.
const clients = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function setup(options = {}) {
  const WS = fakeWebSocket();
  const client = new Client('ws://gateway.test/ws', { WebSocket: WS, random: () => 0.5, ...options });
  clients.push(client);
  return { WS, client };
}

const pub = (offset, data = offset, epoch = 'E1') => ({ push: 'pub', channel: CH, offset, epoch, data });
const offsets = (pubs) => pubs.map((p) => p.offset);

/** A client subscribed to CH with the stream at `offset`; returns its socket and records. */
async function subscribed(result = { epoch: 'E1', offset: 10, recoverable: true }, options = {}) {
  const { WS, client } = setup(options.client);
  const sub = client.subscribe(CH, options.sub);
  const pubs = record(sub, 'publication');
  const gaps = record(sub, 'gap');
  const subs = record(sub, 'subscribed');
  const ws = await connectClient(client, WS);
  ws.reply('subscribe', result);
  return { WS, client, sub, ws, pubs, gaps, subs };
}

/** Drops the connection and answers the next connect; returns the new socket. */
async function reconnect(t, client, WS, code = 1006) {
  WS.last.serverClose(code);
  t.mock.timers.tick(20000);
  return connectClient(client, WS);
}

test('subscribe is sent once connected; subscribing again returns the same object', async () => {
  const { WS, client } = setup();
  const sub = client.subscribe(CH);
  assert.equal(client.subscribe(CH), sub);
  assert.equal(client.getSubscription(CH), sub);
  assert.equal(sub.state, 'subscribing');
  const subs = record(sub, 'subscribed');
  const ws = await connectClient(client, WS);
  const cmd = ws.last('subscribe');
  assert.deepEqual(cmd, { id: cmd.id, method: 'subscribe', channel: CH });
  ws.reply('subscribe', { epoch: 'E1', offset: 41, recoverable: true, publications: [] });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(subs, [
    { channel: CH, recovered: false, recoverable: true, epoch: 'E1', offset: 41, latest: false },
  ]);
  assert.deepEqual(sub.position, { offset: 41, epoch: 'E1' });
  client.disconnect();
});

test('subscribe while connected is sent at once, with the channel token', async () => {
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  client.subscribe('secret:a', { token: 'chan-jwt' });
  await flush();
  assert.equal(ws.last('subscribe').token, 'chan-jwt');
  client.disconnect();
});

test('getToken for a channel: asked when there is no token, and again after error 109', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const asked = [];
  const { WS, client } = setup();
  const ws = await connectClient(client, WS);
  const sub = client.subscribe('secret:a', { getToken: async (ch) => (asked.push(ch), `ct${asked.length}`) });
  const errors = record(sub, 'error');
  await flush();
  assert.deepEqual(asked, ['secret:a']);
  assert.equal(ws.last('subscribe').token, 'ct1');
  ws.replyError('subscribe', 109, 'invalid token');
  assert.equal(errors[0].code, 109);
  t.mock.timers.tick(1000);
  await flush();
  assert.equal(ws.last('subscribe').token, 'ct2');
  ws.reply('subscribe', { epoch: '', offset: 0 });
  assert.equal(sub.state, 'subscribed');
  client.disconnect();
});

test('after a reconnect the subscription resumes from the highest publication seen', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, subs } = await subscribed();
  ws.push(pub(11), pub(12));
  assert.deepEqual(offsets(pubs), [11, 12]);
  const ws2 = await reconnect(t, client, WS);
  const cmd = ws2.last('subscribe');
  assert.deepEqual(cmd.since, { offset: 12, epoch: 'E1' });
  ws2.reply('subscribe', {
    epoch: 'E1',
    offset: 14,
    recoverable: true,
    recovered: true,
    publications: [pub(13), pub(14)],
  });
  assert.deepEqual(offsets(pubs), [11, 12, 13, 14]);
  assert.equal(subs.at(-1).recovered, true);
  ws2.push(pub(15));
  assert.deepEqual(offsets(pubs), [11, 12, 13, 14, 15]);
  client.disconnect();
});

test('with no publication seen, the resubscribe uses the subscribe result position', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = await subscribed({ epoch: 'E1', offset: 41, recoverable: true });
  const ws2 = await reconnect(t, client, WS, 1001);
  assert.deepEqual(ws2.last('subscribe').since, { offset: 41, epoch: 'E1' });
  client.disconnect();
});

test('the since option is sent on the first subscribe', async () => {
  const { WS, client } = setup();
  const sub = client.subscribe(CH, { since: { offset: 5, epoch: 'E0' } });
  const pubs = record(sub, 'publication');
  const ws = await connectClient(client, WS);
  assert.deepEqual(ws.last('subscribe').since, { offset: 5, epoch: 'E0' });
  ws.reply('subscribe', {
    epoch: 'E0',
    offset: 6,
    recoverable: true,
    recovered: true,
    publications: [pub(6, 6, 'E0')],
  });
  assert.deepEqual(offsets(pubs), [6]);
  client.disconnect();
});

test('exactly once: duplicates among recovered and held-back live publications are dropped', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, gaps } = await subscribed();
  ws.push(pub(11), pub(12), pub(12)); // a repeated live publication too
  const ws2 = await reconnect(t, client, WS);
  // Live publications that arrive before the reply are held back, then merged in order.
  ws2.push(pub(13), pub(14), pub(15));
  assert.deepEqual(offsets(pubs), [11, 12]);
  ws2.reply('subscribe', {
    epoch: 'E1',
    offset: 14,
    recoverable: true,
    recovered: true,
    publications: [pub(11), pub(12), pub(13), pub(14)], // 11, 12: already delivered
  });
  ws2.push(pub(15), pub(16));
  assert.deepEqual(offsets(pubs), [11, 12, 13, 14, 15, 16]);
  assert.deepEqual(gaps, []);
  client.disconnect();
});

test('publications of a connection that dropped before its reply are recovered, not lost', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, pubs } = await subscribed();
  const ws2 = await reconnect(t, client, WS);
  ws2.push(pub(11)); // held back: no reply yet
  const ws3 = await reconnect(t, client, WS);
  assert.deepEqual(ws3.last('subscribe').since, { offset: 10, epoch: 'E1' });
  ws3.reply('subscribe', { epoch: 'E1', offset: 11, recoverable: true, recovered: true, publications: [pub(11)] });
  assert.deepEqual(offsets(pubs), [11]);
  client.disconnect();
});

test("recovered: false emits 'gap' (unrecoverable) and continues from the new position", async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, gaps, subs } = await subscribed();
  ws.push(pub(11));
  const ws2 = await reconnect(t, client, WS);
  ws2.reply('subscribe', { epoch: 'E1', offset: 500, recoverable: true, recovered: false, publications: [] });
  assert.deepEqual(gaps, [
    { channel: CH, from: 12, to: 500, epoch: 'E1', reason: 'unrecoverable', since: { offset: 11, epoch: 'E1' } },
  ]);
  assert.equal(subs.at(-1).recovered, false);
  ws2.push(pub(501));
  assert.deepEqual(offsets(pubs), [11, 501]);
  assert.equal(gaps.length, 1);
  client.disconnect();
});

test("a new epoch on resubscribe is a 'gap' and resets tracking", async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, gaps } = await subscribed();
  ws.push(pub(11));
  const ws2 = await reconnect(t, client, WS);
  ws2.reply('subscribe', { epoch: 'E2', offset: 3, recoverable: true, recovered: false });
  // The new stream's offsets 1..3 were missed, and the old one's after 11.
  assert.deepEqual(gaps, [
    { channel: CH, from: 1, to: 3, epoch: 'E2', reason: 'unrecoverable', since: { offset: 11, epoch: 'E1' } },
  ]);
  ws2.push(pub(4, 'x', 'E2'));
  assert.deepEqual(offsets(pubs), [11, 4]);
  const ws3 = await reconnect(t, client, WS);
  assert.deepEqual(ws3.last('subscribe').since, { offset: 4, epoch: 'E2' });
  client.disconnect();
});

test("a gap push emits 'gap' (dropped) and the next publication is not reported again", async () => {
  const { client, ws, pubs, gaps } = await subscribed();
  ws.push(pub(11), { push: 'gap', channel: CH, epoch: 'E1', from: 12, to: 20 }, pub(21), pub(22));
  assert.deepEqual(gaps, [{ channel: CH, from: 12, to: 20, epoch: 'E1', reason: 'dropped' }]);
  assert.deepEqual(offsets(pubs), [11, 21, 22]);
  client.disconnect();
});

test("an offset that skips without a gap push emits 'gap' (dropped) before the publication", async () => {
  const { client, sub, ws } = await subscribed();
  const order = [];
  sub.on('gap', (g) => order.push(`gap ${g.from}-${g.to} ${g.reason}`));
  sub.on('publication', (p) => order.push(`pub ${p.offset}`));
  ws.push(pub(11), pub(14), pub(15));
  assert.deepEqual(order, ['pub 11', 'gap 12-13 dropped', 'pub 14', 'pub 15']);
  client.disconnect();
});

test('latest: true allows skipping offsets without a gap', async () => {
  const { client, ws, pubs, gaps, subs } = await subscribed({ epoch: 'E1', offset: 10, recoverable: true, latest: true });
  assert.equal(subs[0].latest, true);
  ws.push(pub(11), pub(19), pub(19), pub(30));
  assert.deepEqual(offsets(pubs), [11, 19, 30]);
  assert.deepEqual(gaps, []);
  client.disconnect();
});

test('a namespace without history resubscribes without since and delivers everything', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, gaps, sub } = await subscribed({ epoch: '', offset: 0, recoverable: false });
  ws.push({ push: 'pub', channel: CH, data: 'a' }, { push: 'pub', channel: CH, data: 'a' });
  assert.equal(sub.position, null);
  const ws2 = await reconnect(t, client, WS);
  const cmd = ws2.last('subscribe');
  assert.equal('since' in cmd, false);
  ws2.reply('subscribe', { epoch: '', offset: 0, recoverable: false });
  ws2.push({ push: 'pub', channel: CH, data: 'b' });
  assert.deepEqual(
    pubs.map((p) => [p.data, p.offset]),
    [
      ['a', undefined],
      ['a', undefined],
      ['b', undefined],
    ],
  );
  assert.deepEqual(gaps, []);
  client.disconnect();
});

test('publication events carry channel, data, offset, epoch and info', async () => {
  const { client, ws, pubs } = await subscribed();
  const info = { client: 'c9', user: 'bob' };
  ws.push({ push: 'pub', channel: CH, offset: 11, epoch: 'E1', data: { text: 'hi' }, info });
  ws.push({ push: 'pub', channel: 'demo:other', offset: 1, epoch: 'X', data: 'not ours' });
  assert.deepEqual(pubs, [{ channel: CH, data: { text: 'hi' }, offset: 11, epoch: 'E1', info }]);
  client.disconnect();
});

test('join and leave pushes become events', async () => {
  const { client, sub, ws } = await subscribed();
  const joins = record(sub, 'join');
  const leaves = record(sub, 'leave');
  ws.push(
    { push: 'join', channel: CH, info: { client: 'c2', user: 'u2' } },
    { push: 'leave', channel: CH, info: { client: 'c2', user: 'u2' } },
  );
  assert.deepEqual(joins, [{ client: 'c2', user: 'u2' }]);
  assert.deepEqual(leaves, [{ client: 'c2', user: 'u2' }]);
  client.disconnect();
});

test("the server's unsubscribe push ends the subscription: no resubscribe", async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, sub, ws, pubs } = await subscribed();
  const ended = record(sub, 'unsubscribed');
  ws.push({ push: 'unsubscribe', channel: CH, code: 2000, reason: 'kicked' }, pub(11));
  assert.deepEqual(ended, [{ code: 2000, reason: 'kicked' }]);
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.getSubscription(CH), undefined);
  assert.deepEqual(pubs, []);
  const ws2 = await reconnect(t, client, WS);
  assert.equal(ws2.last('subscribe'), undefined);
  client.disconnect();
});

test('unsubscribe() sends unsubscribe; subscribing again makes a new subscription', async () => {
  const { client, sub, ws, pubs } = await subscribed();
  const ended = record(sub, 'unsubscribed');
  sub.unsubscribe();
  sub.unsubscribe(); // once is enough
  await flush();
  assert.equal(ws.commands.filter((c) => c.method === 'unsubscribe').length, 1);
  assert.equal(ws.last('unsubscribe').channel, CH);
  assert.deepEqual(ended, [{ code: 0, reason: 'unsubscribe called' }]);
  ws.push(pub(11));
  assert.deepEqual(pubs, []);
  const again = client.subscribe(CH);
  assert.notEqual(again, sub);
  await flush();
  assert.equal(ws.commands.filter((c) => c.method === 'subscribe').length, 2);
  client.disconnect();
});

test('unsubscribe() while disconnected sends nothing and cancels the resubscribe', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, sub } = await subscribed();
  WS.last.serverClose(1006);
  sub.unsubscribe();
  t.mock.timers.tick(20000);
  const ws2 = await connectClient(client, WS);
  assert.equal(ws2.last('subscribe'), undefined);
  assert.equal(ws2.last('unsubscribe'), undefined);
  client.disconnect();
});

test("a refused subscribe emits 'error' and 'unsubscribed'", async () => {
  const { WS, client } = setup();
  const sub = client.subscribe('private:x');
  const errors = record(sub, 'error');
  const ended = record(sub, 'unsubscribed');
  const ws = await connectClient(client, WS);
  ws.replyError('subscribe', 103, 'permission denied');
  assert.equal(errors[0].code, 103);
  assert.deepEqual(ended, [{ code: 103, reason: 'permission denied' }]);
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.getSubscription('private:x'), undefined);
  client.disconnect();
});

test('an internal error (100) on subscribe is retried with backoff', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const sub = client.subscribe(CH);
  const errors = record(sub, 'error');
  const ws = await connectClient(client, WS);
  ws.replyError('subscribe', 100, 'internal');
  assert.equal(errors.length, 1);
  assert.equal(sub.state, 'subscribing');
  t.mock.timers.tick(250);
  await flush();
  assert.equal(ws.commands.filter((c) => c.method === 'subscribe').length, 2);
  ws.reply('subscribe', { epoch: 'E1', offset: 0 });
  assert.equal(sub.state, 'subscribed');
  client.disconnect();
});

test('publish, presence, presenceStats and history through a subscription', async () => {
  const { client, sub, ws } = await subscribed();
  const p = sub.publish({ user: 'ann', text: 'hi' });
  const pr = sub.presence();
  const ps = sub.presenceStats();
  const h = sub.history({ limit: 50, since: { offset: 3, epoch: 'E1' }, reverse: true });
  await flush();
  const cmds = ws.commands.slice(-4);
  assert.deepEqual(
    cmds.map(({ id, ...rest }) => rest),
    [
      { method: 'publish', channel: CH, data: { user: 'ann', text: 'hi' } },
      { method: 'presence', channel: CH },
      { method: 'presence_stats', channel: CH },
      { method: 'history', channel: CH, limit: 50, since: { offset: 3, epoch: 'E1' }, reverse: true },
    ],
  );
  const clients = { c1: { client: 'c1', user: '' } };
  ws.push(
    { id: cmds[0].id, result: { offset: 11, epoch: 'E1' } },
    { id: cmds[1].id, result: { clients } },
    { id: cmds[2].id, result: { clients: 1, users: 1 } },
    { id: cmds[3].id, result: { publications: [], offset: 11, epoch: 'E1' } },
  );
  assert.deepEqual(await p, { offset: 11, epoch: 'E1' });
  assert.deepEqual(await pr, clients);
  assert.deepEqual(await ps, { clients: 1, users: 1 });
  assert.deepEqual(await h, { publications: [], offset: 11, epoch: 'E1', truncated: false });
  client.disconnect();
});

test('several subscriptions are resent together after reconnect, before queued calls', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  client.subscribe('a');
  client.subscribe('b');
  const ws = await connectClient(client, WS);
  ws.serverClose(1011);
  const h = client.history('a', { limit: 1 });
  t.mock.timers.tick(250);
  const ws2 = await connectClient(client, WS);
  const batch = ws2.sent.at(-1).split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(
    batch.map((c) => `${c.method} ${c.channel}`),
    ['subscribe a', 'subscribe b', 'history a'],
  );
  client.disconnect();
  await assert.rejects(h, { code: ErrorCode.DISCONNECTED });
});

test('disconnect() with a subscribe in flight keeps the subscription for the next connect', async () => {
  const { WS, client } = setup();
  const sub = client.subscribe(CH);
  const ended = record(sub, 'unsubscribed');
  const errors = record(sub, 'error');
  await connectClient(client, WS);
  client.disconnect();
  assert.equal(sub.state, 'subscribing');
  const ws2 = await connectClient(client, WS);
  ws2.reply('subscribe', { epoch: 'E1', offset: 3, recoverable: true });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(ended, []);
  assert.deepEqual(errors, []);
  client.disconnect();
});

test("'subscribed' listeners see the new position; unsubscribing in a listener stops delivery", async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, sub, ws, pubs } = await subscribed();
  ws.push(pub(11));
  const seen = [];
  sub.on('subscribed', () => seen.push(sub.position));
  sub.on('gap', () => sub.unsubscribe());
  const ws2 = await reconnect(t, client, WS);
  ws2.reply('subscribe', { epoch: 'E2', offset: 7, recoverable: true, recovered: false });
  assert.deepEqual(seen, [{ offset: 7, epoch: 'E2' }]);
  assert.equal(sub.state, 'unsubscribed');
  ws2.push(pub(8, 8, 'E2'));
  assert.deepEqual(offsets(pubs), [11]);
  client.disconnect();
});

test('a channel subscribed before its stream began recovers it all on resubscribe', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  // No stream yet: the reply has no epoch and no offset.
  const { WS, client, ws, pubs, gaps } = await subscribed({ recoverable: true });
  const ws2 = await reconnect(t, client, WS);
  assert.deepEqual(ws2.last('subscribe').since, { offset: 0, epoch: '' });
  ws2.reply('subscribe', { epoch: 'E1', offset: 2, recoverable: true, recovered: true, publications: [pub(1), pub(2)] });
  assert.deepEqual(offsets(pubs), [1, 2]);
  assert.deepEqual(gaps, []);
  ws2.push(pub(3));
  assert.deepEqual(offsets(pubs), [1, 2, 3]);
  client.disconnect();
});

test('a namespace without history sends no position', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = await subscribed({});
  const ws2 = await reconnect(t, client, WS);
  assert.equal(ws2.last('subscribe').since, undefined);
  client.disconnect();
});

test("a reset push is a 'gap' (reset) and restarts tracking in the new epoch", async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client, ws, pubs, gaps } = await subscribed();
  ws.push(pub(11), { push: 'gap', channel: CH, epoch: 'E2', from: 1, to: 2, reset: true }, pub(3, 3, 'E2'));
  assert.deepEqual(gaps, [
    { channel: CH, from: 1, to: 2, epoch: 'E2', reason: 'reset', since: { offset: 11, epoch: 'E1' } },
  ]);
  assert.deepEqual(offsets(pubs), [11, 3]);
  const ws2 = await reconnect(t, client, WS);
  assert.deepEqual(ws2.last('subscribe').since, { offset: 3, epoch: 'E2' });
  client.disconnect();
});

test("presence_count pushes are 'presence_count' events", async () => {
  const { client, sub, ws } = await subscribed();
  const counts = record(sub, 'presence_count');
  ws.push({ push: 'presence_count', channel: CH, clients: 1500, users: 1200 });
  assert.deepEqual(counts, [{ clients: 1500, users: 1200 }]);
  client.disconnect();
});

test('error 113 (broker unavailable) retries the subscribe', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const sub = client.subscribe(CH);
  const ws = await connectClient(client, WS);
  ws.replyError('subscribe', 113, 'unavailable');
  assert.equal(sub.state, 'subscribing');
  t.mock.timers.tick(20000);
  await flush();
  ws.reply('subscribe', { epoch: 'E1', offset: 1, recoverable: true });
  assert.equal(sub.state, 'subscribed');
  client.disconnect();
});
