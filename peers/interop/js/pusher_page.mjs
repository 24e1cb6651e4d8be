// What pusher_chromium.mjs and echo_chromium.mjs share: from their
// arguments (ADDR KEY APP_ID SECRET USER_DATA_DIR), Debian's Chromium
// (playwright-core) on one of the gateway's own pages (/healthz, so that
// its origin is the gateway's) with pusher-js's web build loaded, and the
// pusher server SDK, which signs the page's channel authorizations in Node
// through window.signChannel.
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

export const require = createRequire(import.meta.url);

// openPusherPage returns { context, page, sdk, key, host, port }; the
// caller closes context.
export async function openPusherPage(argv) {
  const PusherServer = require('pusher');
  const [addr, key, appId, secret, userDataDir] = argv;
  const [host, port] = addr.split(':');
  const sdk = new PusherServer({ appId, key, secret, host, port, useTLS: false });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
    await page.exposeFunction('signChannel', (socketId, channel, user) =>
      sdk.authorizeChannel(socketId, channel, channel.startsWith('presence-') ? user : undefined));
    await page.goto(`http://${addr}/healthz`);
    await page.addScriptTag({ path: require.resolve('pusher-js/dist/web/pusher.min.js') });
    return { context, page, sdk, key, host, port };
  } catch (e) {
    await context.close();
    throw e;
  }
}
