// The Node ws client of the interop tests: runs the sessions of a plan (a
// JSON file, see plan_test.go) against the Go test's server and prints one
// JSON result per session on stdout.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { Inbox, describe, payload, pieces, sha256, withTimeout } from './payload.mjs';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const ca = plan.ca ? readFileSync(plan.ca) : undefined;

async function runSession(s) {
  const start = performance.now();
  const res = { name: s.name, protocol: '', extensions: '', steps: [] };
  const inbox = new Inbox();
  const pongs = new Inbox();
  let ws;
  try {
    ws = new WebSocket(s.url, s.protocols, {
      perMessageDeflate: s.compress ? { threshold: 0 } : false,
      maxPayload: 64 << 20,
      ca,
      handshakeTimeout: 10000,
    });
    ws.on('upgrade', (r) => { res.extensions = r.headers['sec-websocket-extensions'] ?? ''; });
    ws.on('message', (data, isBinary) => inbox.push({ kind: isBinary ? 'binary' : 'text', data }));
    ws.on('pong', (data) => pongs.push(data));
    ws.on('close', (code, reason) => inbox.close(code, reason.toString()));
    const opened = new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.on('error', reject);
    });
    await withTimeout(opened, 10000, 'open');
    res.protocol = ws.protocol;
    for (const step of s.steps) {
      res.steps.push(await withTimeout(runStep(ws, inbox, pongs, step), s.stepTimeoutMs, JSON.stringify(step)));
    }
  } catch (e) {
    res.error = String(e && e.stack ? e.stack : e);
  } finally {
    if (ws) ws.terminate();
  }
  res.ms = Math.round(performance.now() - start);
  return res;
}

async function runStep(ws, inbox, pongs, step) {
  switch (step.op) {
    case 'echo': {
      const b = payload(step.kind, step.size);
      const binary = step.kind === 'binary';
      if (step.fragments > 1) {
        const ps = pieces(b, step.fragments);
        ps.forEach((p, i) => ws.send(p, { binary, fin: i === ps.length - 1 }));
      } else {
        ws.send(b, { binary });
      }
      const m = await inbox.next();
      return { op: step.op, sent: await sha256(b), got: await describe(m.kind, m.data) };
    }
    case 'receive': {
      const m = await inbox.next();
      return { op: step.op, got: await describe(m.kind, m.data) };
    }
    case 'ping': {
      const data = Buffer.from('duplex-interop-ping');
      ws.ping(data);
      const pong = await pongs.next();
      return { op: step.op, ok: Buffer.compare(pong, data) === 0 };
    }
    case 'close': {
      ws.close(step.code, step.reason);
      return { op: step.op, ...(await inbox.waitClosed()) };
    }
    case 'awaitClose':
      return { op: step.op, ...(await inbox.waitClosed()) };
  }
  throw new Error(`unknown step ${step.op}`);
}

for (const s of plan.sessions) {
  process.stdout.write(JSON.stringify(await runSession(s)) + '\n');
}
