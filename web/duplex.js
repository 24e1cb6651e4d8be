// duplex.js: the browser client of the Duplex gateway, protocol duplex.v1.json
// (see PROTOCOL.md). An ES module without dependencies or build step.
//
//   import { Client } from './duplex.js';
//   const client = new Client('wss://example.com/ws');
//   const sub = client.subscribe('demo:chat');
//   sub.on('publication', (pub) => console.log(pub.data));
//   client.connect();

/** The WebSocket subprotocol this client speaks. */
export const PROTOCOL = 'duplex.v1.json';

/**
 * Codes of errors raised by the client itself. Errors from the server carry the
 * protocol's codes (100–114), or the app's backend's own, instead.
 * @readonly
 * @enum {number}
 */
export const ErrorCode = Object.freeze({
  /** No connection, or no reply, within the `timeout` option. */
  TIMEOUT: 1,
  /** The connection closed before the reply came; the command may or may not have run. */
  CONNECTION_LOST: 2,
  /** `disconnect()` or `unsubscribe()` ended the call, or the client stopped for good. */
  DISCONNECTED: 3,
  /** The server sent something that is not the protocol's JSON. */
  BAD_MESSAGE: 4,
  /** A `getToken` callback failed. */
  TOKEN: 5,
});

/** The longest delay setTimeout takes without overflowing (about 24.8 days). */
const MAX_TIMER = 2 ** 31 - 1;

/** A connection that lived this long counts as stable: backoff starts over after it. */
const STABLE_MS = 5000;

/** @typedef {ReturnType<typeof setTimeout> | undefined} Timer */

/** WebSocket.OPEN, spelled out so that injected implementations need not define it. */
const OPEN = 1;

/** Server error codes after which a subscribe is retried with backoff. */
const RETRY_SUBSCRIBE = new Set([100, 113, 114]);

/**
 * An error with a numeric code: a protocol error code (100–113) from the server,
 * or one of {@link ErrorCode}.
 */
export class DuplexError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'DuplexError';
    /** @type {number} */
    this.code = code;
  }
}

/**
 * Whether a client reconnects after the server closed with this code
 * (PROTOCOL.md, "Close codes"): 4500–4999, 1000, 1002, 1007 and 1009 mean no.
 * @param {number} code
 * @returns {boolean}
 */
export function shouldReconnect(code) {
  if (code >= 4500 && code <= 4999) return false;
  return code !== 1000 && code !== 1002 && code !== 1007 && code !== 1009;
}

/**
 * The delay before reconnect attempt number `attempt` (0 for the first):
 * exponential backoff with full jitter, `random() * min(max, min * 2^attempt)`.
 * @param {number} attempt
 * @param {number} min smallest cap, ms
 * @param {number} max largest cap, ms
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number} whole milliseconds
 */
export function backoffDelay(attempt, min, max, random = Math.random) {
  const cap = Math.min(max, min * 2 ** attempt);
  return Math.floor(random() * cap);
}

/**
 * Reports an exception thrown by an event listener the way the platform reports
 * those of DOM event listeners, without unwinding the client's own work.
 */
/** @param {unknown} err */
function reportLater(err) {
  if (typeof globalThis.reportError === 'function') {
    globalThis.reportError(err);
    return;
  }
  queueMicrotask(() => {
    throw err;
  });
}

/** @param {unknown} err */
function asError(err) {
  return err instanceof Error ? err : new Error(String(err));
}

/** A tiny event emitter shared by Client and Subscription. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Adds a listener for an event.
   * @param {string} event
   * @param {Function} fn
   * @returns {this}
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  /**
   * Removes a listener added with {@link Emitter#on}.
   * @param {string} event
   * @param {Function} fn
   * @returns {this}
   */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  /**
   * @param {string} event
   * @param {unknown} [arg]
   * @protected
   */
  _emit(event, arg) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (err) {
        // A throwing listener must not leave the protocol state half updated.
        reportLater(err);
      }
    }
  }
}

/**
 * @typedef {object} ClientOptions
 * @property {string} [token] connection JWT; empty or absent means anonymous (or `getToken`)
 * @property {() => (string | Promise<string>)} [getToken] fetches a connection token: when
 *   there is none, after a close with 4003 (token expired), and before `expires` to `refresh`
 * @property {string} [name] client name sent in `connect`, default 'duplex.js'
 * @property {number} [minReconnectDelay] ms, default 500
 * @property {number} [maxReconnectDelay] ms, default 20000
 * @property {number} [pingInterval] ms without incoming messages before a `ping`, default 25000; 0 disables
 * @property {number} [pingTimeout] ms to wait for anything after a `ping`, default 10000
 * @property {number} [timeout] ms for a command's reply (and for the connect handshake), default 10000
 * @property {{ new (url: string, protocols?: string | string[]): WebSocket }} [WebSocket]
 *   constructor used instead of globalThis.WebSocket
 * @property {() => number} [random] uniform in [0, 1), default Math.random; jitters backoff and refresh
 * @property {Array<'websocket' | 'http_stream' | 'sse'>} [transports] tried in this order until
 *   one works, default ['websocket', 'http_stream', 'sse'] (['websocket'] with options.WebSocket);
 *   the one that worked is tried first on the next reconnect
 * @property {number} [fallbackTimeout] ms a transport may take to bring its first message before
 *   the next is tried, default 5000
 * @property {string} [fallbackURL] http(s) base of the fallback endpoints, default the gateway's
 *   URL with http(s) for ws(s) and without its /ws
 */

/**
 * @typedef {object} Publication
 * @property {string} channel
 * @property {unknown} data
 * @property {number} [offset] absent when the namespace keeps no history
 * @property {string} [epoch]
 * @property {{client: string, user: string, info?: unknown}} [info] the publisher; absent for the backend API
 */

