// Laravel Echo, on pusher-js's web build, in Debian's Chromium
// (playwright-core) against the gateway, for
// peers/interop/pusher_echo_test.go:
//
//	node echo_chromium.mjs ADDR KEY APP_ID SECRET USER_DATA_DIR
//
// The page is one of the gateway's own (/healthz). Two Echo instances,
// Ann's and Ben's, use Echo's own API: channel(), private(), join() with
// here/joining/leaving, listen('.event'), whisper() and
// listenForWhisper(); the pusher server SDK signs their authorizations in
// Node and triggers events. Prints one JSON line: {"browser", "log": [...]}.
import { openPusherPage, require } from './pusher_page.mjs';

const { context, page, sdk, key, host, port } = await openPusherPage(process.argv.slice(2));
try {
  await page.addScriptTag({ path: require.resolve('laravel-echo/iife') }); // the browser build
  await page.evaluate(async ({ key, host, port }) => {
    window.log = [];
    const log = (...parts) => window.log.push(parts.join(' '));
    const EchoClass = window.Echo.default || window.Echo.Echo || window.Echo;
    const echo = (user) => new EchoClass({
      broadcaster: 'pusher', key, cluster: 'local', wsHost: host, wsPort: Number(port), forceTLS: false,
      enabledTransports: ['ws'], disableStats: true,
      channelAuthorization: {
        customHandler: (params, cb) =>
          window.signChannel(params.socketId, params.channelName, user).then((a) => cb(null, a), (e) => cb(e, null)),
      },
    });
    const ann = echo({ user_id: 'ann', user_info: { name: 'Ann' } });
    const ben = echo({ user_id: 'ben', user_info: { name: 'Ben' } });
    window.echoes = { ann, ben };
    const ready = (ch, tag) => new Promise((resolve, reject) => {
      ch.subscribed(() => resolve(tag));
      ch.error((e) => reject(new Error(`${tag}: ${JSON.stringify(e)}`)));
    });
    const names = (users) => users.map((u) => u.name).sort().join(',');
    await Promise.all([
      ready(ann.channel('news').listen('.greet', (d) => log('ann news greet', d.on)), 'ann news'),
      ready(ann.private('room').listen('.greet', (d) => log('ann private-room greet', d.on))
        .listenForWhisper('typing', (d) => log('ann private-room whisper typing', d.who)), 'ann room'),
      ready(ben.private('room'), 'ben room'),
    ]);
    await ready(ann.join('lobby')
      .here((users) => log('ann presence-lobby here', names(users)))
      .joining((u) => log('ann presence-lobby joining', u.name))
      .leaving((u) => log('ann presence-lobby leaving', u.name))
      .listen('.greet', (d) => log('ann presence-lobby greet', d.on)), 'ann lobby');
    await ready(ben.join('lobby').here((users) => log('ben presence-lobby here', names(users))), 'ben lobby');
  }, { key, host, port });
  for (const channel of ['news', 'private-room', 'presence-lobby']) {
    await sdk.trigger(channel, 'greet', { on: channel });
  }
  await page.evaluate(() => window.echoes.ben.private('room').whisper('typing', { who: 'ben' }));
  await page.waitForFunction(() => window.log.length >= 7, null, { timeout: 10000 }).catch(() => {});
  await page.evaluate(() => window.echoes.ben.leave('lobby'));
  await page.waitForFunction(() => window.log.length >= 8, null, { timeout: 10000 }).catch(() => {});
  await new Promise((r) => setTimeout(r, 300)); // anything more would be wrong
  const log = await page.evaluate(() => window.log);
  const browser = context.browser();
  process.stdout.write(JSON.stringify({ browser: browser ? browser.version() : '', log }) + '\n');
  await page.evaluate(() => { window.echoes.ann.disconnect(); window.echoes.ben.disconnect(); });
} finally {
  await context.close();
}
