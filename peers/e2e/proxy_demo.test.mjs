// duplex proxy between Debian's Chromium and a real `duplex serve`: the chat
// demo page is loaded through the proxy (its HTML and scripts passed on as
// plain HTTP) and its WebSocket relayed frame by frame, compressed end to
// end. The proxy's printout must show the page's requests and the demo's
// frames in order both ways, the compressed ones inflated.
//
//   cd peers && node --test e2e/proxy_demo.test.mjs   (part of make e2e)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import {
  Gateway, buildDuplex, launchChromium, openPage, say, waitFor, waitForMessage, waitSubscribed, withTimeout,
} from './harness.mjs';

// The demo namespace, compressed with context takeover.
const CONFIG = `
demo: true
compression: context
drain_window: 1s
log:
  level: warn
`;

let dir, gateway, browser, proxy;

/** duplex proxy in front of the gateway: its process, URL and printout. */
async function startProxy(bin, to) {
  // --keep-host: the page's Origin names the proxy, and the gateway
  // checks it against the Host it is given.
  const proc = spawn(bin, ['proxy', '--listen', '127.0.0.1:0', '--to', to, '--keep-host'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { proc, out: '', err: '', url: '' };
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => { p.err = (p.err + s).slice(-8000); });
  const lines = createInterface({ input: proc.stdout });
  p.url = await withTimeout(new Promise((ok, fail) => {
    proc.once('exit', (code, signal) => fail(new Error(`duplex proxy exited (${code ?? signal}):\n${p.err}`)));
    lines.on('line', (line) => {
      p.out += line + '\n';
      const m = /^duplex proxy listening on ws:\/\/([^,]+), relaying to /.exec(line);
      if (m) ok(`http://${m[1]}`);
    });
  }), 20000, 'duplex proxy listening');
  return p;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'duplex-proxy-e2e-'));
  const [bin] = await Promise.all([buildDuplex(dir), writeFile(join(dir, 'duplex.yaml'), CONFIG)]);
  gateway = await new Gateway(bin, join(dir, 'duplex.yaml')).start();
  proxy = await startProxy(bin, `ws://${gateway.addr}`);
  browser = await launchChromium();
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  if (proxy && proxy.proc.exitCode === null) {
    const exited = once(proxy.proc, 'exit');
    proxy.proc.kill('SIGTERM');
    const [code] = await withTimeout(exited, 10000, 'duplex proxy exiting after SIGTERM');
    assert.equal(code, 0, `duplex proxy exit status after SIGTERM:\n${proxy.err}`);
  }
  await gateway?.kill('SIGTERM');
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Checks that each pattern matches a line after the one the previous matched. */
function assertLinesInOrder(out, patterns) {
  let at = 0;
  for (const p of patterns) {
    const re = new RegExp(p.source, 'm');
    const m = re.exec(out.slice(at));
    assert.ok(m, `after byte ${at}, no line of the proxy's printout matches ${re}:\n${out.slice(0, 20000)}`);
    at += m.index + m[0].length;
  }
}

test('the chat demo through duplex proxy: the page works and its frames are shown in order, inflated', { timeout: 90000 }, async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  await context.addInitScript(() => localStorage.setItem('duplex.name', 'proxied'));
  const page = await openPage(context, { url: proxy.url }, '/chat.html');
  await waitSubscribed(page, 'demo:chat');
  const text = `Through the proxy ${Date.now()}`;
  await say(page, text);
  await waitForMessage(page, 'proxied', text);
  // The publication's push, inflated, is the last frame the test waits for.
  await waitFor(() => proxy.out.includes(`"push":"pub","channel":"demo:chat"`) && proxy.out.includes(text),
    { message: 'the publication in the proxy\'s printout' });
  assert.deepEqual(page.errors.map(String), []);

  const ts = String.raw`^\d\d:\d\d:\d\d\.\d{6} `;
  const frame = (dir, rest) => new RegExp(`${ts}#1 ${dir} text fin( rsv1)? len=\\d+: (\\(inflated to \\d+ bytes\\) )?${rest}`);
  assertLinesInOrder(proxy.out, [
    new RegExp(`${ts}http GET /chat\\.html -> 200 OK$`),
    new RegExp(`${ts}http GET /duplex\\.js -> 200 OK$`),
    new RegExp(`${ts}#1 in  GET /ws HTTP/1\\.1`),
    new RegExp(`${ts}#1 in  Sec-Websocket-Extensions: permessage-deflate`),
    new RegExp(`${ts}#1 out HTTP/1\\.1 101 Switching Protocols$`),
    new RegExp(`${ts}#1 out Sec-Websocket-Extensions: permessage-deflate`),
    new RegExp(`${ts}#1 out Sec-Websocket-Protocol: duplex\\.v1\\.json$`),
    frame('in ', String.raw`\{"id":\d+,"method":"connect"`),
    frame('out', String.raw`\{"id":\d+,"result":\{"client":`),
    frame('in ', String.raw`.*"method":"subscribe","channel":"demo:chat"`),
    frame('in ', String.raw`.*"method":"publish","channel":"demo:chat".*${text}`),
    frame('out', String.raw`.*"push":"pub","channel":"demo:chat".*${text}`),
  ]);
  // Chromium compresses what it sends: its messages reach the gateway
  // compressed, and the proxy shows them inflated.
  assert.match(proxy.out, new RegExp(`${ts}#1 in  text fin rsv1 len=\\d+: \\(inflated to \\d+ bytes\\) .*"method":"publish".*${text}`, 'm'));
  assert.doesNotMatch(proxy.out, /inflate failed|not inflated/);
});
