// Type declarations for duplex.js, the browser client of the Duplex gateway
// (protocol duplex.v1.json). Written by hand; keep in step with duplex.js.

/** The WebSocket subprotocol the client speaks: 'duplex.v1.json'. */
export declare const PROTOCOL: 'duplex.v1.json';

/** Codes of errors raised by the client itself; server errors carry 100–112. */
export declare const ErrorCode: Readonly<{
  /** No connection, or no reply, within the `timeout` option. */
  TIMEOUT: 1;
  /** The connection closed before the reply came; the command may or may not have run. */
  CONNECTION_LOST: 2;
  /** `disconnect()` or `unsubscribe()` ended the call, or the client stopped for good. */
  DISCONNECTED: 3;
  /** The server sent something that is not the protocol's JSON. */
  BAD_MESSAGE: 4;
  /** A `getToken` callback failed. */
  TOKEN: 5;
}>;

/** An error with a protocol error code (100–112) or one of {@link ErrorCode}. */
export declare class DuplexError extends Error {
  constructor(code: number, message: string);
  readonly name: 'DuplexError';
  code: number;
}

/** Whether a client reconnects after a close with this code (PROTOCOL.md, "Close codes"). */
export declare function shouldReconnect(code: number): boolean;

/**
 * Delay before reconnect attempt `attempt` (0 first): exponential backoff with
 * full jitter, `floor(random() * min(max, min * 2^attempt))` milliseconds.
 */
/** How a client reaches the gateway: WebSocket, or a fallback for networks that block it. */
export type Transport = 'websocket' | 'http_stream' | 'sse';

export declare function backoffDelay(attempt: number, min: number, max: number, random?: () => number): number;

export type ClientState = 'disconnected' | 'connecting' | 'connected';
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** The constructor of a WebSocket implementation (the browser's by default). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocket;
}

export interface ClientOptions {
  /** Connection JWT; empty or absent means anonymous (or whatever `getToken` returns). */
  token?: string;
  /**
   * Fetches a connection token: when there is none, after a close with 4003
   * (token expired), and at 80–90% of the time left before `expires` to send `refresh`.
   */
  getToken?: () => string | Promise<string>;
  /** Client name sent in `connect`. Default 'duplex.js'. */
  name?: string;
  /** Smallest backoff cap, ms. Default 500. */
  minReconnectDelay?: number;
  /** Largest backoff cap, ms. Default 20000. */
  maxReconnectDelay?: number;
  /** Ms without incoming messages before sending `ping`. Default 25000; 0 disables. */
  pingInterval?: number;
  /** Ms to wait for anything after a `ping` before closing with 4000 and reconnecting. Default 10000. */
  pingTimeout?: number;
  /** Ms for a command's reply, and for a call made while disconnected to get a connection. Default 10000. */
  timeout?: number;
  /** Used instead of globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Uniform in [0, 1); jitters the backoff and the refresh time. Default Math.random. */
  random?: () => number;
  /**
   * Tried in this order until one works; the one that worked is tried first on the next
   * reconnect. Default ['websocket', 'http_stream', 'sse'] (['websocket'] with `WebSocket`).
   */
  transports?: Transport[];
  /** ms a transport may take to bring its first message before the next is tried, default 5000. */
  fallbackTimeout?: number;
  /** http(s) base of the fallback endpoints, default the gateway's URL with http(s) and without /ws. */
  fallbackURL?: string;
}

export interface SubscribeOptions {
  /** Channel token, for namespaces that require one. */
  token?: string;
  /** Fetches a channel token when there is none, and again after error 109 (invalid token). */
  getToken?: (channel: string) => string | Promise<string>;
  /** Recover the publications after this position on the first subscribe. */
  since?: StreamPosition;
}

export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface ClientInfo {
  client: string;
  user: string;
  info?: unknown;
}

export interface Publication<T = unknown> {
  channel: string;
  data: T;
  /** Absent when the namespace keeps no history. */
  offset?: number;
  epoch?: string;
  /** The publisher; absent for publications from the backend API. */
  info?: ClientInfo;
}

export interface HistoryOptions {
  /** At most this many publications; 0 means only the position. */
  limit?: number;
  /** Only publications after this position. */
  since?: StreamPosition;
  /** Newest first. */
  reverse?: boolean;
}

export interface HistoryResult<T = unknown> {
  publications: Publication<T>[];
  offset: number;
  epoch: string;
  /** The server cut the reply to its reply budget: the next page starts after the last publication. */
  truncated: boolean;
}

export interface PublishResult {
  offset?: number;
  epoch?: string;
}

export interface ConnectedContext {
  client: string;
  user: string;
  /** Unix seconds at which the token expires; 0 when it does not. */
  expires: number;
  version: string;
  /** The transport the connection uses. */
  transport: Transport;
}

