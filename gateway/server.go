package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/proxy"
	"github.com/duplexws/duplex/internal/jwt"
	"github.com/duplexws/duplex/internal/ratelimit"
	"github.com/duplexws/duplex/websocket"
)

// Server is a gateway node: it accepts client connections at /ws, serves
// the backend API at /api/, and fans publications out to subscribers.
// Create it with New, serve Handler with an http.Server, and stop it with
// Shutdown, which closes the WebSocket connections the http.Server's own
// Shutdown does not (they are hijacked).
type Server struct {
	cfg        Config
	node       string // this node's id, random
	log        *slog.Logger
	broker     broker.Broker
	namespaces map[string]*Namespace
	verifier   *jwt.Verifier // nil when no algorithm is configured
	proxies    proxies       // the app's backend, by endpoint name
	// proxyHeaders are the request headers a session keeps for the
	// backend; nil without proxy endpoints.
	proxyHeaders []string
	metrics      *serverMetrics
	hub          *hub
	accept       websocket.AcceptOptions

	pusherApps   map[string]*pusherApp // by key
	pusherByID   map[string]*pusherApp
	pusherAccept websocket.AcceptOptions // no subprotocol
	// pusherAcceptAnyOrigin is for apps with origins of their own.
	pusherAcceptAnyOrigin websocket.AcceptOptions
	// pusherOccupancy is this node's entries in the apps' sets of
	// occupied channels.
	pusherOccupancy pusherOccupancy

	handshakes    *ratelimit.Keyed // nil without a handshake rate
	fallbackSends *ratelimit.Keyed // nil without a fallback POST rate
	perIP         *ratelimit.PerKey
	perUser       *ratelimit.PerKey
	conns         atomic.Int64
	pending       pendingConns // HTTP connections not upgraded (HTTPServer)

	sessions  sessionSet
	fallbacks sync.Map // fallback session id → *fallbackTransport
	usersMu   sync.Mutex
	users     map[string]map[*session]struct{}

	draining   atomic.Bool
	brokerDown atomic.Bool // the broker reported its link lost

	presenceDirty dirtySet      // channels with join/leave events to flush
	stop          chan struct{} // closed by Shutdown: stops the janitor
	// stopCtx bounds what goroutines still do once stop is closed (the
	// last webhooks); set by Shutdown before it closes stop.
	stopCtx      context.Context
	catchUpReads chan struct{} // a slot for each catch-up read in flight (maxCatchUpReads)
	stopOnce     sync.Once
	wg           sync.WaitGroup // every goroutine the server starts
	connWG       sync.WaitGroup // the sessions, from upgrade to finish
	writerStarts atomic.Int64   // session writer goroutines started, for tests
}

