// End-to-end tests of duplex.js and the demo pages in Debian's Chromium
// against a real `duplex serve`: chat and presence between two pages, exactly
// once delivery across server-side disconnects, the whiteboard's history, a
// gateway restart, and screenshots of every page into docs/screenshots/.
//
//   cd peers && node --test e2e/*.test.mjs   (make e2e; peers/setup.sh installs Chromium)
//
// The tests share one gateway and run in order; the restart comes last.
// E2E_VERBOSE=1 shows the gateway's logs and the pages' consoles.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  Gateway, buildDuplex, canvasPainted, chatClientId, chatMessages, chatPresence, hs256Token, launchChromium, openPage,
  repoRoot, say, sleep, waitFor, waitForMessage, waitForState, waitSubscribed, withTimeout,
} from './harness.mjs';

const SCREENSHOTS = join(repoRoot, 'docs', 'screenshots');
const DESKTOP = { viewport: { width: 1200, height: 760 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

// The demo namespace is the gateway's default one (demo: true); e2e is the
// test's own: token users only, publishing from the backend API, and history
// large enough to recover everything published while a page is away.
const SECRET = randomBytes(32).toString('hex');
const CONFIG = `
demo: true
drain_window: 1s
log:
  level: warn
auth:
  algorithm: HS256
  secret: ${SECRET}
  anonymous: true
namespaces:
  - name: e2e
    subscribe: authenticated
    publish: server
    history_size: 5000
    history_ttl: 10m
`;

let dir, gateway, browser;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'duplex-e2e-'));
  const [bin] = await Promise.all([buildDuplex(dir), writeFile(join(dir, 'duplex.yaml'), CONFIG)]);
  gateway = await new Gateway(bin, join(dir, 'duplex.yaml')).start();
  browser = await launchChromium();
  await mkdir(SCREENSHOTS, { recursive: true });
}, { timeout: 360_000 });

