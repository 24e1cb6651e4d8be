// disconnect() must leave no timer behind: a Node process using the client ends by itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const lib = new URL('../duplex.js', import.meta.url).href;
const fake = new URL('./fake-websocket.js', import.meta.url).href;

// Connects, subscribes, refresh and ping timers armed, a call in flight, a call
// waiting; then a close and a reconnect in backoff, and finally disconnect().
const script = `
import { Client } from ${JSON.stringify(lib)};
import { fakeWebSocket, connectClient } from ${JSON.stringify(fake)};
const WS = fakeWebSocket();
const client = new Client('ws://x/ws', { WebSocket: WS, getToken: async () => 't', minReconnectDelay: 60000 });
const sub = client.subscribe('demo:chat');
const ws = await connectClient(client, WS, { expires: Math.floor(Date.now() / 1000) + 3600 });
ws.reply('subscribe', { epoch: 'E', offset: 1, recoverable: true });
client.publish('demo:chat', 1).catch(() => {});
ws.serverClose(1006);
client.history('demo:chat').catch(() => {});
client.disconnect();
const started = Date.now();
process.on('exit', () => console.log('exited after ' + (Date.now() - started) + ' ms'));
`;

test('the process ends after disconnect()', async () => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill(), 5000);
  const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(signal ?? c)));
  clearTimeout(timer);
  assert.equal(code, 0, `child did not end by itself: ${out}`);
  assert.match(out, /exited after \d+ ms/);
});