export interface DisconnectedContext {
  code: number;
  reason: string;
  /** Whether the client will connect again by itself. */
  reconnect: boolean;
  /** Ms until that attempt, when `reconnect`. */
  delay?: number;
}

export interface SubscribedContext {
  channel: string;
  /** True when every publication missed since the last position was delivered. */
  recovered: boolean;
  recoverable: boolean;
  epoch: string;
  offset: number;
  /** Offsets may skip: the namespace keeps only the latest publication for slow clients. */
  latest: boolean;
}

export interface GapContext {
  channel: string;
  /** First offset missing, inclusive. */
  from: number;
  /** Last offset missing, inclusive; below from when none of this epoch's are. */
  to: number;
  /** The epoch from and to are in: the stream's current one. */
  epoch: string;
  /**
   * 'dropped': the server skipped them for a slow client, or the broker lost
   * them and history no longer held them; 'unrecoverable': recovery failed;
   * 'reset': the stream started again under a new epoch while subscribed (a
   * broker restarted without its data).
   */
  reason: 'dropped' | 'unrecoverable' | 'reset';
  /**
   * With 'unrecoverable' and 'reset': the position recovery started from. When its epoch
   * differs from epoch the stream started again (an in-memory gateway
   * restarted): from is 1, and whatever followed this position in the old
   * stream is lost as well.
   */
  since?: StreamPosition;
}

export interface UnsubscribedContext {
  /** The server's code, a subscribe error code, or 0 after `unsubscribe()`. */
  code: number;
  reason: string;
}

export interface ClientEvents {
  state: ClientState;
  connecting: void;
  connected: ConnectedContext;
  disconnected: DisconnectedContext;
  error: Error;
  /** A subscription the server made at connect (the connect proxy's channels), announced once, before what it recovered. */
  server_subscription: Subscription;
}

export interface SubscriptionEvents {
  subscribed: SubscribedContext;
  publication: Publication;
  gap: GapContext;
  join: ClientInfo;
  leave: ClientInfo;
  /** In a channel above the namespace's presence_count_above members, in place of join and leave. */
  presence_count: { clients: number; users: number };
  unsubscribed: UnsubscribedContext;
  error: Error;
}

/**
 * A connection to the Duplex gateway that reconnects by itself and keeps its
 * subscriptions across reconnects.
 */
export declare class Client {
  constructor(url: string, options?: ClientOptions);
  /** The gateway's URL. */
  readonly url: string;
  readonly state: ClientState;
  /** The transport of the connection; '' before the first. */
  readonly transport: Transport | '';
  on<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): this;
  /** Starts connecting, and reconnecting when the close code allows, until disconnect(). */
  connect(): void;
  /** Closes with 1000 and stops reconnecting; rejects calls in flight or waiting. */
  disconnect(): void;
  /** Subscribes now or once connected; the same channel gives the same object. */
  subscribe(channel: string, options?: SubscribeOptions): Subscription;
  /** The active subscription to a channel, if any. */
  getSubscription(channel: string): Subscription | undefined;
  /** The subscription the server made to a channel at connect, if any; recovered across reconnects like a client's. */
  getServerSubscription(channel: string): Subscription | undefined;
  publish(channel: string, data: unknown): Promise<PublishResult>;
  /** Calls a method of the app's backend (the gateway's rpc proxy); resolves with its data. */
  rpc<T = unknown>(method: string, data?: unknown): Promise<T>;
  presence(channel: string): Promise<Record<string, ClientInfo>>;
  presenceStats(channel: string): Promise<{ clients: number; users: number }>;
  history<T = unknown>(channel: string, options?: HistoryOptions): Promise<HistoryResult<T>>;
}

/**
 * A client's subscription to one channel, made by {@link Client.subscribe}. It
 * resubscribes after each reconnect, recovering missed publications, and
 * delivers each publication exactly once.
 */
export declare class Subscription {
  private constructor();
  readonly channel: string;
  readonly state: SubscriptionState;
  /** Position of the last publication delivered, or null when the namespace keeps no history. */
  readonly position: StreamPosition | null;
  on<K extends keyof SubscriptionEvents>(event: K, fn: (arg: SubscriptionEvents[K]) => void): this;
  off<K extends keyof SubscriptionEvents>(event: K, fn: (arg: SubscriptionEvents[K]) => void): this;
  publish(data: unknown): Promise<PublishResult>;
  presence(): Promise<Record<string, ClientInfo>>;
  presenceStats(): Promise<{ clients: number; users: number }>;
  history<T = unknown>(options?: HistoryOptions): Promise<HistoryResult<T>>;
  /** Ends the subscription; emits 'unsubscribed' with code 0. */
  unsubscribe(): void;
}
