// Two Chromium pages connected to two different `duplex serve` nodes chat
// through Redis (issue 11): each sees the other's messages once and in the
// same order, and the other in presence, though no node holds both.
//
//   cd peers && node --test e2e/cluster.test.mjs   (make e2e; needs redis-server)
//
// The test starts its own redis-server on a free loopback port and stops it
// by PID. E2E_VERBOSE=1 shows the nodes' logs and the pages' consoles.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  Gateway, buildDuplex, chatClientId, chatMessages, chatPresence, launchChromium, openPage, say, waitFor, waitForMessage,
  withTimeout,
} from './harness.mjs';

const REDIS = process.env.REDIS_SERVER || '/usr/bin/redis-server';
const SECRET = randomBytes(32).toString('hex');

let dir, redis, nodes = [], browser;

/** A TCP port free on 127.0.0.1 when asked. */
async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Whether a Redis server answers PING on port. */
function pings(port) {
  return new Promise((ok) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (v) => { sock.destroy(); ok(v); };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** Starts redis-server on a free port without persistence; resolves once it answers. */
async function startRedis() {
  const port = await freePort();
  const proc = spawn(REDIS, ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => { stderr = (stderr + s).slice(-4000); });
  const server = { proc, port };
  try {
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}): ${stderr}`);
      return pings(port);
    }, { timeout: 15000, message: `redis-server on port ${port}` });
  } catch (err) {
    await stopRedis(server);
    throw err;
  }
  return server;
}

/** Ends redis-server by its PID and waits for it to exit. */
async function stopRedis(server) {
  const { proc } = server;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  process.kill(proc.pid, 'SIGTERM');
  const timer = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

before(async () => {
  if (!existsSync(REDIS)) {
    throw new Error(`${REDIS} is missing: make services installs it (REDIS_SERVER overrides the path)`);
  }
  dir = await mkdtemp(join(tmpdir(), 'duplex-e2e-cluster-'));
  const [bin, server] = await Promise.all([buildDuplex(dir), startRedis()]);
  redis = server;
  // The demo pages and namespace, on a shared Redis: the nodes know each
  // other only through it.
  const config = join(dir, 'duplex.yaml');
  await writeFile(config, `
demo: true
drain_window: 1s
log:
  level: warn
auth:
  algorithm: HS256
  secret: ${SECRET}
  anonymous: true
broker:
  url: redis://127.0.0.1:${redis.port}/0
`);
  nodes = await Promise.all([new Gateway(bin, config).start(), new Gateway(bin, config).start()]);
  browser = await launchChromium();
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
  if (redis) await stopRedis(redis);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function newContext(t, name) {
  const context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1200, height: 760 } });
  t.after(() => context.close());
  await context.addInitScript((n) => localStorage.setItem('duplex.name', n), name);
  return context;
}


test('cluster: two pages on two nodes chat through Redis', { timeout: 90000 }, async (t) => {
  const [nodeA, nodeB] = nodes;
  assert.notEqual(nodeA.url, nodeB.url);
  const alice = await openPage(await newContext(t, 'alice'), nodeA, '/chat.html');
  const bob = await openPage(await newContext(t, 'bob'), nodeB, '/chat.html');
  assert.ok(alice.url().startsWith(nodeA.url) && bob.url().startsWith(nodeB.url), 'each page on its own node');
  const aliceId = await chatClientId(alice);
  const bobId = await chatClientId(bob);

  // Presence is the union of both nodes: each page lists the other.
  for (const [page, other] of [[alice, bobId], [bob, aliceId]]) {
    await waitFor(async () => (await chatPresence(page)).some((p) => p.id === other), { message: `the other node's page in presence on ${page.url()}` });
    await waitFor(async () => (await page.textContent('#count')) === '2', { message: 'two online' });
  }

  const lines = [
    ['alice', alice, 'Hi Bob, I am on node A.'],
    ['bob', bob, 'Hello Alice, node B here.'],
    ['alice', alice, 'Redis carries it between us.'],
    ['bob', bob, 'Once each, in order.'],
  ];
  for (const [who, page, text] of lines) {
    await say(page, text);
    await waitForMessage(page === alice ? bob : alice, who, text);
  }
  // The backend publishes through node B's API; node A's page gets it too.
  const fromBackend = 'Published through node B\'s API.';
  await nodeB.api('publish', { channel: 'demo:chat', data: { user: 'backend', text: fromBackend } });
  await waitForMessage(alice, 'backend', fromBackend);
  await waitForMessage(bob, 'backend', fromBackend);

  const want = [...lines.map(([, , text]) => text), fromBackend];
  const aliceSees = await chatMessages(alice);
  const bobSees = await chatMessages(bob);
  assert.deepEqual(aliceSees.map((m) => m.text), want, 'alice: every message once, in order');
  // What each page marks as its own (mine) differs; the rest must not.
  const shared = (msgs) => msgs.map(({ offset, who, text }) => ({ offset, who, text }));
  assert.deepEqual(shared(bobSees), shared(aliceSees), 'both nodes deliver the same messages at the same offsets');
  assert.ok(aliceSees.every((m) => m.mine === (m.who === 'alice')) && bobSees.every((m) => m.mine === (m.who === 'bob')),
    'each page marks its own messages');
  const offsets = aliceSees.map((m) => Number(m.offset));
  for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i], offsets[i - 1] + 1, `offsets ${offsets} are one stream`);

  // A third page on node A gets the conversation from the shared history,
  // and leaving on A shows on B.
  const carolContext = await newContext(t, 'carol');
  const carol = await openPage(carolContext, nodeA, '/chat.html');
  await waitForMessage(carol, 'backend', fromBackend);
  assert.deepEqual(shared(await chatMessages(carol)), shared(aliceSees), 'history on node A holds what went through B');
  await waitFor(async () => (await bob.textContent('#count')) === '3', { message: 'carol joining, seen on node B' });
  await carolContext.close();
  await waitFor(async () => (await bob.textContent('#count')) === '2', { message: 'carol leaving, seen on node B' });

  for (const page of [alice, bob, carol]) assert.deepEqual(page.errors.map(String), [], `uncaught errors in ${page.url()}`);
});