/** @typedef {{offset: number, epoch: string}} StreamPosition */

/**
 * @typedef {object} HistoryOptions
 * @property {number} [limit] at most this many publications; 0 means only the position
 * @property {StreamPosition} [since] only publications after this position
 * @property {boolean} [reverse] newest first
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {string} [token] channel token, for namespaces that require one
 * @property {(channel: string) => (string | Promise<string>)} [getToken] fetches a channel
 *   token when there is none, and again after error 109 (invalid token)
 * @property {StreamPosition} [since] recover publications after this position on the first subscribe
 */

/**
 * A connection to the Duplex gateway that reconnects by itself and keeps its
 * subscriptions across reconnects.
 *
 * Events: 'state' (state string), 'connecting', 'connected' ({client, user, expires,
 * version, transport}), 'disconnected' ({code, reason, reconnect, delay}), 'error' (Error),
 * 'server_subscription' (a {@link Subscription} the server made at connect, the first time:
 * its events are those of a client's, and its position goes with every reconnect's connect
 * so that the server recovers what it missed).
 *
 * When a WebSocket upgrade fails, or brings no message within `fallbackTimeout`, the client
 * falls back to HTTP streaming and then to Server-Sent Events (PROTOCOL.md, "Fallback
 * transports"), with the same protocol, reconnection and recovery.
 */
export class Client extends Emitter {
  /**
   * @param {string} url WebSocket URL of the gateway's endpoint, e.g. wss://host/ws
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    /** The gateway's URL. @type {string} */
    this.url = url;
    const o = options;
    this._opts = {
      name: o.name ?? 'duplex.js',
      minReconnectDelay: o.minReconnectDelay ?? 500,
      maxReconnectDelay: o.maxReconnectDelay ?? 20000,
      pingInterval: o.pingInterval ?? 25000,
      pingTimeout: o.pingTimeout ?? 10000,
      timeout: o.timeout ?? 10000,
      random: o.random ?? Math.random,
    };
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    /** @type {string[]} */
    this._transports = [...(o.transports ?? (o.WebSocket ? ['websocket'] : ['websocket', 'http_stream', 'sse']))];
    if (this._transports.length === 0 || this._transports.some((t) => !TRANSPORTS.includes(t))) {
      throw new TypeError('duplex: options.transports lists websocket, http_stream and sse');
    }
    if (this._transports.includes('websocket') && typeof this._WebSocket !== 'function') {
      throw new TypeError('duplex: no WebSocket implementation; pass options.WebSocket');
    }
    this._fallbackTimeout = o.fallbackTimeout ?? 5000;
    this._fallbackURL = o.fallbackURL ?? url.replace(/^ws/, 'http').replace(/\/ws$/, '');
    /** The transport that worked last. @type {string} */
    this._working = '';
    /** The transports left to try in this round. @type {string[]} */
    this._round = [];
    /** The transport of the current attempt. @type {string} */
    this._current = '';
    this._gotMessage = false;
    /** @type {Timer} */ this._fallbackTimer = undefined;
    this._token = o.token || '';
    this._getToken = o.getToken ?? null;
    /** @type {'disconnected' | 'connecting' | 'connected'} */
    this._state = 'disconnected';
    this._active = false; // connect() was called and disconnect() was not
    /** @type {WebSocket | null} */
    this._ws = null;
    this._gen = 0; // bumped per connection attempt, so late async results are dropped
    this._nextId = 1;
    /** @type {Map<number, (err: DuplexError | null, result?: any) => void>} */
    this._pending = new Map();
    /** Calls made while not connected. @type {Array<any>} */
    this._queue = [];
    /** @type {string[]} */
    this._outbox = [];
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** Subscriptions the server made at connect (the connect proxy's channels). @type {Map<string, Subscription>} */
    this._serverSubs = new Map();
    this._attempt = 0;
    this._connectedAt = 0;
    /** @type {Timer} */ this._reconnectTimer = undefined;
    /** @type {Timer} connect handshake */ this._connectTimer = undefined;
    /** @type {Timer} silence before a ping */ this._idleTimer = undefined;
    /** @type {Timer} wait for anything after a ping */ this._pongTimer = undefined;
    /** @type {Timer} */ this._refreshTimer = undefined;
  }

  /**
   * 'disconnected', 'connecting' or 'connected'.
   * @returns {'disconnected' | 'connecting' | 'connected'}
   */
  get state() {
    return this._state;
  }

  /**
   * The transport of the connection: 'websocket', 'http_stream' or 'sse'; '' before the first.
   * @returns {string}
   */
  get transport() {
    return this._working;
  }

  /**
   * Starts connecting, and reconnecting after each close the protocol allows,
   * until {@link Client#disconnect}. While waiting to reconnect, it connects at once.
   */
  connect() {
    if (this._state !== 'disconnected') return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    if (!this._active) this._attempt = 0;
    this._active = true;
    this._open();
  }

  /**
   * Closes the connection with 1000 and stops reconnecting. Calls in flight or
   * waiting for a connection reject with {@link ErrorCode.DISCONNECTED}. Subscriptions
   * are kept: a later {@link Client#connect} resumes them where they stopped.
   */
  disconnect() {
    this._active = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    const ws = this._ws;
    const wasOpen = this._state !== 'disconnected';
    this._teardown(new DuplexError(ErrorCode.DISCONNECTED, 'client disconnected'));
    if (ws) closeQuietly(ws, 1000, 'disconnect called');
    this._failQueue(new DuplexError(ErrorCode.DISCONNECTED, 'client disconnected'));
    if (wasOpen) {
      this._setState('disconnected');
      this._emit('disconnected', { code: 1000, reason: 'disconnect called', reconnect: false });
    }
  }

