// Drives Debian's Chromium with playwright-core for the interop tests:
//
//	node chromium.mjs PAGE_URL PLAN.json USER_DATA_DIR
//
// opens the test's page (browser.html, served by the Go test on 127.0.0.1),
// runs the plan there with window.runPlan and prints
// {"browser": VERSION, "userAgent": ...} then one JSON result per session.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [pageURL, planPath, userDataDir] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, 'utf8'));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // The wss sessions use the test's self-signed certificate.
    '--ignore-certificate-errors',
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
  await page.goto(pageURL);
  await page.waitForFunction(() => typeof window.runPlan === 'function', null, { timeout: 10000 });
  const out = await page.evaluate((p) => window.runPlan(p), plan);
  const browser = context.browser();
  process.stdout.write(JSON.stringify({ browser: browser ? browser.version() : '', userAgent: out.userAgent }) + '\n');
  for (const r of out.results) process.stdout.write(JSON.stringify(r) + '\n');
} finally {
  await context.close();
}
