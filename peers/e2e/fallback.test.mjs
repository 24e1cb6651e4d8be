// The fallback transports in Debian's Chromium: the pages reach the gateway
// through a proxy this test runs that refuses WebSocket upgrades, as some
// corporate proxies do, and duplex.js falls back by itself to HTTP streaming
// (and, with that blocked too, to Server-Sent Events): the chat demo works
// over each; a page whose stream is cut while publications flow recovers
// every one exactly once; and behind a round-robin proxy over three nodes on
// a shared nats-server (no affinity: the commands of one session land on
// every node), a fallback session keeps working.
//
//   cd peers && node --test e2e/fallback.test.mjs   (part of make e2e)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { createConnection, createServer as createTCPServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  Gateway, buildDuplex, chatMessages, launchChromium, openPage, repoRoot, say, waitFor, waitForMessage, withTimeout,
} from './harness.mjs';

const NATS = process.env.NATS_SERVER || join(repoRoot, '.tools', 'bin', 'nats-server');

let dir, bin, browser, nats;
const cleanups = [];

/** A TCP port free on 127.0.0.1 when asked. */
async function freePort() {
  const srv = createTCPServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * An HTTP proxy on a free port in front of targets ("127.0.0.1:port"), taken
 * in turn for each request (no affinity). It refuses every WebSocket upgrade,
 * answers 502 for the paths in block, and can cut the responses that stream.
 */
async function startProxy(targets, { block = [] } = {}) {
  let next = 0;
  const streams = new Set(); // [client response, upstream request] of open streams
  const log = []; // {path, target}
  const server = createServer((req, res) => {
    const path = req.url.split('?')[0];
    if (block.includes(path)) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('blocked by the proxy');
      return;
    }
    const target = targets[next++ % targets.length];
    log.push({ path, target });
    const [host, port] = target.split(':');
    const up = request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
    if (path === '/fallback/stream' || path === '/fallback/sse') {
      const pair = [res, up];
      streams.add(pair);
      res.on('close', () => { streams.delete(pair); up.destroy(); });
    }
  });
  server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n'));
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    log,
    /** Cuts every stream open through the proxy, as a network that drops them. */
    cutStreams() {
      for (const [res, up] of streams) {
        res.destroy();
        up.destroy();
      }
      streams.clear();
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Starts nats-server on a free port; resolves once it accepts connections. */
async function startNats() {
  const port = await freePort();
  // JetStream keeps the channels' history (the nats broker needs it).
  const proc = spawn(NATS, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'nats')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => { stderr = (stderr + s).slice(-4000); });
  const server = { proc, port };
  cleanups.push(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    process.kill(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    try { await exited; } finally { clearTimeout(timer); }
  });
  await waitFor(() => new Promise((ok) => {
    if (proc.exitCode !== null) throw new Error(`nats-server exited: ${stderr}`);
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (v) => { sock.destroy(); ok(v); };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('data', (d) => done(d.toString().startsWith('INFO')));
  }), { timeout: 15000, message: `nats-server on port ${port}` });
  return server;
}

const CONFIG = (extra = '') => `
demo: true
drain_window: 1s
log:
  level: warn
limits:
  max_connections_per_ip: -1
  handshake_rate: -1
namespaces:
  - {name: feed, anonymous: true, subscribe: authenticated, publish: server, history_size: 5000, history_ttl: 10m}
${extra}`;

before(async () => {
  if (!existsSync(NATS)) throw new Error(`${NATS} is missing (NATS_SERVER overrides the path)`);
  dir = await mkdtemp(join(tmpdir(), 'duplex-e2e-fallback-'));
  [bin, nats] = await Promise.all([buildDuplex(dir), startNats()]);
  browser = await launchChromium();
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  for (const f of cleanups.reverse()) await f();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Starts a gateway with config; killed after the tests. */
async function startGateway(name, config) {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, config);
  const gw = await new Gateway(bin, file).start();
  cleanups.push(() => gw.kill('SIGTERM'));
  return gw;
}

async function newContext(t, name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  t.after(() => context.close());
  await context.addInitScript((n) => localStorage.setItem('duplex.name', n), name);
  return context;
}

const transportOf = (page) => page.evaluate(() => globalThis.client.transport);

/** Two pages chat through proxy; both must be on transport. */
async function chatOver(t, proxy, transport) {
  const ann = await openPage(await newContext(t, 'ann'), proxy, '/chat.html');
  const bob = await openPage(await newContext(t, 'bob'), proxy, '/chat.html');
  assert.equal(await transportOf(ann), transport);
  assert.equal(await transportOf(bob), transport);
  const hello = `Hello over ${transport}`;
  await say(ann, hello);
  await waitForMessage(bob, 'ann', hello);
  await say(bob, 'Got it.');
  await waitForMessage(ann, 'bob', 'Got it.');
  const seen = (msgs) => msgs.map(({ who, text, offset }) => ({ who, text, offset }));
  assert.deepEqual(seen(await chatMessages(ann)), seen(await chatMessages(bob)));
  assert.deepEqual(ann.errors.map(String), []);
  assert.deepEqual(bob.errors.map(String), []);
  return { ann, bob };
}

test('WebSocket blocked: the chat demo over HTTP streaming, then over SSE', { timeout: 120000 }, async (t) => {
  const gw = await startGateway('single', CONFIG());
  const streaming = await startProxy([gw.addr]);
  await chatOver(t, streaming, 'http_stream');
  assert.ok(streaming.log.some((r) => r.path === '/fallback/send'), 'commands went as POSTs');

  const sse = await startProxy([gw.addr], { block: ['/fallback/stream'] });
  await chatOver(t, sse, 'sse');
});

test('a fallback page cut off while publications flow recovers every one exactly once', { timeout: 120000 }, async (t) => {
  const gw = await startGateway('recover', CONFIG());
  const proxy = await startProxy([gw.addr]);
  const page = await openPage(await newContext(t, 'reader'), proxy, '/chat.html');
  assert.equal(await transportOf(page), 'http_stream');
  await page.evaluate(() => new Promise((resolve) => {
    globalThis.got = [];
    const sub = globalThis.client.subscribe('feed:ticks');
    sub.on('publication', (p) => globalThis.got.push(p.data.n));
    sub.on('subscribed', resolve);
  }));
  const total = 300;
  const opened = () => proxy.log.filter((r) => r.path === '/fallback/stream').length;
  for (let n = 1; n <= total; n++) {
    await gw.api('publish', { channel: 'feed:ticks', data: { n } });
    if (n === 100) proxy.cutStreams(); // the page's stream breaks mid-flow
    if (n === 200) {
      // Once the page has a new stream (publishing went on meanwhile), again.
      await waitFor(async () => opened() >= 2 && await page.evaluate(() => globalThis.client.state === 'connected'),
        { message: 'a new stream after the first cut' });
      proxy.cutStreams();
    }
    if (n % 10 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  const got = await waitFor(async () => {
    const g = await page.evaluate(() => globalThis.got);
    return g.length >= total && g;
  }, { timeout: 30000, message: `all ${total} publications in the page` });
  assert.deepEqual(got, Array.from({ length: total }, (_, i) => i + 1), 'every publication once, in order');
  assert.ok(opened() >= 3, `the page opened a new stream after each cut: ${JSON.stringify(proxy.log.map((r) => r.path))}`);
  assert.equal(await transportOf(page), 'http_stream', 'the working transport was tried first again');
  assert.deepEqual(page.errors.map(String), []);
});

test('three nodes behind a round-robin proxy without affinity: a fallback session keeps working', { timeout: 150000 }, async (t) => {
  const config = CONFIG(`broker:\n  url: nats://127.0.0.1:${nats.port}\n`);
  const nodes = await Promise.all(['n1', 'n2', 'n3'].map((n) => startGateway(n, config)));
  const proxy = await startProxy(nodes.map((n) => n.addr));
  await chatOver(t, proxy, 'http_stream');
  // The commands of a session went to the nodes that do not hold its stream.
  const streamNodes = new Set(proxy.log.filter((r) => r.path === '/fallback/stream').map((r) => r.target));
  const sendNodes = new Set(proxy.log.filter((r) => r.path === '/fallback/send').map((r) => r.target));
  assert.equal(sendNodes.size, 3, 'POSTs reached all three nodes');
  assert.ok(streamNodes.size >= 1);
});
