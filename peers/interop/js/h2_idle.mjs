// Opens idle WebSockets for the memory benchmark, with Node as the client
// so that the Go process holds only the server's side:
//
//   node h2_idle.mjs h1|h2 <wss-url> <ca.pem> <n>
//
// h1 opens n WebSockets over HTTP/1.1 with ws (one TLS connection each);
// h2 opens n as streams of one HTTP/2 session (RFC 8441). Each sends one
// 16-byte message and waits for its echo; then "ready" is printed. When
// standard input ends, every socket is closed with 1000 and the program
// exits.
import http2 from 'node:http2';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'));
const WebSocket = require('ws');

const [mode, url, caFile, nArg] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const n = Number(nArg);
const u = new URL(url.replace(/^wss:/, 'https:'));
let session = null;

async function openH1() {
  const ws = new WebSocket(url, { ca, perMessageDeflate: false });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return ws;
}

async function openH2() {
  const stream = session.request({
    ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https',
    ':path': u.pathname, ':authority': u.host, 'sec-websocket-version': '13',
  });
  const status = await new Promise((resolve, reject) => { stream.once('response', (h) => resolve(h[':status'])); stream.once('error', reject); });
  if (status !== 200) throw new Error('status ' + status);
  const ws = new WebSocket(null, undefined, { closeTimeout: 10000 });
  ws._isServer = false;
  ws.setSocket(stream, Buffer.alloc(0), { maxPayload: 1 << 20 });
  return ws;
}

try {
  if (mode === 'h2') {
    session = http2.connect(u.origin, { ca });
    await new Promise((resolve) => session.once('remoteSettings', resolve));
  }
  const sockets = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => (mode === 'h2' ? openH2() : openH1())));
    await Promise.all(batch.map((ws) => new Promise((resolve) => { ws.once('message', resolve); ws.send(Buffer.alloc(16)); })));
    sockets.push(...batch);
  }
  console.log('ready');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await Promise.all(sockets.map((ws) => new Promise((resolve) => { ws.once('close', resolve); ws.close(1000); })));
  if (session) session.close();
} catch (e) {
  console.error(e);
  process.exit(1);
}