// New returns a Server for cfg and starts its broker.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          c,
		node:         newID(),
		log:          c.Logger,
		broker:       c.Broker,
		namespaces:   make(map[string]*Namespace, len(c.Namespaces)),
		metrics:      newServerMetrics(),
		hub:          newHub(),
		perIP:        ratelimit.NewPerKey(c.Limits.MaxConnectionsPerIP),
		perUser:      ratelimit.NewPerKey(c.Limits.MaxConnectionsPerUser),
		users:        make(map[string]map[*session]struct{}),
		stop:         make(chan struct{}),
		catchUpReads: make(chan struct{}, maxCatchUpReads),
	}
	s.sessions.init()
	s.pending.init(s)
	for i := range c.Namespaces {
		s.namespaces[c.Namespaces[i].Name] = &c.Namespaces[i]
	}
	// The proxy's series exist on every node, at 0 without a proxy, as
	// every other series does.
	proxyMetrics, err := proxy.NewMetrics(s.metrics.registry)
	if err != nil {
		return nil, fmt.Errorf("gateway: proxy metrics: %w", err)
	}
	if s.proxies, err = newProxies(&c, proxyMetrics); err != nil {
		return nil, err
	}
	s.proxyHeaders = c.Proxy.headers()
	if s.verifier, err = newVerifier(c.Auth, c.Logger); err != nil {
		s.proxies.close()
		return nil, fmt.Errorf("gateway: auth: %w", err)
	}
	if c.Limits.HandshakeRate > 0 {
		s.handshakes = ratelimit.NewKeyed(c.Limits.HandshakeRate, c.Limits.HandshakeBurst, 1<<20)
	}
	if c.Limits.FallbackSendRate > 0 {
		s.fallbackSends = ratelimit.NewKeyed(c.Limits.FallbackSendRate, c.Limits.FallbackSendBurst, 1<<20)
	}
	pingInterval := c.PingInterval
	if pingInterval < 0 {
		pingInterval = 0
	}
	s.accept = websocket.AcceptOptions{
		Subprotocols:   []string{Subprotocol},
		OriginPatterns: c.OriginPatterns,
		PingInterval:   pingInterval,
		PongTimeout:    c.PongTimeout,
		Compression:    c.Compression,
		ReadRate:       readRate(&c.Limits),
	}
	s.pusherAccept = s.accept
	s.pusherAccept.Subprotocols = nil
	s.pusherAcceptAnyOrigin = s.pusherAccept
	s.pusherAcceptAnyOrigin.InsecureSkipVerifyOrigin = true // the app's origins are checked (PusherApp.Origins)
	s.pusherApps = make(map[string]*pusherApp, len(c.Pusher.Apps))
	s.pusherByID = make(map[string]*pusherApp, len(c.Pusher.Apps))
	for _, a := range c.Pusher.Apps {
		app := &pusherApp{PusherApp: a}
		app.protocol = &pusherProtocol{app: app}
		s.pusherApps[a.Key], s.pusherByID[a.ID] = app, app
	}
	if s.broker == nil {
		s.broker = broker.NewMemory(nil)
	}
	startCtx, cancel := context.WithTimeout(context.Background(), c.BrokerStartTimeout)
	err = s.broker.Start(startCtx, brokerHandler{s})
	cancel()
	if err != nil {
		s.verifier.Close() // stops a JWKS refresh
		s.proxies.close()
		return nil, fmt.Errorf("gateway: starting the broker: %w", err)
	}
	s.metrics.gaugeFunc("duplex_draining", "1 while the server drains.", func() float64 {
		if s.draining.Load() {
			return 1
		}
		return 0
	})
	s.metrics.gaugeFunc("duplex_broker_up", "1 while the broker is reachable.", func() float64 {
		if s.brokerReady() {
			return 1
		}
		return 0
	})
	s.wg.Add(2)
	go s.janitor()
	go s.presenceLoop()
	s.startPusherWebhooks()
	return s, nil
}

// Handler returns the gateway's HTTP handler: the WebSocket endpoint /ws,
// the backend API under /api/, /metrics, /healthz and /readyz; everything
// else goes to Config.Fallback.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWebSocket)
	// RFC 8441: a WebSocket over HTTP/2 is an extended CONNECT (h2.go).
	mux.HandleFunc("CONNECT /ws", s.serveWebSocket)
	mux.HandleFunc("GET /fallback/stream", func(w http.ResponseWriter, r *http.Request) { s.serveFallbackStream(w, r, false) })
	mux.HandleFunc("GET /fallback/sse", func(w http.ResponseWriter, r *http.Request) { s.serveFallbackStream(w, r, true) })
	mux.HandleFunc("POST /fallback/send", s.serveFallbackSend)
	mux.HandleFunc("/api/", s.serveAPI)
	if len(s.pusherApps) > 0 {
		mux.HandleFunc("GET /app/{key}", s.servePusher)
		mux.HandleFunc("CONNECT /app/{key}", s.servePusher) // over HTTP/2, as /ws
		mux.HandleFunc("POST /apps/{id}/events", s.servePusherEvents)
		mux.HandleFunc("POST /apps/{id}/batch_events", s.servePusherBatch)
		mux.HandleFunc("POST /apps/{id}/users/{user}/terminate_connections", s.servePusherTerminate)
		mux.HandleFunc("GET /apps/{id}/channels", s.servePusherChannels)
		mux.HandleFunc("GET /apps/{id}/channels/{name}", s.servePusherChannel)
		mux.HandleFunc("GET /apps/{id}/channels/{name}/users", s.servePusherUsers)
	}
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
			return
		}
		if !s.brokerReady() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("broker unreachable\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	if s.cfg.Fallback != nil {
		mux.Handle("/", s.cfg.Fallback)
	}
	return mux
}

