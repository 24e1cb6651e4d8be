package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/internal/ratelimit"
	"github.com/duplexws/duplex/websocket"
)

// session is one client's state on this node, whichever transport brings
// it and whichever protocol it speaks: its identity and grants, its
// subscriptions, its limits, and its bounded outbound queue with the
// slow-consumer policies (outbound.go). Every rule about them lives here
// and in the node's operations (operations.go), once for all protocols and
// transports. Its transport (transport.go) reads the client's messages and
// hands them to its protocol (protocols.go), which runs them as operations;
// what the session queues the protocol spelled, and a writer goroutine,
// which exists only while there is something to write, hands it to the
// transport in batches; the server's janitor checks its times. An idle
// session holds this struct, its maps and its transport.
type session struct {
	srv   *Server
	tr    transport
	proto protocol
	id    string
	ip    string

	// Owned by the reading chain.
	header    http.Header // of the upgrade request, until connect
	connected bool
	info      *broker.ClientInfo
	channels  map[string]bool // granted by the connection token
	rate      ratelimit.Bucket
	// proxyHeader holds the headers of the client's request that the
	// app's backend is sent (ProxyConfig), for the session's life; nil
	// without proxy endpoints.
	proxyHeader http.Header
	// connectData is the connect proxy's data for the connect reply.
	connectData json.RawMessage
	// serverSubs are the channels the connect proxy subscribes the client
	// to, until connect does.
	serverSubs []string
	// publishRate limits the client's publications where its protocol
	// has a rate of its own for them (Pusher's client events); nil
	// until its first.
	publishRate *ratelimit.Bucket

	// Read by the janitor; written by the reading chain.
	user            string       // set once, before connectedAt
	connectDeadline time.Time    // set before the session is registered
	connectedFlag   atomic.Bool  // connect succeeded
	expires         atomic.Int64 // Unix nanoseconds of token expiry; 0: none
	writeStarted    atomic.Int64 // Unix nanoseconds; 0 when not writing
	// meta is what the connect proxy attached, sent with the session's
	// later requests to the backend; proxied says the connect proxy
	// admitted it, so that its expiry asks the refresh proxy. Both are set
	// before connectedFlag.
	meta    json.RawMessage
	proxied bool
	// refreshing is set while a refresh proxy request is under way.
	refreshing atomic.Bool
	// subExpires is the earliest expiry of a subscription the subscribe
	// proxy set (Unix nanoseconds; 0: none), guarded by mu for writes;
	// subRefreshing is set while refreshSubs runs.
	subExpires    atomic.Int64
	subRefreshing atomic.Bool

	writer sync.WaitGroup // the writer goroutine, while it runs

	// userEntry is sess in its user's set at the broker, for the per-user
	// limit across nodes; guarded by mu.
	userEntry *presenceEntry

	mu      sync.Mutex // guards what follows, and the outbound queue
	subs    map[string]*subscription
	closing bool
	// endReason is why the session is closing, counted in
	// duplex_disconnects_total by the call that recorded it; "" until
	// then, also after a failed write set closing without a reason, so
	// that finish counts the reason the transport gives. Every session
	// that ends is counted once, whichever way.
	endReason string
	out       outbound
}

// subscription is a session's subscription to one channel.
type subscription struct {
	ns       *Namespace
	viaToken bool // granted by a channel token or the "channels" claim
	// While the subscribe command reads history, live publications wait in
	// buffered so that recovered ones go first.
	buffering bool
	buffered  []*outPub
	// member is how the client appears in the channel's presence when not
	// as its connection's info (a Pusher presence channel's channel_data).
	member *broker.ClientInfo
	// membersAt is when the member list the subscriber got was read; zero
	// when it got none.
	membersAt time.Time
	// server says the server made it at connect (the connect proxy's
	// channels); a subscribe command for its channel takes it over.
	server bool
	// delivered is the last position the subscribe reply delivered; set
	// before buffering ends.
	delivered broker.Position
	// expires is when the subscription ends unless the sub_refresh proxy
	// renews it (Unix nanoseconds; 0: never); guarded by session.mu.
	expires int64
}

// presenceInfo is how sess appears in the channel's presence; nil when it
// does not.
func (sub *subscription) presenceInfo(sess *session) *broker.ClientInfo {
	if sub.member != nil {
		return sub.member
	}
	return sess.info
}