  /**
   * Subscribes to a channel, now or as soon as the client is connected, and after
   * every reconnect. Subscribing again to the same channel returns the same object
   * (its options are not changed).
   * @param {string} channel
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(channel, options = {}) {
    let sub = this._subs.get(channel);
    if (sub) return sub;
    // The server's subscribe takes a server-side subscription over (from
    // the position it had, unless options say otherwise): it ends here.
    const server = this._serverSubs.get(channel);
    if (server) {
      if (options.since == null && server.position) options = { ...options, since: server.position };
      server._end(0, 'taken over by subscribe');
    }
    sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    if (this._state === 'connected') sub._subscribe();
    return sub;
  }

  /**
   * The active subscription to a channel, if any.
   * @param {string} channel
   * @returns {Subscription | undefined}
   */
  getSubscription(channel) {
    return this._subs.get(channel);
  }

  /**
   * The subscription the server made to a channel at connect (PROTOCOL.md,
   * "Server-side subscriptions"), if any. The 'server_subscription' event
   * announces each one the first time.
   * @param {string} channel
   * @returns {Subscription | undefined}
   */
  getServerSubscription(channel) {
    return this._serverSubs.get(channel);
  }

  /**
   * Publishes to a channel without subscribing to it.
   * @param {string} channel
   * @param {unknown} data any JSON value
   * @returns {Promise<{offset?: number, epoch?: string}>}
   */
  publish(channel, data) {
    return this._call('publish', { channel, data });
  }

  /**
   * Calls a method of the app's backend through the gateway's rpc proxy
   * (PROTOCOL.md, "rpc"); resolves with the data the backend returned.
   * @param {string} method such as "whoami", or "chat:kick" for the rpc endpoint of namespace chat
   * @param {unknown} [data] any JSON value
   * @returns {Promise<unknown>}
   */
  async rpc(method, data) {
    /** @type {{method: string, data?: unknown}} */
    const params = { method };
    if (data !== undefined) params.data = data;
    const res = await this._call('rpc', { params });
    return res.data;
  }

  /**
   * The clients present in a channel, by client id.
   * @param {string} channel
   * @returns {Promise<Record<string, {client: string, user: string, info?: unknown}>>}
   */
  async presence(channel) {
    const res = await this._call('presence', { channel });
    return res.clients ?? {};
  }

  /**
   * How many clients and distinct users are present in a channel.
   * @param {string} channel
   * @returns {Promise<{clients: number, users: number}>}
   */
  presenceStats(channel) {
    return this._call('presence_stats', { channel });
  }

  /**
   * Reads a channel's history and current position. A reply holds at most what
   * the server's reply budget allows; `truncated` says it was cut short, and the
   * next page starts after its last publication (`since`).
   * @param {string} channel
   * @param {HistoryOptions} [options]
   * @returns {Promise<{publications: Publication[], offset: number, epoch: string, truncated: boolean}>}
   */
  async history(channel, options = {}) {
    /** @type {Record<string, unknown>} */
    const fields = { channel };
    if (options.limit !== undefined) fields.limit = options.limit;
    if (options.since) fields.since = { offset: options.since.offset, epoch: options.since.epoch };
    if (options.reverse) fields.reverse = true;
    const res = await this._call('history', fields);
    return {
      publications: (res.publications ?? []).map((/** @type {any} */ p) => toPublication(channel, p)),
      offset: res.offset ?? 0,
      epoch: res.epoch ?? '',
      truncated: res.truncated === true,
    };
  }

  // ---- internals ----

