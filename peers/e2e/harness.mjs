// The end-to-end tests' harness: the duplex binary built once, `duplex serve`
// started and stopped by PID, the backend API, connection tokens and Debian's
// Chromium driven by playwright-core. Everything listens on and dials
// 127.0.0.1 only, and every wait is bounded.
import { execFile, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Debian's Chromium, as peers/setup.sh installs it; CHROMIUM overrides. */
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

// Every process started here, so that none outlives the run even when a test
// or an after hook fails half-way.
const children = new Set();
process.on('exit', () => {
  for (const child of children) killQuietly(child, 'SIGKILL');
});

function killQuietly(child, signal) {
  try {
    process.kill(child.pid, signal);
  } catch {
    // Exited already.
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls fn until it returns a truthy value, which it returns; throws after
 * timeout ms with the message and the last value or error seen.
 */
export async function waitFor(fn, { timeout = 15000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(interval);
  }
}

/** Builds ./cmd/duplex into dir and returns the binary's path. */
export async function buildDuplex(dir) {
  const bin = join(dir, 'duplex');
  await new Promise((ok, fail) => {
    execFile(process.env.GO || 'go', ['build', '-o', bin, './cmd/duplex'], { cwd: repoRoot, timeout: 300_000 },
      (err, _stdout, stderr) => (err ? fail(new Error(`go build: ${err.message}\n${stderr}`)) : ok()));
  });
  return bin;
}

/**
 * A running `duplex serve`: its process, address and base URL. start() runs it
 * (again, on the same address after the first start), kill() ends it by PID.
 */
export class Gateway {
  /**
   * @param {string} bin the duplex binary
   * @param {string} config the YAML configuration file
   */
  constructor(bin, config) {
    this.bin = bin;
    this.config = config;
    this.addr = '127.0.0.1:0';
    this.proc = null;
    this.stderr = ''; // the tail of the logs, for failure messages
  }

  get url() {
    return `http://${this.addr}`;
  }

  /** Starts the gateway and waits for its "listening" line (at most timeout ms). */
  async start(timeout = 20000) {
    const proc = spawn(this.bin, ['serve', '--config', this.config, '--listen', this.addr], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(proc);
    this.proc = proc;
    proc.once('exit', () => children.delete(proc));
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (s) => {
      this.stderr = (this.stderr + s).slice(-8000);
      if (process.env.E2E_VERBOSE) process.stderr.write(s);
    });
    const lines = createInterface({ input: proc.stdout });
    let timer;
    try {
      this.addr = await new Promise((ok, fail) => {
        timer = setTimeout(() => fail(new Error(`duplex serve did not listen within ${timeout} ms:\n${this.stderr}`)), timeout);
        proc.once('exit', (code, signal) => fail(new Error(`duplex serve exited (${code ?? signal}):\n${this.stderr}`)));
        proc.once('error', fail);
        lines.on('line', (line) => {
          const m = /^duplex serve listening on http:\/\/([^/]+)\//.exec(line);
          if (m) ok(m[1]);
        });
      });
    } catch (err) {
      killQuietly(proc, 'SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return this;
  }

  /** Sends signal to the gateway's PID and waits for it to exit (SIGKILL after timeout ms). */
  async kill(signal = 'SIGKILL', timeout = 10000) {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    killQuietly(proc, signal);
    const timer = setTimeout(() => killQuietly(proc, 'SIGKILL'), timeout);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Calls the backend API (POST /api/<method>); throws on an error reply. */
  async api(method, body) {
    const res = await fetch(`${this.url}/api/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const reply = await res.json();
    if (!res.ok || reply.error) throw new Error(`api ${method}: HTTP ${res.status} ${JSON.stringify(reply)}`);
    return reply;
  }
}

/** A compact HS256 JWT for the gateway's auth.secret. */
export function hs256Token(secret, claims) {
  const part = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** Debian's Chromium, headless, with the flags of peers/interop. */
export function launchChromium() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Pages in background tabs and contexts keep their timers at full speed,
      // so that a client's reconnect is not throttled.
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
}

/**
 * Opens path of the gateway in a new page of context and waits until its
 * #state says connected. The page's uncaught errors collect in page.errors.
 */
export async function openPage(context, gateway, path) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  if (process.env.E2E_VERBOSE) page.on('console', (m) => process.stderr.write(`${path} console.${m.type()}: ${m.text()}\n`));
  await page.goto(gateway.url + path, { timeout: 15000 });
  await waitForState(page, 'connected');
  return page;
}

/** Waits until the page's #state element shows state. */
export function waitForState(page, state, timeout = 15000) {
  return page.waitForSelector(`#state[data-state="${state}"]`, { timeout });
}

/** Whether a canvas of the page has any pixel painted. */
export function canvasPainted(page, selector) {
  return page.$eval(selector, (canvas) => {
    if (!canvas.width || !canvas.height) return false;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
    return false;
  });
}

/** Resolves or rejects as promise does, or rejects after ms; leaves no timer behind. */
export async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`${what}: no result within ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until the page's client (globalThis.client) is subscribed to
 * channel; a timeout reports the states and the page's #error text.
 */
export async function waitSubscribed(page, channel, timeout = 15000) {
  try {
    await page.waitForFunction((ch) => globalThis.client.getSubscription(ch)?.state === 'subscribed', channel, { timeout, polling: 50 });
  } catch (err) {
    const seen = await page.evaluate((ch) => ({
      client: globalThis.client.state,
      subscription: globalThis.client.getSubscription(ch)?.state ?? 'none',
      error: document.getElementById('error')?.textContent ?? '',
    }), channel).catch((e) => String(e));
    throw new Error(`${page.url()}: not subscribed to ${channel}: ${JSON.stringify(seen)}`, { cause: err });
  }
}

// ---- the chat page (web/chat.html) ----

/** The messages the chat page shows, oldest first. */
export const chatMessages = (page) => page.$$eval('#messages .msg', (items) => items.map((li) => ({
  offset: li.dataset.offset,
  who: li.querySelector('.who').textContent,
  text: li.lastChild.textContent,
  mine: li.classList.contains('mine'),
})));

/** The page's presence list, by name. */
export const chatPresence = (page) => page.$$eval('#presence li', (items) =>
  items.map((li) => ({ id: li.title, name: li.textContent })).sort((a, b) => a.name.localeCompare(b.name)));

/** The page's own client id, which its presence list marks with "(you)". */
export async function chatClientId(page) {
  const you = await waitFor(async () => (await chatPresence(page)).find((p) => p.name.endsWith(' (you)')),
    { message: 'the page to list itself as present' });
  return you.id;
}

/** Types text into the chat box and sends it. */
export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Waits until page shows the message text by who; returns the page's messages. */
export function waitForMessage(page, who, text) {
  return waitFor(async () => {
    const msgs = await chatMessages(page);
    return msgs.some((m) => m.who === who && m.text === text) && msgs;
  }, { message: `${who}: ${text} on ${page.url()}` });
}
