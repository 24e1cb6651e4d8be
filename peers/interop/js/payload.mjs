// Payloads and hashes shared by the Node peers and the browser page. The
// same generator is written in Go (payload_test.go) and Python
// (py/peer.py): every side computes the same bytes for a kind and size, so
// the Go test can check both what a peer sent and what it got back.

const textUnit = new TextEncoder().encode('duplex é€😀 websocket\n');

// payload returns the bytes of a test message: for "binary", byte i is
// (i*31+7) mod 251; for "text", textUnit repeated, cut to size at a
// character boundary and padded with '.', so that it is valid UTF-8 of
// exactly size bytes.
export function payload(kind, size) {
  const b = new Uint8Array(size);
  if (kind === 'binary') {
    for (let i = 0; i < size; i++) b[i] = (i * 31 + 7) % 251;
    return b;
  }
  const unitByte = (i) => textUnit[i % textUnit.length];
  for (let i = 0; i < size; i++) b[i] = unitByte(i);
  // Back off while the byte after the cut continues a character.
  let cut = size;
  while (cut > 0 && (unitByte(cut) & 0xc0) === 0x80) cut--;
  b.fill(0x2e, cut);
  return b;
}

// pieces splits b into n pieces of nearly equal size (the last may be
// empty when b is short), cutting wherever that falls: text pieces may
// split a character, which a WebSocket endpoint must accept across frames.
export function pieces(b, n) {
  const out = [];
  const step = Math.ceil(b.length / n);
  for (let i = 0; i < n; i++) out.push(b.subarray(Math.min(i * step, b.length), Math.min((i + 1) * step, b.length)));
  return out;
}

export async function sha256(b) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', b));
  return Array.from(d, (x) => x.toString(16).padStart(2, '0')).join('');
}

// describe reports a received message: kind, size, hash and, for a short
// text, the text itself.
export async function describe(kind, bytes) {
  const r = { kind, size: bytes.length, hash: await sha256(bytes) };
  if (kind === 'text' && bytes.length <= 200) r.text = new TextDecoder().decode(bytes);
  return r;
}

// withTimeout rejects when p does not settle within ms.
export function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// Inbox queues the messages and the close event of a connection, for a
// runner that awaits them one at a time.
export class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.closed = null;
    this.closedWaiters = [];
  }
  push(item) {
    const w = this.waiters.shift();
    if (w) w.resolve(item);
    else this.items.push(item);
  }
  close(code, reason) {
    this.closed = { code, reason };
    for (const resolve of this.closedWaiters.splice(0)) resolve(this.closed);
    for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed (${code} ${reason}) while waiting for a message`));
  }
  next() {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    if (this.closed) return Promise.reject(new Error(`connection closed (${this.closed.code} ${this.closed.reason})`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  // waitClosed resolves with the close's code and reason.
  waitClosed() {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }
}