  /** @param {'disconnected' | 'connecting' | 'connected'} state */
  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit('state', state);
  }

  async _open() {
    const gen = ++this._gen;
    this._setState('connecting');
    this._emit('connecting');
    if (!this._token && this._getToken) {
      let token;
      try {
        token = await this._getToken();
      } catch (err) {
        if (gen !== this._gen) return;
        this._emit('error', tokenError(err));
        this._closed(4000, 'getToken failed');
        return;
      }
      if (gen !== this._gen) return;
      this._token = token || '';
    }
    if (this._round.length === 0) {
      // A new round: the transport that worked last, then the others in order.
      this._round = this._working ? [this._working, ...this._transports.filter((t) => t !== this._working)] : [...this._transports];
    }
    const transport = /** @type {string} */ (this._round.shift());
    this._current = transport;
    this._gotMessage = false;
    let ws;
    try {
      ws = transport === 'websocket'
        ? new this._WebSocket(this.url, PROTOCOL)
        : /** @type {WebSocket} */ (/** @type {unknown} */ (new FallbackSocket(this._fallbackURL, transport === 'sse')));
    } catch (err) {
      // A malformed URL: trying again cannot help.
      this._emit('error', asError(err));
      this._active = false;
      this._closed(4000, 'cannot create WebSocket');
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen();
    ws.onmessage = (ev) => this._onData(ev.data);
    ws.onclose = (ev) => this._onSocketClose(ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows with the code
    this._connectTimer = setTimeout(() => this._abort(4000, 'connect timeout'), this._opts.timeout);
    if (this._round.length > 0) {
      this._fallbackTimer = setTimeout(() => {
        if (!this._gotMessage) this._fallBack(`${transport}: no message within ${this._fallbackTimeout} ms`);
      }, this._fallbackTimeout);
    }
  }

  /**
   * Gives up the transport of this attempt, which brought nothing, for the next.
   * @param {string} reason
   */
  _fallBack(reason) {
    const ws = this._ws;
    this._teardown(new DuplexError(ErrorCode.CONNECTION_LOST, reason));
    if (ws) closeQuietly(ws, 1000, 'falling back');
    this._open();
  }

  _onOpen() {
    /** @type {Record<string, unknown>} */
    const fields = { name: this._opts.name };
    if (this._token) fields.token = this._token;
    // The positions of the server-side subscriptions, so that the server
    // recovers what they missed.
    /** @type {Record<string, StreamPosition>} */
    const since = {};
    for (const [channel, sub] of this._serverSubs) {
      const p = sub.position;
      if (p) since[channel] = p;
    }
    if (Object.keys(since).length > 0) fields.subs = since;
    this._command('connect', fields, (err, res) => {
      if (err) {
        if (endedHere(err)) return;
        this._emit('error', err);
        this._abort(4000, 'connect failed');
        return;
      }
      this._onConnected(res, since);
    });
  }

  /**
   * @param {any} res the connect result
   * @param {Record<string, StreamPosition>} [since] the server-side subscriptions' positions sent
   */
  _onConnected(res, since = {}) {
    clearTimeout(this._connectTimer);
    this._connectTimer = undefined;
    this._connectedAt = Date.now();
    this._setState('connected');
    this._armIdle();
    this._scheduleRefresh(res.expires);
    // Subscriptions first, so queued presence/history calls find them.
    for (const sub of this._subs.values()) sub._subscribe();
    const queue = this._queue;
    this._queue = [];
    for (const call of queue) this._dispatch(call);
    this._working = this._current;
    this._round = [];
    this._emit('connected', {
      client: res.client ?? '',
      user: res.user ?? '',
      expires: res.expires ?? 0,
      version: res.version ?? '',
      transport: this._current,
    });
    if (this._state === 'connected') this._onServerSubs(res.subs, since);
  }

  /**
   * Takes the server-side subscriptions of a connect result: a new one is
   * announced ('server_subscription') before its reply is applied, so that
   * its listeners see what it recovered; one the server no longer made ends.
   * @param {any} subs the result's subs: channel → subscribe result
   * @param {Record<string, StreamPosition>} since
   */
  _onServerSubs(subs, since) {
    const made = subs !== null && typeof subs === 'object' ? subs : {};
    for (const [channel, sub] of [...this._serverSubs]) {
      if (!(channel in made)) sub._end(0, 'no longer subscribed by the server');
    }
    for (const [channel, res] of Object.entries(made)) {
      // The client's own subscription, resubscribing now, takes it over.
      if (this._subs.has(channel)) continue;
      let sub = this._serverSubs.get(channel);
      if (!sub) {
        sub = new Subscription(this, channel, {});
        sub._server = true;
        this._serverSubs.set(channel, sub);
        this._emit('server_subscription', sub);
        if (sub._state === 'unsubscribed') continue; // a listener unsubscribed
      }
      sub._state = 'subscribing';
      sub._sentOn = this._gen;
      sub._onSubscribed(res ?? {}, since[channel] ?? null);
      if (this._state !== 'connected') return;
    }
  }

  /** @param {unknown} data */
  _onData(data) {
    this._gotMessage = true;
    clearTimeout(this._fallbackTimer);
    clearTimeout(this._pongTimer);
    this._pongTimer = undefined;
    this._armIdle();
    if (typeof data !== 'string') {
      this._emit('error', new DuplexError(ErrorCode.BAD_MESSAGE, 'unexpected binary message'));
      return;
    }
    for (const line of data.split('\n')) {
      if (!line) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        this._emit('error', new DuplexError(ErrorCode.BAD_MESSAGE, 'invalid JSON from server'));
        continue;
      }
      // A handler may have closed the connection while earlier objects were handled.
      if (this._ws === null) return;
      this._onMessage(msg);
    }
  }

  /** @param {any} msg */
  _onMessage(msg) {
    if (msg === null || typeof msg !== 'object') {
      this._emit('error', new DuplexError(ErrorCode.BAD_MESSAGE, 'unexpected message from server'));
      return;
    }
    if (typeof msg.id === 'number' && msg.id > 0) {
      const cb = this._pending.get(msg.id);
      if (!cb) return; // timed out already
      this._pending.delete(msg.id);
      if (msg.error) {
        const e = msg.error;
        cb(new DuplexError(typeof e.code === 'number' ? e.code : 100, e.message || 'error'));
      } else {
        cb(null, msg.result ?? {});
      }
      return;
    }
    if (typeof msg.push === 'string') {
      (this._subs.get(msg.channel) ?? this._serverSubs.get(msg.channel))?._onPush(msg);
      return;
    }
    this._emit('error', new DuplexError(ErrorCode.BAD_MESSAGE, 'unexpected message from server'));
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _onSocketClose(code, reason) {
    if (!this._gotMessage && this._round.length > 0 && this._active) {
      // The upgrade (or the stream) failed before anything came: the next transport.
      this._fallBack(`${this._current}: closed (${code}) before any message`);
      return;
    }
    this._teardown(new DuplexError(ErrorCode.CONNECTION_LOST, `connection closed (${code})`));
    this._round = [];
    this._closed(code, reason);
  }

  /**
   * Closes the socket from this side and reacts at once, without waiting for the
   * close handshake of a connection that may be dead.
   * @param {number} code
   * @param {string} reason
   */
  _abort(code, reason) {
    const ws = this._ws;
    this._teardown(new DuplexError(ErrorCode.CONNECTION_LOST, reason));
    if (ws) closeQuietly(ws, code, reason);
    this._closed(code, reason);
  }

  /**
   * Drops the current socket and everything tied to it.
   * @param {DuplexError} err given to commands awaiting a reply
   */
  _teardown(err) {
    this._gen++;
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      this._ws = null;
    }
    clearTimeout(this._connectTimer);
    clearTimeout(this._idleTimer);
    clearTimeout(this._pongTimer);
    clearTimeout(this._refreshTimer);
    clearTimeout(this._fallbackTimer);
    this._connectTimer = this._idleTimer = this._pongTimer = this._refreshTimer = this._fallbackTimer = undefined;
    this._outbox = [];
    for (const sub of this._subs.values()) sub._onConnectionLost();
    for (const sub of this._serverSubs.values()) sub._onConnectionLost();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const cb of pending) cb(err);
  }

  /**
   * Moves to 'disconnected' after a socket (or an attempt) ended, and schedules
   * the next attempt when the code allows it.
   * @param {number} code
   * @param {string} reason
   */
  _closed(code, reason) {
    if (code === 4003 && this._getToken) this._token = ''; // expired: fetch a new one first
    if (this._connectedAt && Date.now() - this._connectedAt >= STABLE_MS) this._attempt = 0;
    this._connectedAt = 0;
    const reconnect = this._active && shouldReconnect(code);
    /** @type {{code: number, reason: string, reconnect: boolean, delay?: number}} */
    const info = { code, reason: reason || '', reconnect };
    if (reconnect) {
      const o = this._opts;
      const delay = backoffDelay(this._attempt++, o.minReconnectDelay, o.maxReconnectDelay, o.random);
      info.delay = delay;
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = undefined;
        this._open();
      }, delay);
    } else {
      this._active = false;
      this._failQueue(new DuplexError(ErrorCode.DISCONNECTED, `disconnected (${code})`));
    }
    this._setState('disconnected');
    this._emit('disconnected', info);
  }

  _armIdle() {
    clearTimeout(this._idleTimer);
    this._idleTimer = undefined;
    if (!this._opts.pingInterval || this._state !== 'connected' || this._pongTimer) return;
    this._idleTimer = setTimeout(() => this._ping(), this._opts.pingInterval);
  }

  _ping() {
    this._idleTimer = undefined;
    // Any incoming message proves the connection alive, so the reply needs no handler.
    this._command('ping', {}, () => {});
    this._pongTimer = setTimeout(() => this._abort(4000, 'ping timeout'), this._opts.pingTimeout);
  }

  /** @param {number | undefined} expires Unix seconds */
  _scheduleRefresh(expires) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = undefined;
    if (!expires || !this._getToken) return;
    const left = expires * 1000 - Date.now();
    const delay = Math.min(MAX_TIMER, Math.max(0, left * (0.8 + 0.1 * this._opts.random())));
    this._refreshTimer = setTimeout(() => this._refresh(), delay);
  }

  async _refresh() {
    this._refreshTimer = undefined;
    const gen = this._gen;
    let token;
    try {
      token = await /** @type {Function} */ (this._getToken)();
    } catch (err) {
      // The server closes with 4003 at expiry; the reconnect asks again.
      if (gen === this._gen) this._emit('error', tokenError(err));
      return;
    }
    if (gen !== this._gen || this._state !== 'connected') return;
    this._command('refresh', { token: token || '' }, (err, res) => {
      if (err) {
        if (!endedHere(err)) this._emit('error', err);
        return;
      }
      this._token = token || '';
      this._scheduleRefresh(res.expires);
    });
  }

  /**
   * Sends a command on the current connection.
   * @param {string} method
   * @param {Record<string, unknown>} fields
   * @param {(err: DuplexError | null, result?: any) => void} cb
   * @returns {number} the command's id
   */
  _command(method, fields, cb) {
    const id = this._nextId++;
    this._pending.set(id, cb);
    this._write(JSON.stringify({ id, method, ...fields }));
    return id;
  }

  /**
   * Queues a line; every line written in the same tick goes out as one message.
   * @param {string} line
   */
  _write(line) {
    this._outbox.push(line);
    if (this._outbox.length > 1) return;
    queueMicrotask(() => {
      const lines = this._outbox;
      this._outbox = [];
      const ws = this._ws;
      if (!lines.length || !ws || ws.readyState !== OPEN) return;
      try {
        ws.send(lines.join('\n'));
      } catch (err) {
        this._emit('error', asError(err));
      }
    });
  }

  /**
   * A command from the public API: sent now when connected, else when the
   * connection is up, rejecting when `timeout` passes first.
   * @param {string} method
   * @param {Record<string, unknown>} fields
   * @returns {Promise<any>}
   */
  _call(method, fields) {
    return new Promise((resolve, reject) => {
      /** @type {{method: string, fields: Record<string, unknown>, resolve: Function, reject: Function, id: number, timer: Timer}} */
      const call = { method, fields, resolve, reject, id: 0, timer: undefined };
      call.timer = setTimeout(() => {
        const i = this._queue.indexOf(call);
        if (i >= 0) this._queue.splice(i, 1);
        if (call.id) this._pending.delete(call.id);
        reject(new DuplexError(ErrorCode.TIMEOUT, `${method}: timeout`));
      }, this._opts.timeout);
      if (this._state === 'connected') this._dispatch(call);
      else this._queue.push(call);
    });
  }

  /** @param {any} call */
  _dispatch(call) {
    call.id = this._command(call.method, call.fields, (err, res) => {
      clearTimeout(call.timer);
      if (err) call.reject(err);
      else call.resolve(res);
    });
  }

  /** @param {DuplexError} err */
  _failQueue(err) {
    const queue = this._queue;
    this._queue = [];
    for (const call of queue) {
      clearTimeout(call.timer);
      call.reject(err);
    }
  }
}

