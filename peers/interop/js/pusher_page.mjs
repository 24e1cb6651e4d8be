// What pusher_chromium.mjs, echo_chromium.mjs and echo_recovery.mjs share:
// from their arguments (ADDR KEY APP_ID SECRET USER_DATA_DIR), Debian's
// Chromium (playwright-core) on one of the gateway's own pages (/healthz,
// so that its origin is the gateway's) with pusher-js's web build loaded,
// and the pusher server SDK, which signs the pages' channel authorizations
// in Node through window.signChannel and calls the HTTP API at ADDR.
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

export const require = createRequire(import.meta.url);

// openPusherPage returns { context, page, sdk, key, host, port, newPage };
// the caller closes context. The pages load from pageAddr (default ADDR,
// another when a proxy stands in front of the gateway), which host and
// port name; newPage opens one more page like the first, with its own
// pusher-js.
export async function openPusherPage(argv, pageAddr = argv[0]) {
  const PusherServer = require('pusher');
  const [addr, key, appId, secret, userDataDir] = argv;
  const [host, port] = pageAddr.split(':');
  const [sdkHost, sdkPort] = addr.split(':');
  const sdk = new PusherServer({ appId, key, secret, host: sdkHost, port: sdkPort, useTLS: false });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const newPage = async (page) => {
    page = page ?? (await context.newPage());
    page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
    await page.goto(`http://${pageAddr}/healthz`);
    await page.addScriptTag({ path: require.resolve('pusher-js/dist/web/pusher.min.js') });
    return page;
  };
  try {
    await context.exposeFunction('signChannel', (socketId, channel, user) =>
      sdk.authorizeChannel(socketId, channel, channel.startsWith('presence-') ? user : undefined));
    const page = await newPage(context.pages()[0]);
    return { context, page, sdk, key, host, port, newPage: () => newPage() };
  } catch (e) {
    await context.close();
    throw e;
  }
}
