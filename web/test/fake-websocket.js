// A fake WebSocket and its in-memory server side, for the client's unit tests.
// (The test runner also lists this file; it holds no tests.)

/** Resolves after pending microtasks and I/O callbacks (setImmediate is not mocked). */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A new fake WebSocket class. Every instance is recorded in `sockets`; the test
 * plays the server with open(), push(), reply() and serverClose().
 */
export function fakeWebSocket() {
  /** @type {FakeSocket[]} */
  const sockets = [];

  class FakeSocket {
    static sockets = sockets;
    /** The most recent socket. */
    static get last() {
      return sockets[sockets.length - 1];
    }

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      /** Raw messages the client sent. @type {string[]} */
      this.sent = [];
      /** The client's close() call, if any. */
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('fake: send on a socket that is not open');
      this.sent.push(data);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // ---- server side ----

    /** Completes the handshake. */
    open() {
      this.readyState = 1;
      this.onopen?.({ type: 'open' });
    }

    /** Every command the client sent, parsed, in order. */
    get commands() {
      return this.sent.flatMap((m) => m.split('\n').map((line) => JSON.parse(line)));
    }

    /** The last command with this method. */
    last(method) {
      return this.commands.filter((c) => c.method === method).at(-1);
    }

    /** Sends one raw text message to the client. */
    message(text) {
      this.onmessage?.({ type: 'message', data: text });
    }

    /** Sends objects to the client, batched into one message. */
    push(...objects) {
      this.message(objects.map((o) => JSON.stringify(o)).join('\n'));
    }

    /** Replies with a result to the last command with this method. */
    reply(method, result = {}) {
      const cmd = this.last(method);
      if (!cmd) throw new Error(`fake: no ${method} command to reply to`);
      this.push({ id: cmd.id, result });
      return cmd;
    }

    /** Replies with an error to the last command with this method. */
    replyError(method, code, message = 'error') {
      const cmd = this.last(method);
      if (!cmd) throw new Error(`fake: no ${method} command to reply to`);
      this.push({ id: cmd.id, error: { code, message } });
      return cmd;
    }

    /** Closes the connection from the server side (or the network: 1006). */
    serverClose(code, reason = '') {
      this.readyState = 3;
      this.onclose?.({ type: 'close', code, reason, wasClean: code !== 1006 });
    }
  }

  return FakeSocket;
}

/**
 * Connects client over the fake: opens the socket, answers connect.
 * @returns {Promise<any>} the socket
 */
export async function connectClient(client, WS, result = {}) {
  if (client.state === 'disconnected') client.connect();
  await flush();
  const ws = WS.last;
  ws.open();
  await flush();
  ws.reply('connect', { client: 'c1', user: '', ping: 25, version: 'test', ...result });
  await flush();
  return ws;
}

/** Collects the arguments of an emitter's event. */
export function record(emitter, event) {
  const seen = [];
  emitter.on(event, (arg) => seen.push(arg));
  return seen;
}