after(async () => {
  if (browser) await withTimeout(browser.close(), 20000, 'closing Chromium');
  await gateway?.kill('SIGTERM');
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * A browser context closed after the test, whose pages' display name (and
 * cursor color) are set as if the user had chosen them.
 */
async function newContext(t, options, name, color = '#3857f5') {
  const context = await browser.newContext({ colorScheme: 'light', ...options });
  t.after(() => context.close());
  await context.addInitScript(([n, c]) => {
    localStorage.setItem('duplex.name', n);
    localStorage.setItem('duplex.color', c);
  }, [name, color]);
  return context;
}

function assertNoPageErrors(...pages) {
  for (const page of pages) assert.deepEqual(page.errors.map(String), [], `uncaught errors in ${page.url()}`);
}

function screenshot(page, name) {
  return page.screenshot({ path: join(SCREENSHOTS, name), timeout: 15000 });
}

// ---- chat ----

test('chat: two pages see each other\'s messages and presence', { timeout: 60000 }, async (t) => {
  const alice = await openPage(await newContext(t, DESKTOP, 'alice'), gateway, '/chat.html');
  const bob = await openPage(await newContext(t, DESKTOP, 'bob'), gateway, '/chat.html');
  const aliceId = await chatClientId(alice);
  const bobId = await chatClientId(bob);
  assert.notEqual(aliceId, bobId);

  // Each sees the other online (the one that came first by a join event).
  for (const [page, other] of [[alice, bobId], [bob, aliceId]]) {
    await waitFor(async () => (await chatPresence(page)).some((p) => p.id === other), { message: 'the other page in presence' });
    assert.equal(await page.textContent('#count'), '2');
  }

  const hello = 'Hi Bob! This goes through the gateway.';
  const reply = 'Hello Alice, got it live.';
  await say(alice, hello);
  await waitForMessage(bob, 'alice', hello);
  await say(bob, reply);
  await waitForMessage(alice, 'bob', reply);
  const seen = (msgs) => msgs.map(({ who, text, offset }) => ({ who, text, offset }));
  const aliceSees = await chatMessages(alice);
  const bobSees = await chatMessages(bob);
  assert.deepEqual(seen(aliceSees).map((m) => m.text), [hello, reply], 'each message once, in order');
  assert.deepEqual(seen(bobSees), seen(aliceSees));
  assert.deepEqual(aliceSees.map((m) => m.mine), [true, false]);
  assert.deepEqual(bobSees.map((m) => m.mine), [false, true]);

  // Names come with the messages: presence now shows them.
  await waitFor(async () => JSON.stringify(await chatPresence(alice)) ===
    JSON.stringify([{ id: aliceId, name: 'alice (you)' }, { id: bobId, name: 'bob' }]), { message: 'alice\'s presence with names' });
  await waitFor(async () => JSON.stringify(await chatPresence(bob)) ===
    JSON.stringify([{ id: aliceId, name: 'alice' }, { id: bobId, name: 'bob (you)' }]), { message: 'bob\'s presence with names' });

  // A third, on a phone, gets the conversation from history and joins in.
  const carolContext = await newContext(t, PHONE, 'carol');
  const carol = await openPage(carolContext, gateway, '/chat.html');
  await waitForMessage(carol, 'bob', reply);
  assert.deepEqual(seen(await chatMessages(carol)), seen(bobSees), 'history on join');
  const onPhone = 'Joining from my phone.';
  await say(carol, onPhone);
  for (const page of [alice, bob]) await waitForMessage(page, 'carol', onPhone);
  for (const page of [alice, bob, carol]) {
    await waitFor(async () => (await page.textContent('#count')) === '3', { message: 'three online' });
  }
  await waitFor(async () => (await chatPresence(alice)).some((p) => p.name === 'carol'), { message: 'carol named in presence' });
  await screenshot(alice, 'chat.png');
  await screenshot(carol, 'chat-phone.png');

  // Leaving shows too.
  await carolContext.close();
  await waitFor(async () => (await alice.textContent('#count')) === '2', { message: 'carol\'s leave' });
  assert.ok(!(await chatPresence(alice)).some((p) => p.name === 'carol'));
  assertNoPageErrors(alice, bob, carol);
});

// ---- recovery across server-side disconnects ----

test('a page cut off by the server recovers every publication exactly once, in order', { timeout: 60000 }, async (t) => {
  const user = 'e2e-reader';
  const channel = 'e2e:numbers';
  const page = await openPage(await newContext(t, DESKTOP, 'reader'), gateway, '/index.html');
  // A second client in the page, with a token so that the backend API can
  // disconnect its user. The fixed jitter makes each reconnect wait 500 ms
  // and then 1 s, so that publications certainly happen while it is away.
  await page.evaluate(async ({ token, channel }) => {
    const { Client } = await import('/duplex.js');
    const reader = new Client(`ws://${location.host}/ws`, { token, name: 'e2e-reader', minReconnectDelay: 1000, random: () => 0.5 });
    const log = { numbers: [], offsets: [], epochs: [], subscribed: [], gaps: [], disconnected: [], errors: [] };
    const sub = reader.subscribe(channel);
    sub.on('publication', (p) => {
      log.numbers.push(p.data.n);
      log.offsets.push(p.offset);
      log.epochs.push(p.epoch);
    });
    sub.on('subscribed', (ctx) => log.subscribed.push(ctx));
    sub.on('gap', (gap) => log.gaps.push(gap));
    sub.on('error', (err) => log.errors.push(String(err)));
    reader.on('error', (err) => log.errors.push(String(err)));
    reader.on('disconnected', (d) => log.disconnected.push({ ...d, position: sub.position }));
    globalThis.reader = reader;
    globalThis.readerLog = log;
    reader.connect();
  }, { token: hs256Token(SECRET, { sub: user }), channel });
  const readerLog = () => page.evaluate(() => globalThis.readerLog);
  const subscribedMoreThan = (n) => page.waitForFunction((k) => globalThis.readerLog.subscribed.length > k, n, { timeout: 20000, polling: 50 });
  await subscribedMoreThan(0);

  // The publisher: numbered messages from the backend API, a few every
  // 10 ms, until told to stop (and never more than MAX).
  const MAX = 3000;
  let published = 0;
  let stop = false;
  const publisher = (async () => {
    while (!stop && published < MAX) {
      await gateway.api('publish', { channel, data: { n: published + 1 } });
      published++;
      if (published % 4 === 0) await sleep(10);
    }
  })();
  const publishedAtLeast = (n) => waitFor(() => published >= n || stop, { timeout: 20000, message: `${n} publications` });
  try {
    await publishedAtLeast(100);
    for (let round = 1; round <= 2; round++) {
      const res = await gateway.api('disconnect', { user, code: 4004, reason: 'e2e: reconnect' });
      assert.equal(res.disconnected, 1);
      await subscribedMoreThan(round);
      await publishedAtLeast(published + 50); // live again for a while
    }
  } finally {
    stop = true;
    await publisher;
  }
  const total = published;
  assert.ok(total < MAX, 'the publisher stopped when told');
  await page.waitForFunction((n) => globalThis.readerLog.numbers.length >= n, total, { timeout: 20000, polling: 50 });
  await sleep(200); // room for a duplicate to show up

  const log = await readerLog();
  assert.deepEqual(log.numbers, Array.from({ length: total }, (_, i) => i + 1), 'every number once, in order');
  assert.deepEqual(log.offsets, Array.from({ length: total }, (_, i) => log.offsets[0] + i), 'consecutive offsets');
  assert.equal(new Set(log.epochs).size, 1);
  assert.deepEqual(log.gaps, []);
  assert.deepEqual(log.errors, []);
  assert.deepEqual(log.disconnected.map((d) => [d.code, d.reconnect]), [[4004, true], [4004, true]]);
  assert.deepEqual(log.subscribed.map((s) => s.recovered), [false, true, true]);
  for (let i = 1; i <= 2; i++) {
    // The stream moved on while the page was away: what it missed came by recovery.
    const away = log.disconnected[i - 1].position;
    assert.equal(log.subscribed[i].epoch, away.epoch);
    assert.ok(log.subscribed[i].offset > away.offset, `publications while away, round ${i}: ${away.offset} → ${log.subscribed[i].offset}`);
  }
  t.diagnostic(`${total} publications; away at offsets ${log.disconnected.map((d) => d.position.offset)}, back at ${log.subscribed.slice(1).map((s) => s.offset)}`);
  assertNoPageErrors(page);
});

// ---- the whiteboard ----

/** Draws a stroke with the mouse through points in board coordinates (0..1). */
async function drawStroke(page, points) {
  const box = await page.locator('#board').boundingBox();
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...at(p), { steps: 3 });
  await page.mouse.up();
}

