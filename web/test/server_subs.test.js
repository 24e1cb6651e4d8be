// Server-side subscriptions: the connect result's subs become Subscriptions,
// announced before what they recovered; their publications arrive as pushes;
// a reconnect sends their positions in connect and recovers, or reports a gap.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../duplex.js';
import { connectClient, fakeWebSocket, flush, record } from './fake-websocket.js';

const clients = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function setup() {
  const WS = fakeWebSocket();
  const client = new Client('ws://gateway.test/ws', { WebSocket: WS, random: () => 0.5 });
  clients.push(client);
  return { WS, client };
}

const pub = (channel, offset, epoch = 'E1') => ({ push: 'pub', channel, offset, epoch, data: { n: offset } });

test('server-side subscriptions: announced, publications, recovery across reconnects, gaps, and their end', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const announced = [];
  const pubs = [];
  const gaps = [];
  const subscribed = [];
  client.on('server_subscription', (sub) => {
    announced.push(sub.channel);
    sub.on('publication', (p) => pubs.push([p.channel, p.offset]));
    sub.on('gap', (g) => gaps.push(g));
    sub.on('subscribed', (s) => subscribed.push([s.channel, s.recovered]));
  });
  let ws = await connectClient(client, WS, {
    subs: { 'user:ann': { recoverable: true, epoch: 'E1', offset: 4 }, 'news:all': { recoverable: false } },
  });
  assert.equal(ws.last('connect').subs, undefined, 'nothing to recover on the first connect');
  assert.deepEqual(announced, ['user:ann', 'news:all']);
  const ann = client.getServerSubscription('user:ann');
  assert.equal(ann.state, 'subscribed');
  assert.deepEqual(ann.position, { offset: 4, epoch: 'E1' });
  assert.equal(client.getSubscription('user:ann'), undefined, 'not a client-side subscription');

  // Pushes reach them as they would a client's subscription.
  ws.push(pub('user:ann', 5));
  ws.push({ push: 'pub', channel: 'news:all', data: 'hello' });
  assert.deepEqual(pubs, [['user:ann', 5], ['news:all', undefined]]);

  // Cut off: the next connect carries the position, and the recovered
  // publications of the reply are delivered once, in order.
  ws = await reconnectWith(t, client, WS, {
    subs: {
      'user:ann': { recoverable: true, recovered: true, epoch: 'E1', offset: 7, publications: [pub('user:ann', 6), pub('user:ann', 7)] },
      'news:all': { recoverable: false },
    },
  });
  assert.deepEqual(ws.last('connect').subs, { 'user:ann': { offset: 5, epoch: 'E1' } });
  assert.deepEqual(pubs.slice(2), [['user:ann', 6], ['user:ann', 7]]);
  assert.deepEqual(announced, ['user:ann', 'news:all'], 'announced once');
  assert.equal(client.getServerSubscription('user:ann'), ann, 'the same object');
  ws.push(pub('user:ann', 7)); // a repeat is not delivered again
  ws.push(pub('user:ann', 8));
  assert.deepEqual(pubs.slice(4), [['user:ann', 8]]);

  // Not recoverable (another epoch): a gap, and tracking from the new position.
  ws = await reconnectWith(t, client, WS, {
    subs: { 'user:ann': { recoverable: true, recovered: false, epoch: 'E2', offset: 3 } },
  });
  assert.deepEqual(ws.last('connect').subs, { 'user:ann': { offset: 8, epoch: 'E1' } });
  assert.equal(gaps.length, 1);
  assert.deepEqual([gaps[0].from, gaps[0].to, gaps[0].epoch, gaps[0].reason], [1, 3, 'E2', 'unrecoverable']);
  assert.deepEqual(ann.position, { offset: 3, epoch: 'E2' });
  // news:all was not made again: it ended.
  assert.equal(client.getServerSubscription('news:all'), undefined);

  // The server ends one with an unsubscribe push.
  const ended = record(ann, 'unsubscribed');
  ws.push({ push: 'unsubscribe', channel: 'user:ann', code: 2000, reason: 'gone' });
  assert.deepEqual(ended, [{ code: 2000, reason: 'gone' }]);
  assert.equal(client.getServerSubscription('user:ann'), undefined);
  assert.deepEqual(subscribed, [['user:ann', false], ['news:all', false], ['user:ann', true], ['news:all', false], ['user:ann', false]]);
});

/** Drops the connection and answers the next connect with result. */
async function reconnectWith(t, client, WS, result) {
  WS.last.serverClose(1006);
  t.mock.timers.tick(20000);
  return connectClient(client, WS, result);
}

test('subscribe to a channel held server-side takes it over from its position, and later connects leave it to the client', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { WS, client } = setup();
  const announced = record(client, 'server_subscription');
  let ws = await connectClient(client, WS, { subs: { 'user:ann': { recoverable: true, epoch: 'E1', offset: 4 } } });
  const server = client.getServerSubscription('user:ann');
  const ended = record(server, 'unsubscribed');
  ws.push(pub('user:ann', 5));
  const sub = client.subscribe('user:ann');
  assert.notEqual(sub, server);
  assert.deepEqual(ended, [{ code: 0, reason: 'taken over by subscribe' }]);
  assert.equal(client.getServerSubscription('user:ann'), undefined);
  await flush();
  assert.deepEqual(ws.last('subscribe').since, { offset: 5, epoch: 'E1' }, 'from the server-side position');
  ws.reply('subscribe', { recoverable: true, recovered: true, epoch: 'E1', offset: 5 });
  const pubs = record(sub, 'publication');
  ws.push(pub('user:ann', 6));
  assert.deepEqual(pubs.map((p) => p.offset), [6]);
  // Reconnected: the server makes it again, the client's resubscribe takes it over.
  ws = await reconnectWith(t, client, WS, { subs: { 'user:ann': { recoverable: true, epoch: 'E1', offset: 6 } } });
  assert.equal(announced.length, 1, 'not announced again');
  assert.equal(client.getServerSubscription('user:ann'), undefined);
  assert.equal(ws.last('connect').subs, undefined);
  assert.deepEqual(ws.last('subscribe').since, { offset: 6, epoch: 'E1' });
});
