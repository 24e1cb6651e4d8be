// pusher-js's web build in Debian's Chromium (playwright-core) against the
// gateway, for peers/interop/pusher_test.go:
//
//	node pusher_chromium.mjs ADDR KEY APP_ID SECRET USER_DATA_DIR
//
// The page is one of the gateway's own (/healthz), so that its origin is
// the gateway's. It subscribes to a public, a private and a presence
// channel, the pusher server SDK signing the authorizations in Node; the
// SDK then triggers an event on each, and the page sends a client event
// that a second pusher-js in the page receives. Prints one JSON line:
// {"browser", "subscribed": [...], "events": [...], "members": n}.
import { openPusherPage } from './pusher_page.mjs';

const { context, page, sdk, key, host, port } = await openPusherPage(process.argv.slice(2));
try {
  const subscribed = await page.evaluate(async ({ key, host, port }) => {
    const opts = (user) => ({
      cluster: 'local', wsHost: host, wsPort: Number(port), forceTLS: false,
      enabledTransports: ['ws'], disableStats: true,
      channelAuthorization: {
        customHandler: (params, cb) =>
          window.signChannel(params.socketId, params.channelName, user).then((a) => cb(null, a), (e) => cb(e, null)),
      },
    });
    window.received = [];
    const a = new window.Pusher(key, opts({ user_id: 'ann', user_info: { name: 'Ann' } }));
    const b = new window.Pusher(key, opts({ user_id: 'ben' }));
    window.clients = { a, b };
    const sub = (client, name, tag) => new Promise((resolve, reject) => {
      const ch = client.subscribe(name);
      ch.bind_global((event, data) => {
        if (!event.startsWith('pusher:')) window.received.push({ tag, channel: name, event, data });
      });
      ch.bind('pusher:subscription_succeeded', (m) => resolve({ tag, channel: name, count: m && m.count }));
      ch.bind('pusher:subscription_error', (e) => reject(new Error(`${name}: ${JSON.stringify(e)}`)));
    });
    return Promise.all([
      sub(a, 'news', 'a'), sub(a, 'private-room', 'a'), sub(a, 'presence-lobby', 'a'),
      sub(b, 'private-room', 'b'), sub(b, 'presence-lobby', 'b'),
    ]);
  }, { key, host, port });
  for (const channel of ['news', 'private-room', 'presence-lobby']) {
    await sdk.trigger(channel, 'greet', { on: channel });
  }
  await page.evaluate(() => window.clients.a.channel('private-room').trigger('client-hello', { from: 'ann' }));
  await page.waitForFunction(() => window.received.length >= 6, null, { timeout: 10000 }).catch(() => {});
  await new Promise((r) => setTimeout(r, 300)); // anything more would be wrong
  const events = await page.evaluate(() => window.received);
  const browser = context.browser();
  process.stdout.write(JSON.stringify({ browser: browser ? browser.version() : '', subscribed, events }) + '\n');
  await page.evaluate(() => { window.clients.a.disconnect(); window.clients.b.disconnect(); });
} finally {
  await context.close();
}
