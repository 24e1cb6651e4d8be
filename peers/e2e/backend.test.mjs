// The app's backend in the loop, in Debian's Chromium: examples/backend (a
// real process) logs users in with a cookie, and `duplex serve` asks it, over
// signed requests, who each page's WebSocket is (the connect proxy), whether
// it may publish (and stamps what it publishes), and what `whoami` returns
// (rpc). A page without the cookie is refused.
//
//   cd peers && node --test e2e/backend.test.mjs   (part of make e2e)
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import {
  Gateway, buildDuplex, launchChromium, openPage, repoRoot, say, waitFor, waitForMessage, withTimeout,
} from './harness.mjs';

const SECRET = randomBytes(16).toString('hex');

let dir, gateway, browser, backend, backendURL;

/** Builds examples/backend into dir, runs it on a free port, and returns its base URL. */
async function startBackend() {
  const bin = join(dir, 'backend');
  await new Promise((ok, fail) => {
    execFile(process.env.GO || 'go', ['build', '-o', bin, './examples/backend'], { cwd: repoRoot, timeout: 300_000 },
      (err, _stdout, stderr) => (err ? fail(new Error(`go build: ${err.message}\n${stderr}`)) : ok()));
  });
  backend = spawn(bin, ['-listen', '127.0.0.1:0', '-secret', SECRET], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: backend.stdout });
  return withTimeout(new Promise((ok, fail) => {
    backend.once('exit', (code) => fail(new Error(`the backend exited (${code})`)));
    lines.on('line', (line) => {
      const m = /^backend on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) ok(m[1]);
    });
  }), 20000, 'the backend to listen');
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'duplex-e2e-backend-'));
  const [bin, url] = await Promise.all([buildDuplex(dir), startBackend()]);
  backendURL = url;
  // The demo pages, whose namespace "demo" takes its users from the
  // backend; the example backend's chat: and user: channels, which it
  // decides (chat:, and the user: channel its connect reply grants).
  await writeFile(join(dir, 'duplex.yaml'), `
demo: true
drain_window: 1s
log:
  level: warn
auth:
  anonymous: false
proxy:
  secret: ${SECRET}
  endpoints:
    - {name: connect, url: ${url}/duplex/connect}
    - {name: publish, url: ${url}/duplex/publish}
    - {name: rpc, url: ${url}/duplex/rpc}
  connect: connect
  rpc: rpc
namespaces:
  - {name: chat, subscribe: authenticated, publish_proxy: publish, history_size: 100}
  - {name: user, subscribe: token, publish: server}
`);
  gateway = await new Gateway(bin, join(dir, 'duplex.yaml')).start();
  browser = await launchChromium();
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  await gateway?.kill('SIGTERM');
  if (backend && backend.exitCode === null) {
    backend.kill('SIGKILL');
    await new Promise((ok) => backend.once('exit', ok));
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A browser context logged in at the backend as user (its cookie), closed after the test. */
async function loggedIn(t, user) {
  const context = await browser.newContext();
  t.after(() => context.close());
  if (user) {
    const res = await context.request.post(`${backendURL}/login`, { form: { user } });
    assert.equal(res.status(), 200, await res.text());
  }
  await context.addInitScript((n) => localStorage.setItem('duplex.name', n), user || 'nobody');
  return context;
}

test('chat: users logged in with a cookie, publications stamped by the backend, rpc', { timeout: 90000 }, async (t) => {
  const ann = await openPage(await loggedIn(t, 'ann'), gateway, '/chat.html');
  const bob = await openPage(await loggedIn(t, 'bob'), gateway, '/chat.html');

  // The gateway knows them as the backend said, from their cookies alone.
  const users = await waitFor(async () => {
    const { clients } = await gateway.api('presence', { channel: 'demo:chat' });
    const names = Object.values(clients).map((c) => c.user).sort();
    return names.length === 2 && names;
  }, { message: 'both users in presence' });
  assert.deepEqual(users, ['ann', 'bob']);
  assert.deepEqual(await ann.evaluate(() => globalThis.client.rpc('whoami')), { user: 'ann' });
  assert.deepEqual(await bob.evaluate(() => globalThis.client.rpc('whoami')), { user: 'bob' });

  // The demo chat works for them as for anyone.
  await say(ann, 'Hi Bob, logged in with a cookie.');
  await waitForMessage(bob, 'ann', 'Hi Bob, logged in with a cookie.');
  await say(bob, 'Hi Ann.');
  await waitForMessage(ann, 'bob', 'Hi Ann.');

  // In chat:, the backend decides: it refuses what is not text, with its
  // own code, and stamps what it allows with the author it knows.
  const refused = await ann.evaluate(() => globalThis.client.publish('chat:lobby', { user: 'mallory', text: 'x' }).then(
    () => null, (err) => ({ code: err.code, message: err.message })));
  assert.deepEqual(refused, { code: 400, message: 'publish text of 1 to 500 characters to chat: channels' });
  const got = bob.evaluate(() => new Promise((resolve) => {
    const sub = globalThis.client.subscribe('chat:lobby');
    sub.on('subscribed', () => globalThis.subscribedToLobby = true);
    sub.on('publication', (p) => resolve(p.data));
  }));
  await waitFor(() => bob.evaluate(() => globalThis.subscribedToLobby === true), { message: 'bob subscribed to chat:lobby' });
  await ann.evaluate(() => globalThis.client.publish('chat:lobby', 'hello from ann'));
  assert.deepEqual(await withTimeout(got, 15000, 'bob to receive ann\'s message'), { from: 'ann', text: 'hello from ann' });

  // user:ann is granted to ann by the backend's connect reply, to nobody else.
  await ann.evaluate(() => new Promise((resolve, reject) => {
    const sub = globalThis.client.subscribe('user:ann');
    sub.on('subscribed', resolve);
    sub.on('error', reject);
  }));
  const denied = await bob.evaluate(() => new Promise((resolve) => {
    const sub = globalThis.client.subscribe('user:ann');
    sub.on('subscribed', () => resolve('subscribed'));
    sub.on('error', (err) => resolve(err.code));
  }));
  assert.equal(denied, 103);
  assert.deepEqual(ann.errors.map(String), []);
  assert.deepEqual(bob.errors.map(String), []);
});

test('a page without the cookie is refused', { timeout: 60000 }, async (t) => {
  const context = await loggedIn(t, '');
  const page = await context.newPage();
  const errors = [];
  await page.exposeFunction('reportError', (e) => errors.push(e));
  await page.addInitScript(() => {
    // The demo's client reports the refusal through its error event.
    const started = setInterval(() => {
      if (!globalThis.client) return;
      clearInterval(started);
      globalThis.client.on('error', (err) => globalThis.reportError({ code: err.code, message: err.message }));
    }, 5);
  });
  await page.goto(`${gateway.url}/chat.html`, { timeout: 15000 });
  await waitFor(() => errors.find((e) => e.code === 4401), { message: 'the backend\'s refusal in the page' });
  assert.equal(errors.find((e) => e.code === 4401).message, 'log in first');
  assert.notEqual(await page.getAttribute('#state', 'data-state'), 'connected');
});