/**
 * A client's subscription to one channel. It resubscribes after each reconnect,
 * recovering missed publications, and delivers each publication exactly once.
 *
 * Events: 'subscribed' ({channel, recovered, recoverable, epoch, offset, latest}),
 * 'publication' (Publication), 'gap' ({channel, from, to, epoch, reason}),
 * 'join' and 'leave' ({client, user, info}), 'presence_count' ({clients, users}: in a channel
 * too big for join and leave events), 'unsubscribed' ({code, reason}), 'error' (Error).
 */
export class Subscription extends Emitter {
  /**
   * Made by {@link Client#subscribe}; not meant to be constructed directly.
   * @param {Client} client
   * @param {string} channel
   * @param {SubscribeOptions} options
   */
  constructor(client, channel, options) {
    super();
    /** The channel's name. @type {string} */
    this.channel = channel;
    this._client = client;
    this._token = options.token || '';
    this._getToken = options.getToken ?? null;
    /** @type {'subscribing' | 'subscribed' | 'unsubscribed'} */
    this._state = 'subscribing';
    // The position of the last publication delivered, tracked when the
    // namespace keeps history; '' epoch: before the channel's stream began.
    this._tracked = options.since != null;
    this._epoch = options.since?.epoch ?? '';
    this._offset = options.since?.offset ?? 0;
    this._latest = false;
    /** Pushes that arrive before the subscribe reply. @type {any[] | null} */
    this._buffer = null;
    this._gen = 0; // bumped per subscribe attempt
    this._sentOn = -1; // the client's _gen when the subscribe was sent
    this._attempt = 0;
    /** @type {Timer} */
    this._retryTimer = undefined;
    this._tokenRetried = false;
    /** Made by the server at connect rather than by {@link Client#subscribe}. */
    this._server = false;
  }

