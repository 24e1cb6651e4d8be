// The demo chat in Debian's Chromium over HTTP/2 (RFC 8441): `duplex serve`
// with TLS serves the page over h2, and duplex.js, unchanged, opens its
// WebSocket to /ws on the same origin, which Chromium carries as an extended
// CONNECT on the page's HTTP/2 connection. Two pages chat; the gateway's log
// says each session came over HTTP/2 (its debug line from gateway/h2.go),
// and the pages' navigation entries say h2.
//
//   cd peers && node --test e2e/h2_demo.test.mjs   (part of make e2e)
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import {
  buildDuplex, chatMessages, chromiumPath, openPage, repoRoot, say, waitFor, waitForMessage, withTimeout,
} from './harness.mjs';

const CONFIG = `
demo: true
drain_window: 1s
log:
  level: debug
`;

let dir, proc, browser;
let logs = '';
const gateway = { url: '' };

/** A self-signed certificate for 127.0.0.1, made with openssl. */
function makeCert(certFile, keyFile) {
  return new Promise((ok, fail) => {
    execFile('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { timeout: 30000 },
    (err, _stdout, stderr) => (err ? fail(new Error(`openssl: ${err.message}\n${stderr}`)) : ok()));
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'duplex-e2e-h2-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const [bin] = await Promise.all([
    buildDuplex(dir), writeFile(join(dir, 'duplex.yaml'), CONFIG), makeCert(certFile, keyFile),
  ]);
  proc = spawn(bin, ['serve', '--config', join(dir, 'duplex.yaml'), '--listen', '127.0.0.1:0',
    '--tls-cert', certFile, '--tls-key', keyFile], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => {
    logs += s;
    if (process.env.E2E_VERBOSE) process.stderr.write(s);
  });
  const lines = createInterface({ input: proc.stdout });
  gateway.url = await withTimeout(new Promise((ok, fail) => {
    proc.once('exit', (code, signal) => fail(new Error(`duplex serve exited (${code ?? signal}):\n${logs}`)));
    lines.on('line', (line) => {
      const m = /^duplex serve listening on (https:\/\/[^/]+)\//.exec(line);
      if (m) ok(m[1]);
    });
  }), 20000, 'duplex serve listening');
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--ignore-certificate-errors', // the test's self-signed certificate
    ],
  });
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = once(proc, 'exit');
    process.kill(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the demo chat over HTTP/2: two pages, their WebSockets as extended CONNECT streams', async (t) => {
  const pages = [];
  for (const name of ['alice', 'bob']) {
    const context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1200, height: 760 } });
    t.after(() => context.close());
    await context.addInitScript((n) => localStorage.setItem('duplex.name', n), name);
    pages.push(await openPage(context, gateway, '/chat.html'));
  }
  const [alice, bob] = pages;
  for (const page of pages) {
    const proto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(proto, 'h2', `${page.url()} came over ${proto}`);
  }
  // The gateway took both WebSockets as extended CONNECT over HTTP/2.
  await waitFor(() => (logs.match(/msg="WebSocket over HTTP\/2"/g) || []).length >= 2,
    { message: 'two sessions over HTTP/2 in the gateway log' });
  assert.equal((logs.match(/msg="WebSocket over HTTP\/2"/g) || []).length, 2, logs.slice(-4000));

  const hello = `hello over h2 ${Date.now()}`;
  await say(alice, hello);
  await waitForMessage(bob, 'alice', hello);
  const reply = 'and back';
  await say(bob, reply);
  await waitForMessage(alice, 'bob', reply);
  const seen = (msgs) => msgs.map((m) => `${m.who}: ${m.text}`);
  assert.deepEqual(seen(await chatMessages(alice)).slice(-2), [`alice: ${hello}`, `bob: ${reply}`]);
  for (const page of pages) assert.deepEqual(page.errors.map(String), [], `uncaught errors in ${page.url()}`);
});
