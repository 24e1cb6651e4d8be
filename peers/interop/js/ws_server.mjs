// The Node ws server of the interop tests, for the Go client to dial. It
// listens on three ports of 127.0.0.1: plain, with permessage-deflate, and
// TLS with the certificate the test made. It prints
// {"event":"listening",...} once listening and {"event":"closed",...} when
// a connection ends, and exits when its standard input closes.
//
// Paths: /echo echoes every message; /close closes at once with 4001 "bye";
// /ping pings the client three times, then sends "pings answered: 3";
// /fragments sends a text and a binary message of 10000 bytes in 5
// fragments each. All but /close echo afterwards. The id query parameter
// names the connection in the events.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { payload, pieces } from './payload.mjs';

const [certPath, keyPath] = process.argv.slice(2);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function serve(server, deflate) {
  const wss = new WebSocketServer({
    server,
    maxPayload: 64 << 20,
    perMessageDeflate: deflate ? { threshold: 0 } : false,
    handleProtocols: (protocols) => (protocols.has('duplex.test') ? 'duplex.test' : false),
  });
  wss.on('connection', handle);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function pingOnce(ws) {
  return new Promise((resolve) => {
    ws.once('pong', resolve);
    ws.ping('duplex-interop');
  });
}

async function handle(ws, req) {
  const u = new URL(req.url, 'http://127.0.0.1');
  const id = u.searchParams.get('id') ?? '';
  ws.on('error', (e) => emit({ event: 'error', id, error: String(e) }));
  ws.on('close', (code, reason) => emit({ event: 'closed', id, code, reason: reason.toString() }));
  if (u.pathname === '/close') {
    ws.close(4001, 'bye');
    return;
  }
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  if (u.pathname === '/ping') {
    let n = 0;
    for (; n < 3; n++) await pingOnce(ws);
    ws.send(`pings answered: ${n}`);
  } else if (u.pathname === '/fragments') {
    for (const kind of ['text', 'binary']) {
      const ps = pieces(payload(kind, 10000), 5);
      ps.forEach((p, i) => ws.send(p, { binary: kind === 'binary', fin: i === ps.length - 1 }));
    }
  }
}

const tlsOptions = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
const ports = {
  plain: await serve(http.createServer(), false),
  deflate: await serve(http.createServer(), true),
  tls: await serve(https.createServer(tlsOptions), false),
};
emit({ event: 'listening', ports });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