const range = (n) => Array.from({ length: n + 1 }, (_, i) => i / n);
const DRAWING = [
  range(24).map((t) => [0.08 + 0.84 * t, 0.3 + 0.12 * Math.sin(t * 4 * Math.PI)]), // a wave
  range(32).map((t) => [0.3 + 0.12 * Math.cos(t * 2 * Math.PI), 0.68 + 0.16 * Math.sin(t * 2 * Math.PI)]), // a circle
  [[0.58, 0.68], [0.65, 0.78], [0.82, 0.55]], // a tick
];

const boardStrokes = (page) => page.evaluate(() => globalThis.board.strokes().map(({ color, points }) => ({ color, points })));

test('whiteboard: a page opened later replays the strokes, however many cursor moves came since', { timeout: 60000 }, async (t) => {
  const ada = await openPage(await newContext(t, DESKTOP, 'ada', '#d9480f'), gateway, '/cursors.html');
  await waitSubscribed(ada, 'demo:board');
  for (const points of DRAWING) await drawStroke(ada, points);
  const drawn = await boardStrokes(ada);
  assert.equal(drawn.length, DRAWING.length);
  await waitFor(async () => (await gateway.api('history', { channel: 'demo:board', limit: 100 })).publications
    .filter((p) => p.data.kind === 'stroke').length === DRAWING.length, { message: 'the strokes in the board\'s history' });

  // More cursor positions than the demo namespace keeps in history (100).
  for (let i = 0; i < 150; i++) {
    await gateway.api('publish', { channel: 'demo:cursors', data: { kind: 'cursor', id: 'e2e-flood', name: 'flood', color: '#888888', x: i / 150, y: 0.95 } });
  }

  const grace = await openPage(await newContext(t, DESKTOP, 'grace', '#1c7ed6'), gateway, '/cursors.html');
  await waitFor(async () => (await boardStrokes(grace)).length >= drawn.length, { message: 'the strokes replayed from history' });
  assert.deepEqual(await boardStrokes(grace), drawn);
  assert.ok(await canvasPainted(grace, '#ink'), 'the replayed strokes are painted');

  // Cursors still go both ways on demo:cursors.
  const box = await grace.locator('#board').boundingBox();
  await grace.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.85, { steps: 5 });
  await ada.waitForSelector('.cursor span:text-is("grace")', { timeout: 15000 });
  const adaBox = await ada.locator('#board').boundingBox();
  await ada.mouse.move(adaBox.x + adaBox.width * 0.45, adaBox.y + adaBox.height * 0.5, { steps: 5 });
  await grace.waitForSelector('.cursor span:text-is("ada")', { timeout: 15000 });
  await sleep(150); // the cursor's 60 ms move transition
  await screenshot(grace, 'cursors.png');
  assertNoPageErrors(ada, grace);
});