  /**
   * 'subscribing' (waiting for the connection or the reply), 'subscribed' or 'unsubscribed'.
   * @returns {'subscribing' | 'subscribed' | 'unsubscribed'}
   */
  get state() {
    return this._state;
  }

  /**
   * The position of the last publication delivered (or of the subscribe result
   * before any), from which a resubscribe recovers; null when the namespace keeps
   * no history.
   * @returns {StreamPosition | null}
   */
  get position() {
    return this._tracked ? { offset: this._offset, epoch: this._epoch } : null;
  }

  /**
   * Publishes to this channel.
   * @param {unknown} data any JSON value
   * @returns {Promise<{offset?: number, epoch?: string}>}
   */
  publish(data) {
    return this._client.publish(this.channel, data);
  }

  /**
   * The clients present in this channel, by client id.
   * @returns {Promise<Record<string, {client: string, user: string, info?: unknown}>>}
   */
  presence() {
    return this._client.presence(this.channel);
  }

  /**
   * How many clients and distinct users are present in this channel.
   * @returns {Promise<{clients: number, users: number}>}
   */
  presenceStats() {
    return this._client.presenceStats(this.channel);
  }

  /**
   * Reads this channel's history and current position.
   * @param {HistoryOptions} [options]
   * @returns {Promise<{publications: Publication[], offset: number, epoch: string, truncated: boolean}>}
   */
  history(options) {
    return this._client.history(this.channel, options);
  }

  /**
   * Ends the subscription: no more events, no resubscribe. Emits 'unsubscribed'
   * with code 0. Subscribing again later gives a new Subscription.
   */
  unsubscribe() {
    if (this._state === 'unsubscribed') return;
    const client = this._client;
    const sent = client._state === 'connected' && this._sentOn === client._gen;
    this._end(0, 'unsubscribe called');
    // Error 110 (the server ended it first) needs no report.
    if (sent) client._command('unsubscribe', { channel: this.channel }, () => {});
  }

  // ---- internals, called by Client ----

  /** Sends subscribe on the current connection, fetching a channel token first when needed. */
  _subscribe() {
    if (this._state === 'unsubscribed') return;
    const client = this._client;
    const cgen = client._gen;
    const gen = ++this._gen;
    this._state = 'subscribing';
    this._buffer = [];
    if (this._token || !this._getToken) {
      this._send(gen);
      return;
    }
    Promise.resolve()
      .then(() => /** @type {Function} */ (this._getToken)(this.channel))
      .then(
        (token) => {
          if (gen !== this._gen || cgen !== client._gen) return;
          this._token = token || '';
          this._send(gen);
        },
        (err) => {
          if (gen !== this._gen || cgen !== client._gen) return;
          this._retry(tokenError(err));
        },
      );
  }

  /** @param {number} gen */
  _send(gen) {
    const client = this._client;
    /** @type {Record<string, unknown>} */
    const fields = { channel: this.channel };
    if (this._token) fields.token = this._token;
    const since = this.position;
    if (since) fields.since = since;
    this._sentOn = client._gen;
    client._command('subscribe', fields, (err, res) => {
      if (gen !== this._gen || this._state !== 'subscribing') return;
      if (err) this._onSubscribeError(err);
      else this._onSubscribed(res, since);
    });
  }

  /** @param {DuplexError} err */
  _onSubscribeError(err) {
    if (endedHere(err)) return; // sent again on the next connection
    if (err.code === 109 && this._getToken && !this._tokenRetried) {
      this._tokenRetried = true;
      this._token = '';
      this._retry(err);
      return;
    }
    if (RETRY_SUBSCRIBE.has(err.code)) {
      this._retry(err);
      return;
    }
    this._emit('error', err);
    this._end(err.code, err.message);
  }