// newID returns a random id of 16 URL-safe characters.
func newID() string {
	var id [12]byte
	rand.Read(id[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(id[:])
}

func newSession(s *Server, tr transport, proto protocol, ip string, header http.Header) *session {
	return &session{
		srv:             s,
		tr:              tr,
		proto:           proto,
		id:              newID(),
		ip:              ip,
		header:          header,
		connectDeadline: time.Now().Add(s.cfg.Limits.ConnectTimeout),
		rate:            ratelimit.NewBucket(s.cfg.Limits.MessageRate, s.cfg.Limits.MessageBurst, time.Now()),
	}
}

// start admits the session within the connection limits and registers it,
// before its transport reads; it reports whether the session goes on. A
// session refused is closed, and ended.
func (sess *session) start() bool {
	srv := sess.srv
	if ok, limit := srv.admit(sess); !ok {
		srv.metrics.limitHits.With(limit).Inc()
		srv.metrics.disconnects.With(reasonConnLimit).Inc()
		sess.closeTransport(CloseConnectionLimit, "connection limit: "+limit)
		srv.connWG.Done()
		return false
	}
	srv.metrics.connections.Inc()
	srv.sessions.add(sess)
	if srv.draining.Load() {
		// Shutdown may have listed the sessions before this one joined.
		sess.close(websocket.StatusGoingAway, "server shutting down", reasonShutdown)
	}
	sess.proto.opened(sess)
	return true
}

// finish releases everything the session held once its transport ended
// for reason, the label of duplex_disconnects_total if the server did not
// close it.
func (sess *session) finish(reason string) {
	srv := sess.srv
	sess.mu.Lock()
	sess.closing = true
	if sess.endReason == "" {
		sess.countEndLocked(reason)
	}
	subs := sess.subs
	sess.subs = nil
	sess.mu.Unlock()
	sess.tr.closeNow()
	for channel, sub := range subs {
		sess.leave(channel, sub)
	}
	sess.writer.Wait()
	srv.sessions.remove(sess)
	srv.releaseUser(sess)
	srv.removeUser(sess)
	srv.release(sess)
	srv.metrics.connections.Dec()
	srv.connWG.Done()
}

// allowCommand counts one command of the client against the command rate
// (Limits.MessageRate), whatever its protocol; it reports whether the
// session goes on. A client over the rate is closed, after the replies to
// its commands before this one.
func (sess *session) allowCommand() bool {
	srv := sess.srv
	srv.metrics.messagesIn.Inc()
	if srv.cfg.Limits.MessageRate > 0 && !sess.rate.Allow(time.Now()) {
		srv.metrics.limitHits.With(limitMessageRate).Inc()
		sess.closeFlushed(CloseTooManyRequests, "too many requests", reasonMessageRate)
		return false
	}
	return true
}

func (sess *session) isClosing() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.closing
}

// close starts the closing handshake with code and reason, once; reason
// labels the disconnect metric. It does not block.
func (sess *session) close(code websocket.StatusCode, reason, metricReason string) {
	sess.mu.Lock()
	if !sess.startClosingLocked(metricReason) {
		sess.mu.Unlock()
		return
	}
	sess.mu.Unlock()
	sess.goCloseTransport(code, reason)
}

// goCloseTransport closes the transport (closeTransport) in a goroutine of
// the server's, for a session that startClosingLocked has marked closing.
func (sess *session) goCloseTransport(code websocket.StatusCode, reason string) {
	srv := sess.srv
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		sess.closeTransport(code, reason)
	}()
}

// closeTransport closes the transport with code and reason, the close
// codes of PROTOCOL.md, as the session's protocol spells them. It may block
// for the closing handshake.
func (sess *session) closeTransport(code websocket.StatusCode, reason string) {
	code, reason, last := sess.proto.closing(code, reason)
	sess.tr.close(code, reason, last)
}

// startClosingLocked marks the session closing for reason, the label of
// duplex_disconnects_total, and counts it, unless it already is closing;
// it reports whether it did. The caller holds mu.
func (sess *session) startClosingLocked(reason string) bool {
	if sess.closing {
		return false
	}
	sess.closing = true
	sess.countEndLocked(reason)
	return true
}

// countEndLocked counts the end of the session for reason: as soon as the
// server decides to close, so the count does not wait out a closing
// handshake. The caller holds mu.
func (sess *session) countEndLocked(reason string) {
	sess.endReason = reason
	sess.srv.metrics.disconnects.With(reason).Inc()
}

// closeNow closes the connection without a handshake, for a connection
// that cannot take one (its writes are stuck).
func (sess *session) closeNow(metricReason string) {
	sess.mu.Lock()
	sess.startClosingLocked(metricReason)
	sess.mu.Unlock()
	sess.srv.wg.Add(1)
	go func() {
		defer sess.srv.wg.Done()
		sess.tr.closeNow()
	}()
}

// abortOnClose makes the closing of a slow consumer's connection reset it
// rather than leave the kernel holding what the client did not read. A
// close frame that goes out before the close still does.
func (sess *session) abortOnClose() {
	if !sess.tr.abortOnClose() {
		sess.srv.log.Debug("cannot abort the connection of a slow consumer", "transport", sess.tr.kind())
	}
}