// Publish publishes data (JSON) to a channel as the backend API does, from
// the program embedding the gateway.
func (s *Server) Publish(ctx context.Context, channel string, data json.RawMessage) (broker.Position, error) {
	ns, err := s.namespace(channel)
	if err != nil {
		return broker.Position{}, err
	}
	compact, err := compactJSON(data)
	if err != nil {
		return broker.Position{}, err
	}
	return s.publish(ctx, ns, channel, compact, nil)
}

func (s *Server) publish(ctx context.Context, ns *Namespace, channel string, data json.RawMessage, info *broker.ClientInfo) (broker.Position, error) {
	if !s.brokerReady() {
		return broker.Position{}, ErrUnavailable
	}
	pos, err := s.broker.Publish(ctx, channel, data, info, broker.PublishOptions{
		HistorySize: ns.HistorySize,
		HistoryTTL:  ns.HistoryTTL,
		MaxStreams:  max(ns.MaxStreams, 0),
	})
	if errors.Is(err, broker.ErrStreamLimit) {
		s.metrics.limitHits.With(limitStreams).Inc()
		return pos, &Error{ErrLimitExceeded.Code, "limit exceeded: too many channels with history in the namespace"}
	}
	if err != nil {
		// The broker failed it (a connection broken under the call, a
		// Cluster without a master for the slot, a timeout) before the
		// node heard that its link is down: the same retryable answer
		// as after, which a subscribe gets too. It may have been
		// published.
		s.log.Warn("publish failed", "channel", channel, "err", err)
		return pos, ErrUnavailable
	}
	s.metrics.publications.Inc()
	return pos, nil
}

// namespace returns the policy of channel, or ErrUnknownChannel.
func (s *Server) namespace(channel string) (*Namespace, error) {
	if !validChannel(channel) {
		return nil, ErrUnknownChannel
	}
	name, _, found := strings.Cut(channel, ":")
	if !found {
		name = ""
	}
	ns := s.namespaces[name]
	if ns == nil {
		return nil, ErrUnknownChannel
	}
	return ns, nil
}

// compactJSON validates data as JSON and removes its insignificant
// whitespace, so that it fits on one line of the protocol.
func compactJSON(data []byte) (json.RawMessage, error) {
	if len(data) == 0 {
		return nil, badRequest("data is required")
	}
	// Data reaches subscribers in text frames, which must be UTF-8 (RFC
	// 6455 section 8.1): a client fails the connection on anything else,
	// and would again on each recovery. json.Compact checks syntax only.
	if !utf8.Valid(data) {
		return nil, badRequest("data is not valid UTF-8")
	}
	var b bytes.Buffer
	b.Grow(len(data))
	if err := json.Compact(&b, data); err != nil {
		return nil, badRequest("data is not valid JSON")
	}
	return json.RawMessage(b.Bytes()), nil
}

// serveWebSocket accepts a client connection of duplex.v1.json and serves
// it until it ends.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	header := authHeader(r.Header, s.cfg.Hooks.Authenticate != nil)
	forBackend := keepHeaders(r.Header, s.proxyHeaders)
	s.acceptWebSocket(w, r, &s.accept, func(tr *wsTransport, ip string) {
		s.startDuplex(tr, ip, header, forBackend)
	})
}

