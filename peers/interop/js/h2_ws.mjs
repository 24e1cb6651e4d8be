// WebSocket over HTTP/2 (RFC 8441) with Node's http2 module: the extended
// CONNECT is Node's, the frames on the stream are ws's (its WebSocket
// class over an Http2Stream, as its server does over a socket).
//
//   node h2_ws.mjs client <wss-url> <ca.pem> <conns>
//     opens <conns> WebSockets as streams of one HTTP/2 session, sends
//     messages of several sizes and kinds on each, checks the echoes,
//     closes with 1000, and prints one JSON line per connection.
//   node h2_ws.mjs server <cert.pem> <key.pem> <enableConnectProtocol 0|1>
//     prints "listening <port>", then echoes on every WebSocket and prints
//     one JSON line per connection when it ends; runs until its standard
//     input ends.
import http2 from 'node:http2';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'));
const WebSocket = require('ws');

// wsOver makes a ws WebSocket of the given role over an HTTP/2 stream.
function wsOver(stream, isServer) {
  const ws = new WebSocket(null, undefined, { closeTimeout: 10000 });
  ws._isServer = isServer;
  ws.setSocket(stream, Buffer.alloc(0), { maxPayload: 64 << 20, allowSynchronousEvents: true });
  return ws;
}

const [mode, ...args] = process.argv.slice(2);

if (mode === 'client') {
  const [url, caFile, connsArg] = args;
  const u = new URL(url.replace(/^wss:/, 'https:'));
  const session = http2.connect(u.origin, { ca: fs.readFileSync(caFile) });
  session.on('error', (e) => { console.error('session error', e); process.exit(1); });
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  if (!session.remoteSettings.enableConnectProtocol) {
    console.error('the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL');
    process.exit(1);
  }
  const sizes = [0, 1, 125, 126, 65535, 65536, 1 << 20, 4 << 20];
  const one = async (i) => {
    const stream = session.request({
      ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https',
      ':path': u.pathname + '?conn=' + i, ':authority': u.host,
      'sec-websocket-version': '13', 'origin': u.origin,
    });
    const status = await new Promise((resolve, reject) => {
      stream.once('response', (h) => resolve(h[':status']));
      stream.once('error', reject);
    });
    if (status !== 200) throw new Error('status ' + status);
    const ws = wsOver(stream, false);
    const inbox = [];
    let wake = null;
    ws.on('message', (data, isBinary) => { inbox.push({ data, isBinary }); if (wake) wake(); });
    const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    const next = async () => { while (inbox.length === 0) await new Promise((r) => { wake = r; }); return inbox.shift(); };
    let checked = 0;
    for (const size of sizes) {
      for (const binary of [false, true]) {
        const payload = binary ? crypto.randomBytes(size) : 'é'.repeat(size >> 1) + (size & 1 ? 'a' : '');
        ws.send(payload, { binary });
        const got = await next();
        const want = binary ? payload : Buffer.from(payload);
        if (got.isBinary !== binary || !Buffer.from(got.data).equals(want)) throw new Error(`conn ${i}: echo of ${binary ? 'binary' : 'text'} ${size} differs`);
        checked++;
      }
    }
    ws.close(1000, 'node done');
    const end = await closed;
    return { conn: i, status, checked, closeCode: end.code, closeReason: end.reason };
  };
  try {
    const results = await Promise.all(Array.from({ length: Number(connsArg) }, (_, i) => one(i)));
    for (const r of results) console.log(JSON.stringify(r));
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
  session.close();
} else if (mode === 'server') {
  const [certFile, keyFile, enable] = args;
  const server = http2.createSecureServer({
    cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile),
    settings: { enableConnectProtocol: enable === '1' },
  });
  server.on('stream', (stream, headers) => {
    if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket' || headers['sec-websocket-version'] !== '13') {
      stream.respond({ ':status': 400 });
      stream.end('not an RFC 8441 WebSocket');
      return;
    }
    const respond = { ':status': 200 };
    const offered = (headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim()).filter(Boolean);
    if (offered.length > 0) respond['sec-websocket-protocol'] = offered[0];
    stream.respond(respond);
    const ws = wsOver(stream, true);
    let messages = 0;
    ws.on('message', (data, isBinary) => { messages++; ws.send(data, { binary: isBinary }); });
    ws.on('close', (code, reason) => {
      console.log(JSON.stringify({ path: headers[':path'], protocol: headers[':protocol'], messages, closeCode: code, closeReason: reason.toString() }));
    });
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
  // The test ends the server by closing its standard input.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
} else {
  console.error('usage: h2_ws.mjs client|server ...');
  process.exit(2);
}
