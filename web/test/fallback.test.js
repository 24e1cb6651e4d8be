// The client's fallback transports: when the WebSocket upgrade fails or brings
// nothing in time, HTTP streaming (a fetch whose body stays open) with commands
// as numbered POSTs; the transport that worked is tried first on reconnect; the
// stream's close line closes as a close frame would.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { Client } from '../duplex.js';
import { fakeWebSocket, flush } from './fake-websocket.js';

const URL = 'ws://gateway.test/ws';

/**
 * A fake fetch for the fallback endpoints, installed as globalThis.fetch: each
 * GET of /fallback/stream gets a body the test writes to (streams), each POST
 * is recorded (posts) and answered 204.
 */
function fakeFetch() {
  const streams = [];
  const posts = [];
  const postStatuses = []; // the statuses of the next POSTs' answers; 204 once empty
  const saved = globalThis.fetch;
  globalThis.fetch = async (url, init = {}) => {
    const u = new globalThis.URL(url);
    if (init.method === 'POST') {
      posts.push({ path: u.pathname, session: u.searchParams.get('session'), seq: Number(u.searchParams.get('seq')), body: init.body });
      const status = postStatuses.shift() ?? 204;
      return new Response(null, { status, headers: status === 429 ? { 'retry-after': '1' } : {} });
    }
    let controller;
    const body = new ReadableStream({ start(c) { controller = c; } });
    const enc = new TextEncoder();
    const stream = {
      path: u.pathname,
      write: (line) => controller.enqueue(enc.encode(line + '\n')),
      end: () => controller.close(),
    };
    streams.push(stream);
    init.signal?.addEventListener('abort', () => { try { controller.error(new Error('aborted')); } catch { /* closed */ } });
    return new Response(body, { status: 200, headers: { 'content-type': 'application/x-ndjson' } });
  };
  return { streams, posts, postStatuses, restore: () => { globalThis.fetch = saved; } };
}

let cleanup = [];
afterEach(() => {
  for (const f of cleanup) f();
  cleanup = [];
});

function setup(options = {}) {
  const WS = fakeWebSocket();
  const net = fakeFetch();
  const client = new Client(URL, { WebSocket: WS, transports: ['websocket', 'http_stream'], random: () => 0, ...options });
  cleanup.push(() => client.disconnect(), net.restore);
  return { WS, net, client };
}

/** Waits until cond() holds, flushing between tries. */
async function until(cond, what) {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await flush();
  }
  throw new Error(`never: ${what}`);
}

/** Answers the last POSTed command with method on the stream. */
function replyOnStream(net, method, result) {
  const cmds = net.posts.flatMap((p) => p.body.split('\n').map((l) => JSON.parse(l)));
  const cmd = cmds.filter((c) => c.method === method).at(-1);
  net.streams.at(-1).write(JSON.stringify({ id: cmd.id, result }));
  return cmd;
}

test('a failed upgrade falls back to HTTP streaming: session line, numbered POSTs, replies on the stream', async () => {
  const { WS, net, client } = setup();
  const connected = [];
  client.on('connected', (c) => connected.push(c));
  client.connect();
  WS.last.serverClose(1006); // the upgrade failed: nothing came
  await until(() => net.streams.length === 1, 'a stream');
  assert.equal(net.streams[0].path, '/fallback/stream');
  net.streams[0].write('{"session":"node.sess"}');
  await until(() => net.posts.length === 1, 'the connect POST');
  assert.deepEqual(net.posts[0], { path: '/fallback/send', session: 'node.sess', seq: 0, body: '{"id":1,"method":"connect","name":"duplex.js"}' });
  replyOnStream(net, 'connect', { client: 'node.sess', user: '' });
  await until(() => connected.length === 1, 'connected');
  assert.equal(connected[0].transport, 'http_stream');
  assert.equal(client.transport, 'http_stream');

  // Commands go one POST at a time, numbered; pushes come on the stream.
  const sub = client.subscribe('demo:a');
  const pubs = [];
  sub.on('publication', (p) => pubs.push(p.data));
  await until(() => net.posts.length === 2, 'the subscribe POST');
  assert.equal(net.posts[1].seq, 1);
  replyOnStream(net, 'subscribe', { recoverable: true, epoch: 'E', offset: 0 });
  net.streams[0].write('{"push":"pub","channel":"demo:a","offset":1,"epoch":"E","data":"x"}');
  await until(() => pubs.length === 1, 'a publication');

  // The stream breaks: the reconnect tries HTTP streaming first, not the
  // WebSocket that failed, and recovers from offset 1.
  net.streams[0].end();
  await until(() => net.streams.length === 2, 'a second stream');
  assert.equal(WS.sockets.length, 1, 'no second WebSocket');
  net.streams[1].write('{"session":"node.sess2"}');
  await until(() => net.posts.some((p) => p.session === 'node.sess2'), 'connect on the new stream');
  replyOnStream(net, 'connect', { client: 'node.sess2', user: '' });
  await until(() => net.posts.filter((p) => p.session === 'node.sess2').length === 2, 'the resubscribe');
  const resub = replyOnStream(net, 'subscribe', { recoverable: true, recovered: true, epoch: 'E', offset: 1 });
  assert.deepEqual(resub.since, { offset: 1, epoch: 'E' });
  assert.equal(net.posts.at(-1).seq, 1, 'a new session counts from 0 again');
});