// acceptWebSocket applies the limits of a handshake, accepts the WebSocket
// connection with opts, and starts its session with start, which owns a
// count of connWG from then on.
func (s *Server) acceptWebSocket(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions, start func(tr *wsTransport, ip string)) {
	begin := time.Now()
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	ip := s.clientIP(r)
	if s.handshakes != nil && !s.handshakes.Allow(ip, begin) {
		s.metrics.limitHits.With(limitHandshakeRate).Inc()
		// The time one handshake's token takes to come back.
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(1/s.cfg.Limits.HandshakeRate))))
		http.Error(w, "too many handshakes", http.StatusTooManyRequests)
		return
	}
	// Registered before Accept so that Shutdown waits for a handshake in
	// progress; released when the session ends.
	s.connWG.Add(1)
	var stream *h2Stream // over HTTP/2 (h2.go); nil over HTTP/1.1
	if r.ProtoMajor == 2 {
		stream, w, r = newH2Stream(s, w, r)
	}
	hw := &hijackWatch{ResponseWriter: w}
	conn, err := websocket.Accept(hw, r, opts)
	if err != nil {
		s.connWG.Done()
		return // Accept answered with the HTTP error.
	}
	s.metrics.handshake.Observe(time.Since(begin).Seconds())
	conn.SetReadLimit(s.cfg.Limits.MaxMessageSize)
	tr := &wsTransport{conn: conn, netConn: hw.conn} // netConn is nil over HTTP/2: nothing was hijacked
	if stream != nil {
		stream.serve(ip, func() { start(tr, ip) }) // the stream is the request: the handler stays (h2.go)
		return
	}
	// The session starts in a goroutine of its own, and this handler
	// returns: net/http keeps its per-connection state (buffers, request,
	// response, a stack grown by the handshake) until the handler returns,
	// which would more than double what an idle connection costs. The
	// session calls connWG.Done when it ends.
	go start(tr, ip)
}

// startDuplex starts a session of duplex.v1.json over a WebSocket
// connection, which must have chosen its subprotocol.
func (s *Server) startDuplex(tr *wsTransport, ip string, header, forBackend http.Header) {
	if tr.conn.Subprotocol() != Subprotocol {
		s.metrics.disconnects.With(reasonNoSubprotocol).Inc()
		tr.close(CloseSubprotocolRequired, "subprotocol "+Subprotocol+" required", nil)
		s.connWG.Done()
		return
	}
	sess := newSession(s, tr, duplexProtocol{}, ip, header)
	sess.proxyHeader = forBackend
	tr.serve(sess)
}

// admit applies the connection limits to a new session.
func (s *Server) admit(sess *session) (ok bool, limit string) {
	if max := s.cfg.Limits.MaxConnections; max > 0 && s.conns.Add(1) > int64(max) {
		s.conns.Add(-1)
		return false, limitConnections
	} else if max <= 0 {
		s.conns.Add(1)
	}
	if !s.perIP.Acquire(sess.ip) {
		s.conns.Add(-1)
		return false, limitConnectionsPerIP
	}
	return true, ""
}

func (s *Server) release(sess *session) {
	s.releasePusherConn(sess)
	s.conns.Add(-1)
	s.perIP.Release(sess.ip)
}

// addUser records a connected session of a user, within the per-user
// limit. Anonymous sessions are not counted.
func (s *Server) addUser(sess *session) bool {
	if sess.user == "" {
		return true
	}
	if !s.perUser.Acquire(sess.user) {
		return false
	}
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	set := s.users[sess.user]
	if set == nil {
		set = make(map[*session]struct{})
		s.users[sess.user] = set
	}
	set[sess] = struct{}{}
	return true
}

