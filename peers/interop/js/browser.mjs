// The browser peer of the interop tests: runs the sessions of a plan with
// the browser's own WebSocket API. The driver, chromium.mjs, calls
// window.runPlan(plan) and prints what it returns.
import { Inbox, describe, payload, sha256, withTimeout } from './payload.mjs';

async function runSession(s) {
  const start = performance.now();
  const res = { name: s.name, protocol: '', extensions: '', steps: [] };
  const inbox = new Inbox();
  let ws;
  try {
    ws = new WebSocket(s.url, s.protocols);
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e) => inbox.push(typeof e.data === 'string'
      ? { kind: 'text', data: new TextEncoder().encode(e.data) }
      : { kind: 'binary', data: new Uint8Array(e.data) });
    ws.onclose = (e) => inbox.close(e.code, e.reason);
    const opened = new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('WebSocket error event (the browser gives no detail)'));
    });
    await withTimeout(opened, 10000, 'open');
    res.protocol = ws.protocol;
    res.extensions = ws.extensions;
    for (const step of s.steps) {
      res.steps.push(await withTimeout(runStep(ws, inbox, step), s.stepTimeoutMs, JSON.stringify(step)));
    }
  } catch (e) {
    res.error = String(e && e.stack ? e.stack : e);
  } finally {
    if (ws && ws.readyState < WebSocket.CLOSING) ws.close();
  }
  res.ms = Math.round(performance.now() - start);
  return res;
}

async function runStep(ws, inbox, step) {
  switch (step.op) {
    case 'echo': {
      const b = payload(step.kind, step.size);
      ws.send(step.kind === 'text' ? new TextDecoder().decode(b) : b);
      const m = await inbox.next();
      return { op: step.op, sent: await sha256(b), got: await describe(m.kind, m.data) };
    }
    case 'receive': {
      const m = await inbox.next();
      return { op: step.op, got: await describe(m.kind, m.data) };
    }
    case 'close':
      ws.close(step.code, step.reason);
      return { op: step.op, ...(await inbox.waitClosed()) };
    case 'awaitClose':
      return { op: step.op, ...(await inbox.waitClosed()) };
  }
  throw new Error(`step ${step.op} is not possible with the browser's API`);
}

window.runPlan = async (plan) => {
  const results = [];
  for (const s of plan.sessions) results.push(await runSession(s));
  return { userAgent: navigator.userAgent, results };
};