test('a WebSocket that brings nothing within fallbackTimeout gives way to the next transport', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, net, client } = setup({ fallbackTimeout: 1000 });
  client.connect();
  WS.last.open(); // upgraded, but a middlebox swallows what follows
  await flush();
  assert.equal(net.streams.length, 0);
  t.mock.timers.tick(1000);
  await until(() => net.streams.length === 1, 'a stream');
  assert.deepEqual(WS.last.closedWith, { code: 1000, reason: 'falling back' });
});

test('the stream\'s close line closes like a close frame', async () => {
  const { WS, net, client } = setup();
  const closes = [];
  client.on('disconnected', (d) => closes.push(d));
  client.connect();
  WS.last.serverClose(1006);
  await until(() => net.streams.length === 1, 'a stream');
  net.streams[0].write('{"session":"node.s"}');
  await until(() => net.posts.length === 1, 'connect');
  replyOnStream(net, 'connect', { client: 'node.s', user: '' });
  await until(() => client.state === 'connected', 'connected');
  net.streams[0].write('{"close":{"code":4501,"reason":"unauthorized: log in first"}}');
  await until(() => closes.length === 1, 'disconnected');
  assert.deepEqual(closes[0], { code: 4501, reason: 'unauthorized: log in first', reconnect: false });
});

test('a POST answered 429 (the per-address limit) is sent again after Retry-After, with its number, and later ones wait; five in a row end the session', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, net, client } = setup();
  const connected = [];
  const disconnected = [];
  client.on('connected', (c) => connected.push(c));
  client.on('disconnected', (d) => disconnected.push(d));
  client.connect();
  WS.last.serverClose(1006);
  await until(() => net.streams.length === 1, 'a stream');
  net.postStatuses.push(429);
  net.streams[0].write('{"session":"node.sess"}');
  await until(() => net.posts.length === 1, 'the connect POST');
  client.rpc('later', {}).catch(() => {}); // queued behind the connect
  for (let i = 0; i < 20; i++) await flush();
  assert.equal(net.posts.length, 1, 'nothing else is sent while the 429 waits');
  t.mock.timers.tick(1000);
  await until(() => net.posts.length >= 2, 'the connect POST again');
  assert.deepEqual([net.posts[1].seq, net.posts[1].body], [0, net.posts[0].body], 'the same POST, the same number');
  replyOnStream(net, 'connect', { client: 'node.sess', user: '' });
  await until(() => connected.length === 1, 'connected');
  await until(() => net.posts.length === 3, 'the rpc POST');
  assert.equal(net.posts[2].seq, 1);
  assert.equal(disconnected.length, 0);

  // A node that keeps refusing: after five more tries, the session ends.
  net.postStatuses.push(429, 429, 429, 429, 429, 429);
  client.rpc('refused', {}).catch(() => {});
  for (let i = 0; i < 5; i++) {
    await until(() => net.posts.length === 4 + i, `try ${i}`);
    for (let j = 0; j < 10; j++) await flush();
    t.mock.timers.tick(1000);
  }
  await until(() => net.posts.length === 9, 'the last try');
  await until(() => disconnected.length === 1, 'the session given up');
  assert.equal(disconnected[0].code, 1006);
  assert.match(disconnected[0].reason, /HTTP 429/);
});