// ---- screenshots of the other pages, with live data ----

/** How many pixels of canvas are exactly the color of CSS variable name. */
function pixelsOfColor(page, selector, name) {
  return page.$eval(selector, (canvas, varName) => {
    const probe = document.createElement('canvas').getContext('2d');
    probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(varName).trim();
    const hex = probe.fillStyle; // normalized to #rrggbb
    const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2] && data[i + 3] === 255) n++;
    }
    return n;
  }, name);
}

test('screenshots of the index, ticker and dashboard pages with live data', { timeout: 60000 }, async (t) => {
  const context = await newContext(t, DESKTOP, 'visitor');

  const index = await openPage(context, gateway, '/');
  await index.waitForSelector('#about:has-text("Connected as client")', { timeout: 15000 });
  await screenshot(index, 'index.png');

  const ticker = await openPage(context, gateway, '/ticker.html');
  await waitFor(async () => {
    const prices = await ticker.$$eval('#rows tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent));
    return prices.length === 3 && prices.every((p) => /^\d+\.\d\d$/.test(p));
  }, { message: 'three prices' });
  await ticker.waitForSelector('#updated:has-text("Updated")', { timeout: 15000 });
  for (let i = 1; i <= 3; i++) {
    await waitFor(() => canvasPainted(ticker, `#rows tr:nth-child(${i}) canvas`), { message: `sparkline ${i}` });
  }
  await screenshot(ticker, 'ticker.png');

  const dashboard = await openPage(context, gateway, '/dashboard.html');
  // A sample taken since the three pages are open counts them.
  await waitFor(async () => Number(await dashboard.textContent('#connections')) >= 3 &&
    Number(await dashboard.textContent('#subscriptions')) >= 2, { message: 'this test\'s connections counted' });
  await waitFor(async () => !(await dashboard.textContent('#out')).includes('–'), { message: 'message rates' });
  // The connections and out / s lines, each at least a few pixels long.
  for (const line of ['--warn', '--up']) {
    await waitFor(async () => (await pixelsOfColor(dashboard, '#chart', line)) >= 20, { message: `the chart's ${line} line` });
  }
  await screenshot(dashboard, 'dashboard.png');
  assertNoPageErrors(index, ticker, dashboard);
});

// ---- a gateway restart: last, as it ends the history of every channel ----

/** Records the events of the page's own client and its subscription to channel. */
function recordEvents(page, channel) {
  return page.evaluate((ch) => {
    const sub = client.getSubscription(ch);
    const log = { states: [], subscribed: [], gaps: [], pubs: [] };
    client.on('state', (s) => log.states.push(s));
    sub.on('subscribed', (ctx) => log.subscribed.push(ctx));
    sub.on('gap', (gap) => log.gaps.push(gap));
    sub.on('publication', (p) => log.pubs.push({ offset: p.offset, epoch: p.epoch }));
    globalThis.e2eLog = log;
  }, channel);
}

test('after the gateway restarts, pages reconnect by themselves and report the lost history', { timeout: 90000 }, async (t) => {
  const context = await newContext(t, DESKTOP, 'alice');
  const pages = {
    'demo:chat': await openPage(context, gateway, '/chat.html'),
    'demo:ticker': await openPage(context, gateway, '/ticker.html'),
  };
  for (const [channel, page] of Object.entries(pages)) {
    await waitSubscribed(page, channel);
    await recordEvents(page, channel);
  }
  const before = 'Before the restart.';
  await gateway.api('publish', { channel: 'demo:chat', data: { user: 'backend', text: before } });
  await waitForMessage(pages['demo:chat'], 'backend', before);
  await pages['demo:ticker'].waitForFunction(() => globalThis.e2eLog.pubs.length > 0, null, { timeout: 15000, polling: 50 });
  const positions = {};
  for (const [channel, page] of Object.entries(pages)) {
    positions[channel] = await page.evaluate((ch) => client.getSubscription(ch).position, channel);
    assert.ok(positions[channel]?.offset > 0, `${channel} has a position`);
  }

  const oldPid = gateway.proc.pid;
  await gateway.kill('SIGKILL');
  for (const page of Object.values(pages)) await waitForState(page, 'disconnected');
  await gateway.start();
  assert.notEqual(gateway.proc.pid, oldPid);
  for (const page of Object.values(pages)) await waitForState(page, 'connected', 45000);

  for (const [channel, page] of Object.entries(pages)) {
    await page.waitForFunction(() => globalThis.e2eLog.gaps.length > 0, null, { timeout: 15000, polling: 50 });
    const log = await page.evaluate(() => globalThis.e2eLog);
    const old = positions[channel];
    // README ("Subscription"): recovered false, then a gap with reason
    // unrecoverable from the first offset missed; the stream goes on in
    // the new server's epoch.
    assert.equal(log.subscribed.length, 1, channel);
    const [sub] = log.subscribed;
    assert.equal(sub.recovered, false, channel);
    assert.notEqual(sub.epoch, old.epoch, `${channel}: a new epoch`);
    assert.equal(log.gaps.length, 1, channel);
    assert.equal(log.gaps[0].reason, 'unrecoverable', channel);
    // A new epoch: the range is the new stream's (from 1, never past its
    // position), and since says where the page was in the old one.
    assert.equal(log.gaps[0].from, 1, channel);
    assert.ok(log.gaps[0].to >= 0 && log.gaps[0].to <= sub.offset, channel);
    assert.equal(log.gaps[0].epoch, sub.epoch, channel);
    // (The ticker may have moved on between the snapshot and the kill.)
    assert.equal(log.gaps[0].since.epoch, old.epoch, channel);
    assert.ok(log.gaps[0].since.offset >= old.offset, channel);
    assert.deepEqual(log.states.slice(0, 1), ['disconnected'], channel);
    assert.equal(log.states.at(-1), 'connected', channel);
    t.diagnostic(`${channel}: before ${JSON.stringify(old)}; subscribed ${JSON.stringify(sub)}; gap ${JSON.stringify(log.gaps[0])}`);
  }

  // Live again: new prices in the new epoch, and the chat takes messages.
  // A stream is made by its first publication, not by a subscribe (PROTOCOL.md,
  // "Subscribe"): a page that subscribed before the new server's first price
  // was told no epoch, and takes the epoch of the first publication.
  const ticker = pages['demo:ticker'];
  const epoch = await ticker.evaluate(() => globalThis.e2eLog.subscribed[0].epoch);
  const oldEpoch = positions['demo:ticker'].epoch;
  await ticker.waitForFunction(([e, o]) => globalThis.e2eLog.pubs.some((p) => p.epoch !== o && (e === '' || p.epoch === e)),
    [epoch, oldEpoch], { timeout: 15000, polling: 50 });
  const chat = pages['demo:chat'];
  const afterText = 'After the restart.';
  await say(chat, afterText);
  const msgs = await waitForMessage(chat, 'alice', afterText);
  assert.ok(!msgs.some((m) => m.text === before), 'the page started again from the new, empty history');
  assertNoPageErrors(...Object.values(pages));
});