// checkTimes is the janitor's visit.
func (sess *session) checkTimes(now time.Time) {
	l := &sess.srv.cfg.Limits
	if !sess.connectedFlag.Load() {
		if l.ConnectTimeout > 0 && now.After(sess.connectDeadline) {
			sess.close(CloseConnectTimeout, "connect timeout", reasonConnectTime)
		}
		return
	}
	if exp := sess.expires.Load(); exp != 0 && now.UnixNano() > exp {
		if p := sess.srv.proxies[sess.srv.cfg.Proxy.Refresh]; p != nil && sess.proxied {
			if sess.refreshing.CompareAndSwap(false, true) {
				sess.srv.wg.Add(1)
				go func() {
					defer sess.srv.wg.Done()
					sess.refreshViaProxy(p)
				}()
			}
			return
		}
		sess.close(CloseTokenExpired, "token expired", reasonTokenExpired)
		return
	}
	if exp := sess.subExpires.Load(); exp != 0 && now.UnixNano() > exp && sess.subRefreshing.CompareAndSwap(false, true) {
		sess.srv.wg.Add(1)
		go func() {
			defer sess.srv.wg.Done()
			sess.refreshSubs(now)
		}()
	}
	if started := sess.writeStarted.Load(); l.WriteTimeout > 0 && started != 0 && now.UnixNano()-started > int64(l.WriteTimeout) {
		sess.abortOnClose()
		sess.closeNow(reasonSlowConsumer)
	}
}

// queueReply queues a reply to a command of the client, spelled by its
// protocol.
func (sess *session) queueReply(line []byte) {
	sess.mu.Lock()
	sess.enqueueReplyLocked(line)
	sess.mu.Unlock()
}

// leave ends a subscription: the hub, presence and the leave event.
func (sess *session) leave(channel string, sub *subscription) {
	sess.srv.unsubscribe(channel, sess)
	sess.leavePresence(channel, sub)
}

// leavePresence removes the client from channel's presence and publishes
// its leave event, where the namespace has them.
func (sess *session) leavePresence(channel string, sub *subscription) {
	srv := sess.srv
	sess.mu.Lock() // a refresh may change the info
	member := sub.presenceInfo(sess)
	sess.mu.Unlock()
	if !sub.ns.Presence || member == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !srv.brokerReady() {
		// Its entry expires with PresenceTTL; waiting here would hold up
		// every session that ends while the broker is away.
		return
	}
	if err := srv.broker.RemovePresence(ctx, channel, sess.id); err != nil {
		srv.log.Warn("presence remove failed", "channel", channel, "err", err)
	}
	if sub.ns.JoinLeave {
		if err := srv.broker.PublishLeave(ctx, channel, member); err != nil {
			srv.log.Warn("leave event failed", "channel", channel, "err", err)
		}
	}
}

// serverUnsubscribe ends a subscription at the server's request and tells
// the client; it reports whether sess was subscribed.
func (sess *session) serverUnsubscribe(channel, reason string) bool {
	sess.mu.Lock()
	sub := sess.subs[channel]
	if sub == nil || sess.closing {
		sess.mu.Unlock()
		return false
	}
	delete(sess.subs, channel)
	if line := sess.proto.encodeNotice(&notice{kind: noticeUnsubscribe, channel: channel, code: UnsubscribeServer, reason: reason}); line != nil {
		sess.enqueueLocked(line, nil)
	}
	sess.mu.Unlock()
	sess.leave(channel, sub)
	return true
}

// deliverPub queues a publication of a channel sess is subscribed to.
func (sess *session) deliverPub(p *outPub) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sub := sess.subs[p.channel]
	if sub == nil {
		return
	}
	if p.pub.Info != nil && p.pub.Info.Client == sess.id && !sess.proto.echoes() {
		return
	}
	if sub.buffering {
		sub.buffered = append(sub.buffered, p)
		return
	}
	sess.enqueuePubLocked(p)
}

// enqueuePubLocked queues a publication in the spelling of the session's
// protocol, if it has one. sess.mu is held.
func (sess *session) enqueuePubLocked(p *outPub) {
	if l := p.lineFor(sess.proto); l.line != nil {
		sess.enqueueLocked(l.line, p)
	}
}

// deliverNotice queues a push about a channel sess is subscribed to.
func (sess *session) deliverNotice(n *outNotice) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sub := sess.subs[n.n.channel]
	if sub == nil || sub.buffering {
		return
	}
	if n.n.user != "" && (sub.member != nil && sub.member.User == n.n.user || n.n.at.Before(sub.membersAt)) {
		// The user's own connections know, and so does a subscriber
		// whose member list was read after the change.
		return
	}
	if line := n.lineFor(sess.proto); line != nil {
		sess.enqueueLocked(line, nil)
	}
}