  /**
   * Reports err and tries again after a backoff delay.
   * @param {Error} err
   */
  _retry(err) {
    this._buffer = null;
    this._emit('error', err);
    if (this._state === 'unsubscribed') return;
    const o = this._client._opts;
    const delay = backoffDelay(this._attempt++, o.minReconnectDelay, o.maxReconnectDelay, o.random);
    const cgen = this._client._gen;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = undefined;
      if (cgen === this._client._gen && this._client._state === 'connected') this._subscribe();
    }, delay);
  }

  /**
   * @param {any} res the subscribe result
   * @param {StreamPosition | null} since what was sent
   */
  _onSubscribed(res, since) {
    const buffered = this._buffer ?? [];
    this._buffer = null;
    this._state = 'subscribed';
    this._attempt = 0;
    this._tokenRetried = false;
    this._latest = res.latest === true;
    const epoch = res.epoch || '';
    const offset = typeof res.offset === 'number' ? res.offset : 0;
    // A position from before the stream began ('' epoch) recovers into
    // whatever epoch the stream has now.
    const recovered = since !== null && res.recovered === true && (epoch === since.epoch || since.epoch === '');
    this._tracked = res.recoverable === true;
    if (!recovered) {
      // Nothing recovered: continue from the stream's position as it is now.
      this._epoch = epoch;
      this._offset = offset;
    }
    this._emit('subscribed', {
      channel: this.channel,
      recovered,
      recoverable: res.recoverable === true,
      epoch,
      offset,
      latest: this._latest,
    });
    if (this._state !== 'subscribed') return; // a listener unsubscribed
    if (recovered) {
      for (const p of res.publications ?? []) {
        this._onPub(p);
        if (this._state !== 'subscribed') return;
      }
      if (offset > this._offset) this._offset = offset;
    } else if (since) {
      // In a new epoch (the stream started again, as after a restart of an
      // in-memory gateway) the missed range is the new stream's up to now,
      // possibly empty; what followed since in the old stream is lost too.
      const sameEpoch = epoch === since.epoch;
      this._emit('gap', {
        channel: this.channel,
        from: sameEpoch ? since.offset + 1 : 1,
        to: offset,
        epoch,
        reason: 'unrecoverable',
        since: { offset: since.offset, epoch: since.epoch },
      });
    }
    for (const m of buffered) {
      if (this._state !== 'subscribed') return;
      this._onPush(m);
    }
  }

  /** @param {any} m a push for this channel */
  _onPush(m) {
    if (this._state === 'unsubscribed') return;
    switch (m.push) {
      case 'pub':
      case 'gap':
        if (this._state !== 'subscribed') {
          // Held until the subscribe reply, then delivered in order; without a
          // subscribe in flight, recovery on the next subscribe covers it.
          this._buffer?.push(m);
          return;
        }
        if (m.push === 'pub') this._onPub(m);
        else this._onGap(m);
        return;
      case 'join':
      case 'leave':
        this._emit(m.push, m.info ?? {});
        return;
      case 'presence_count':
        this._emit('presence_count', { clients: m.clients, users: m.users });
        return;
      case 'unsubscribe':
        this._end(m.code ?? 0, m.reason ?? '');
        return;
    }
  }

  /**
   * Delivers a publication unless it is a duplicate, after a 'gap' when offsets skip.
   * @param {any} p
   */
  _onPub(p) {
    if (typeof p.offset === 'number') {
      const epoch = p.epoch ?? this._epoch;
      if (this._epoch && epoch === this._epoch) {
        if (p.offset <= this._offset) return; // seen already
        if (p.offset > this._offset + 1 && !this._latest) {
          this._emit('gap', {
            channel: this.channel,
            from: this._offset + 1,
            to: p.offset - 1,
            epoch,
            reason: 'dropped',
          });
          if (this._state !== 'subscribed') return; // a listener unsubscribed
        }
      }
      // A new epoch restarts tracking.
      this._epoch = epoch;
      this._offset = p.offset;
    }
    this._emit('publication', toPublication(this.channel, p));
  }

  /** @param {any} m a gap push */
  _onGap(m) {
    if (m.reset === true) {
      // The stream started again under a new epoch: what followed our
      // position in the old one may be lost, and 1..to of the new one are.
      const since = this._tracked ? { offset: this._offset, epoch: this._epoch } : null;
      this._epoch = m.epoch;
      this._offset = m.to;
      this._emit('gap', { channel: this.channel, from: m.from, to: m.to, epoch: m.epoch, reason: 'reset', since });
      return;
    }
    const epoch = m.epoch ?? this._epoch;
    if (this._epoch && epoch === this._epoch) {
      if (m.to <= this._offset) return; // covered already
      this._offset = m.to; // so the next publication is not reported again
    }
    this._emit('gap', { channel: this.channel, from: m.from, to: m.to, epoch, reason: 'dropped' });
  }

  _onConnectionLost() {
    this._gen++;
    this._buffer = null; // not delivered, so recovered on resubscribe
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    if (this._state !== 'unsubscribed') this._state = 'subscribing';
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _end(code, reason) {
    this._gen++;
    this._buffer = null;
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    this._state = 'unsubscribed';
    const own = this._server ? this._client._serverSubs : this._client._subs;
    if (own.get(this.channel) === this) own.delete(this.channel);
    this._emit('unsubscribed', { code, reason });
  }
}

/**
 * @param {string} channel
 * @param {any} p a publication from the wire
 * @returns {Publication}
 */
function toPublication(channel, p) {
  return { channel, data: p.data, offset: p.offset, epoch: p.epoch, info: p.info };
}

/**
 * Whether a command failed because its connection ended, which the client
 * reports once as 'disconnected' rather than per command.
 * @param {DuplexError} err
 */