func (s *Server) removeUser(sess *session) {
	if sess.user == "" {
		return
	}
	s.usersMu.Lock()
	set := s.users[sess.user]
	_, had := set[sess]
	delete(set, sess)
	if len(set) == 0 {
		delete(s.users, sess.user)
	}
	s.usersMu.Unlock()
	if had {
		s.perUser.Release(sess.user)
	}
}

// disconnectUser closes every session of user on this node.
func (s *Server) disconnectUser(user string, code websocket.StatusCode, reason string) int {
	s.usersMu.Lock()
	sessions := make([]*session, 0, len(s.users[user]))
	for sess := range s.users[user] {
		sessions = append(sessions, sess)
	}
	s.usersMu.Unlock()
	for _, sess := range sessions {
		sess.close(code, reason, reasonServer)
	}
	return len(sessions)
}

// unsubscribeUser ends the subscriptions of user's sessions on this node
// to channel, telling each client with an unsubscribe push.
func (s *Server) unsubscribeUser(user, channel, reason string) int {
	s.usersMu.Lock()
	sessions := make([]*session, 0, len(s.users[user]))
	for sess := range s.users[user] {
		sessions = append(sessions, sess)
	}
	s.usersMu.Unlock()
	n := 0
	for _, sess := range sessions {
		if sess.serverUnsubscribe(channel, reason) {
			n++
		}
	}
	return n
}

// subscribe adds sess to channel's subscribers, subscribing this node at
// the broker for the first one.
func (s *Server) subscribe(ctx context.Context, channel string, sess *session) error {
	mu := &s.hub.subscribing[s.hub.index(channel)]
	mu.Lock()
	defer mu.Unlock()
	if s.hub.add(channel, sess) {
		if err := s.broker.Subscribe(ctx, channel); err != nil {
			s.hub.remove(channel, sess)
			return err
		}
		s.pusherOccupied(ctx, channel)
	}
	s.metrics.subscriptions.Inc()
	return nil
}

func (s *Server) unsubscribe(channel string, sess *session) {
	mu := &s.hub.subscribing[s.hub.index(channel)]
	mu.Lock()
	defer mu.Unlock()
	if s.hub.remove(channel, sess) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.broker.Unsubscribe(ctx, channel); err != nil {
			s.log.Warn("broker unsubscribe failed", "channel", channel, "err", err)
		}
		s.pusherVacated(ctx, channel)
	}
	s.metrics.subscriptions.Dec()
}

// janitor does the time-based work of all sessions in one goroutine, so
// that an idle session needs no timer: connect timeouts, token expiry and
// writes stuck longer than the write timeout.
func (s *Server) janitor() {
	defer s.wg.Done()
	l := &s.cfg.Limits
	interval := time.Second
	for _, d := range []time.Duration{l.ConnectTimeout, l.WriteTimeout} {
		if d > 0 {
			interval = min(interval, d/4)
		}
	}
	interval = max(interval, 10*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sessions.each(func(sess *session) { sess.checkTimes(now) })
		}
	}
}

