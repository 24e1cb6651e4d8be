// Drives Debian's Chromium with playwright-core for the HTTP/2 WebSocket
// test (RFC 8441):
//
//	node h2_chromium.mjs PAGE_URL USER_DATA_DIR
//
// opens the https:// page the Go test serves over HTTP/2 and runs
// window.runH2 there, which opens WebSockets to the page's own origin, so
// that Chromium may carry them on the page's HTTP/2 connection; prints
// {"browser": VERSION} and then one JSON result per WebSocket.
import { chromium } from 'playwright-core';

const [pageURL, userDataDir] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors', // the test's self-signed certificate
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
  await page.goto(pageURL);
  await page.waitForFunction(() => typeof window.runH2 === 'function', null, { timeout: 10000 });
  const results = await page.evaluate(() => window.runH2(), null);
  const browser = context.browser();
  process.stdout.write(JSON.stringify({ browser: browser ? browser.version() : '' }) + '\n');
  for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
} finally {
  await context.close();
}
