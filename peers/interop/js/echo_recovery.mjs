// Laravel Echo with the recovery extension (pusher_recovery.mjs), on
// pusher-js's web build in Debian's Chromium (playwright-core), for
// peers/interop/pusher_echo_test.go:
//
//	node echo_recovery.mjs ADDR KEY APP_ID SECRET USER_DATA_DIR
//
// The app at ADDR keeps history (history_size). The pages reach the
// gateway through a TCP proxy in this process, which the script cuts: it
// closes every connection through it and holds new ones unanswered until
// it resumes, so pusher-js loses its connection without being told and
// reconnects by itself. Two pages, so two pusher-js classes: in "rec",
// enableRecovery(window.Pusher) runs before new Echo({broadcaster:
// 'pusher'}) picks window.Pusher up; in "plain", Echo runs on pusher-js
// unchanged. Each listens ('.tick') on a public and a private channel; the
// SDK triggers on both channels tick 1, the cut, ticks 2 to 4 once both
// pusher-js are trying to reconnect, the resume, and, once both have
// subscribed again, tick 5.
// Prints one JSON line: {"browser", "rec": [...], "plain": [...],
// "recConnects", "plainConnects"}: each page's log in the order Echo
// called back (and the recovered of each pusher:subscription_succeeded),
// and how many times its pusher-js connected.
import net from 'node:net';
import { openPusherPage, require } from './pusher_page.mjs';
import { enableRecovery } from './pusher_recovery.mjs';

const argv = process.argv.slice(2);
const [gwHost, gwPort] = argv[0].split(':');

// The proxy: every connection piped to the gateway. Cut, it closes those
// and holds new ones unanswered (a network that is down), so pusher-js's
// attempts to reconnect wait for the way to open again.
const conns = new Set();
let held = null; // the connections waiting while cut, or null
const forward = (c) => {
  const up = net.connect(Number(gwPort), gwHost);
  const pair = [c, up];
  conns.add(pair);
  const close = () => {
    conns.delete(pair);
    c.destroy();
    up.destroy();
  };
  for (const s of pair) {
    s.on('error', close);
    s.on('close', close);
  }
  c.pipe(up);
  up.pipe(c);
};
const proxy = net.createServer((c) => {
  if (!held) {
    forward(c);
    return;
  }
  c.pause(); // what it sends waits in its buffer
  c.on('error', () => c.destroy());
  held.push(c);
});
const cut = () => {
  held = [];
  for (const [c, up] of conns) {
    c.destroy();
    up.destroy();
  }
  conns.clear();
};
const resume = () => {
  const waiting = held;
  held = null;
  for (const c of waiting) if (!c.destroyed) forward(c);
};
await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxyAddr = `127.0.0.1:${proxy.address().port}`;

const channels = ['feed', 'private-orders'];
const start = Date.now();
const note = (what) => process.stderr.write(`${new Date().toISOString()} (${Date.now() - start} ms): ${what}\n`);
const { context, page: rec, sdk, key, host, port, newPage } = await openPusherPage(argv, proxyAddr);
try {
  const plain = await newPage();
  await rec.addScriptTag({ content: `window.enableRecovery = ${enableRecovery};` });
  const pages = { rec, plain };
  for (const [tag, page] of Object.entries(pages)) {
    await page.addScriptTag({ path: require.resolve('laravel-echo/iife') });
    await page.evaluate(async ({ tag, key, host, port, channels }) => {
      if (tag === 'rec') window.enableRecovery(window.Pusher); // before new Echo
      window.log = [];
      window.subscriptions = 0;
      const EchoClass = window.Echo.default || window.Echo.Echo || window.Echo;
      const echo = new EchoClass({
        broadcaster: 'pusher', key, cluster: 'local', wsHost: host, wsPort: Number(port), forceTLS: false,
        enabledTransports: ['ws'], disableStats: true,
        channelAuthorization: {
          customHandler: (params, cb) =>
            window.signChannel(params.socketId, params.channelName, null).then((a) => cb(null, a), (e) => cb(e, null)),
        },
      });
      window.echo = echo;
      echo.connector.pusher.connection.bind('state_change', (s) => {
        console.log(`${tag}: ${s.previous} -> ${s.current} at ${new Date().toISOString()}`);
        if (s.current === 'connected') window.connects = (window.connects || 0) + 1;
      });
      await Promise.all(channels.map((name) => new Promise((resolve, reject) => {
        const ch = name.startsWith('private-') ? echo.private(name.slice('private-'.length)) : echo.channel(name);
        ch.listen('.tick', (d) => window.log.push(`${name} tick ${d.n}`));
        ch.subscribed(() => {
          window.log.push(`${name} subscribed`);
          window.subscriptions++;
          resolve();
        });
        ch.error((e) => reject(new Error(`${tag} ${name}: ${JSON.stringify(e)}`)));
        // Echo's subscribed passes no data; pusher-js's event has recovered.
        echo.connector.pusher.channel(name).bind('pusher:subscription_succeeded', (d) =>
          window.log.push(`${name} recovered ${d && d.recovered}`));
      })));
    }, { tag, key, host, port, channels });
  }
  const trigger = (n) => sdk.trigger(channels, 'tick', { n });
  // Polled, not on animation frames: one of the two pages is in the background.
  const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: 20000, polling: 50 });
  await trigger(1);
  for (const page of Object.values(pages)) await until(page, () => window.log.length >= 6);

  // The cut: both pages' sockets closed under pusher-js; once both have
  // begun to reconnect by themselves (their attempts held at the proxy),
  // the misses, then the way open again.
  note('cut');
  cut();
  for (const page of Object.values(pages)) {
    await until(page, () => window.echo.connector.pusher.connection.state === 'connecting');
  }
  for (let i = 0; held.length < Object.keys(pages).length; i++) {
    if (i === 200) throw new Error(`${held.length} attempts to reconnect within 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (let n = 2; n <= 4; n++) await trigger(n);
  note('ticks 2 to 4 triggered; resume');
  resume();
  for (const page of Object.values(pages)) {
    await until(page, (k) => window.subscriptions >= k, 2 * channels.length);
  }
  note('both subscribed again');
  await trigger(5);
  // What they got is the test's to judge: a short log is reported too.
  const settle = (page, n) => page.waitForFunction((k) => window.log.length >= k, n, { timeout: 10000, polling: 50 }).catch(() => {});
  await Promise.all([settle(rec, 6 + 4 + 8), settle(plain, 6 + 4 + 2)]);
  await new Promise((r) => setTimeout(r, 500)); // anything more would be wrong
  const out = { browser: context.browser()?.version() ?? '' };
  for (const [tag, page] of Object.entries(pages)) {
    out[tag] = await page.evaluate(() => window.log);
    out[tag + 'Connects'] = await page.evaluate(() => window.connects);
    await page.evaluate(() => window.echo.disconnect());
  }
  process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  await context.close();
  cut();
  for (const c of held) c.destroy();
  proxy.close();
}