// Shutdown drains the server: /readyz turns unready, new connections are
// refused, and the open ones are closed with 1001 spread over
// Config.DrainWindow so that their clients do not reconnect all at once
// elsewhere. It returns when every connection has ended and the broker is
// closed, or when ctx ends, after closing what is left at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	all := s.sessions.list()
	// Close in a stable but arbitrary order, one step of the window apart.
	sort.Slice(all, func(i, j int) bool { return all[i].id < all[j].id })
	var step time.Duration
	if len(all) > 0 {
		step = s.cfg.DrainWindow / time.Duration(len(all))
	}
	start := time.Now()
	var err error
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, sess := range all {
		if wait := time.Until(start.Add(time.Duration(i) * step)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		sess.close(websocket.StatusGoingAway, "server shutting down", reasonShutdown)
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.sessions.each(func(sess *session) { sess.closeNow(reasonShutdown) })
		<-done
	}
	closeCtx := ctx
	if closeCtx.Err() != nil {
		var cancel context.CancelFunc
		closeCtx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
	}
	s.stopOnce.Do(func() {
		stopCtx, cancel := context.WithTimeout(closeCtx, pusherWebhookFlush)
		defer cancel()
		s.stopCtx = stopCtx
		close(s.stop)
		s.wg.Wait()
	})
	s.wg.Wait()
	s.verifier.Close()
	s.proxies.close()
	s.leavePusherNodes(closeCtx)
	if berr := s.broker.Close(closeCtx); berr != nil && err == nil {
		err = berr
	}
	return err
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// sessionSet holds the open sessions, sharded to keep the lock short.
type sessionSet struct {
	seed   maphash.Seed
	shards [16]struct {
		mu  sync.Mutex
		set map[*session]struct{}
	}
}

func (ss *sessionSet) init() {
	ss.seed = maphash.MakeSeed()
	for i := range ss.shards {
		ss.shards[i].set = make(map[*session]struct{})
	}
}

func (ss *sessionSet) shard(sess *session) int {
	return int(maphash.String(ss.seed, sess.id) % uint64(len(ss.shards)))
}

func (ss *sessionSet) add(sess *session) {
	sh := &ss.shards[ss.shard(sess)]
	sh.mu.Lock()
	sh.set[sess] = struct{}{}
	sh.mu.Unlock()
}

func (ss *sessionSet) remove(sess *session) {
	sh := &ss.shards[ss.shard(sess)]
	sh.mu.Lock()
	delete(sh.set, sess)
	sh.mu.Unlock()
}

// each calls f for every session, under the shard's lock, so f must not
// block or touch the set; it copies nothing, as the janitor calls it for
// every session several times a second.
func (ss *sessionSet) each(f func(*session)) {
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		for sess := range sh.set {
			f(sess)
		}
		sh.mu.Unlock()
	}
}

func (ss *sessionSet) list() []*session {
	var all []*session
	for i := range ss.shards {
		sh := &ss.shards[i]
		sh.mu.Lock()
		for sess := range sh.set {
			all = append(all, sess)
		}
		sh.mu.Unlock()
	}
	return all
}

// brokerHandler receives the broker's deliveries for this node.
type brokerHandler struct{ s *Server }

// controlMessage is what nodes send each other through Broker.Control.
type controlMessage struct {
	Op      string `json:"op"` // "disconnect", "unsubscribe" or "fallback"
	Channel string `json:"channel,omitempty"`
	Node    string `json:"node"` // the sender, which acted already
	User    string `json:"user"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`

	// A fallback session's commands (op "fallback"), received by Node
	// for the session of Target.
	Target  string `json:"target,omitempty"`
	Session string `json:"session,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Data    []byte `json:"data,omitempty"`
}

func (h brokerHandler) HandleControl(data []byte) {
	var m controlMessage
	if err := json.Unmarshal(data, &m); err != nil {
		h.s.log.Warn("bad control message", "err", err)
		return
	}
	if m.Node == h.s.node {
		return
	}
	switch m.Op {
	case "disconnect":
		h.s.disconnectUser(m.User, websocket.StatusCode(m.Code), m.Reason)
	case "unsubscribe":
		h.s.unsubscribeUser(m.User, m.Channel, m.Reason)
	case "fallback":
		h.s.fallbackControl(&m)
	}
}

// Stats are a node's running figures, as its metrics report them.
type Stats struct {
	Connections   int    // open connections
	Subscriptions int    // their subscriptions
	MessagesIn    uint64 // commands received
	MessagesOut   uint64 // replies and pushes written
}

// Stats returns the node's figures now.
func (s *Server) Stats() Stats {
	m := s.metrics
	return Stats{
		Connections:   int(readValue(m.connections)),
		Subscriptions: int(readValue(m.subscriptions)),
		MessagesIn:    uint64(readValue(m.messagesIn)),
		MessagesOut:   uint64(readValue(m.messagesOut)),
	}
}