function endedHere(err) {
  return err.code === ErrorCode.CONNECTION_LOST || err.code === ErrorCode.DISCONNECTED;
}

/** @param {unknown} err */
function tokenError(err) {
  const e = new DuplexError(ErrorCode.TOKEN, `getToken failed: ${asError(err).message}`);
  e.cause = err;
  return e;
}

/**
 * @param {WebSocket} ws
 * @param {number} code
 * @param {string} reason
 */
/** The transports a client may use. */
const TRANSPORTS = ['websocket', 'http_stream', 'sse'];

/** How many times a fallback POST answered 429 is tried again before the session is given up. */
const MAX_SEND_RETRIES = 5;

/**
 * A fallback transport with the face of a WebSocket (readyState, send, close, and the
 * onopen, onmessage and onclose handlers), for the client above: what the server sends comes
 * over a response that stays open, newline-delimited JSON from /fallback/stream or
 * Server-Sent Events from /fallback/sse, whose first line names the session; what the client
 * sends goes as POSTs to /fallback/send, one at a time and numbered, so that they run in order
 * on whichever node holds the session. The server's close is the stream's last line,
 * {"close":{"code","reason"}}; a stream that ends without it closes with 1006.
 */
class FallbackSocket {
  /**
   * @param {string} base http(s) URL the fallback endpoints are under
   * @param {boolean} sse Server-Sent Events rather than HTTP streaming
   */
  constructor(base, sse) {
    this.readyState = 0;
    /** @type {((ev: any) => void) | null} */ this.onopen = null;
    /** @type {((ev: any) => void) | null} */ this.onmessage = null;
    /** @type {((ev: any) => void) | null} */ this.onclose = null;
    /** @type {((ev: any) => void) | null} */ this.onerror = null;
    this._base = base;
    this._session = '';
    this._seq = 0;
    /** @type {Promise<void>} */ this._sending = Promise.resolve();
    /** @type {AbortController} */ this._abortCtl = new AbortController();
    /** @type {EventSource | null} */ this._es = null;
    if (sse) this._openSSE();
    else this._openStream();
  }

  _openStream() {
    fetch(`${this._base}/fallback/stream`, { signal: this._abortCtl.signal, cache: 'no-store', credentials: 'include' }).then(async (res) => {
      if (!res.ok || !res.body) {
        this._end(1006, `HTTP ${res.status}`);
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.readyState === 3) break;
        buf += value;
        const end = buf.lastIndexOf('\n');
        if (end < 0) continue;
        const lines = buf.slice(0, end).split('\n');
        buf = buf.slice(end + 1);
        this._lines(lines);
      }
      this._end(1006, 'the stream ended');
    }).catch(() => this._end(1006, 'the stream failed'));
  }

  _openSSE() {
    const es = new EventSource(`${this._base}/fallback/sse`, { withCredentials: true });
    this._es = es;
    es.onmessage = (ev) => this._lines(String(ev.data).split('\n'));
    // EventSource would reconnect by itself, as a new session: the client decides instead.
    es.onerror = () => this._end(1006, 'the event stream failed');
  }

  /** @param {string[]} lines what came, without empty lines' meaning */
  _lines(lines) {
    /** @type {string[]} */
    const out = [];
    for (const line of lines) {
      if (!line || this.readyState === 3) continue;
      if (!this._session) {
        let first;
        try {
          first = JSON.parse(line);
        } catch {
          // Not the fallback protocol: handled below.
        }
        if (typeof first?.session !== 'string') {
          this._end(1006, 'the stream is not a duplex session');
          return;
        }
        this._session = first.session;
        this.readyState = 1;
        this.onopen?.({ type: 'open' });
        continue;
      }
      if (line.startsWith('{"close":')) {
        if (out.length) this.onmessage?.({ data: out.splice(0).join('\n') });
        let close;
        try {
          close = JSON.parse(line).close;
        } catch {
          // Malformed: ends like a broken stream.
        }
        this._end(close?.code ?? 1006, close?.reason ?? '');
        return;
      }
      out.push(line);
    }
    if (out.length) this.onmessage?.({ data: out.join('\n') });
  }

  /** @param {string} data lines of commands */
  send(data) {
    if (this.readyState !== 1) return;
    const url = `${this._base}/fallback/send?session=${encodeURIComponent(this._session)}&seq=${this._seq++}`;
    // A 429 (the node's limit of POSTs per address, which many clients
    // behind one NAT share) is tried again, with the same number, after
    // the Retry-After the node gave; later POSTs wait behind it, in order.
    const post = (tries) => fetch(url, { method: 'POST', body: data, headers: { 'content-type': 'text/plain' }, credentials: 'include' })
      .then((res) => {
        if (res.status === 429 && tries < MAX_SEND_RETRIES && this.readyState === 1) {
          const wait = Math.min(Number(res.headers.get('retry-after')) || 1, 30) * 1000;
          return new Promise((resolve) => setTimeout(resolve, wait)).then(() => (this.readyState === 1 ? post(tries + 1) : undefined));
        }
        if (res.status >= 400) this._end(1006, `sending failed: HTTP ${res.status}`);
        return undefined;
      }, () => this._end(1006, 'sending failed'));
    this._sending = this._sending.then(() => post(0));
  }

  /**
   * @param {number} [_code]
   * @param {string} [_reason]
   */
  close(_code, _reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._abortCtl.abort();
    this._es?.close();
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _end(code, reason) {
    if (this.readyState === 3) return;
    this.close();
    this.onclose?.({ type: 'close', code, reason, wasClean: code !== 1006 });
  }
}

function closeQuietly(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    // Already closed, or an implementation that refuses the code: nothing to do.
  }
}
