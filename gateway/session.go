package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/internal/ratelimit"
	"github.com/duplexws/duplex/websocket"
)

// session is one client connection. Its commands are read and handled in
// order by one chain of goroutines (run, then resume each time a message
// arrives), none of which exists while the client is silent; a writer
// goroutine exists only while there is something to write (outbound.go);
// the server's janitor checks its times. An idle session holds this struct,
// its maps and its Conn.
type session struct {
	srv  *Server
	conn *websocket.Conn
	// netConn is the connection conn took over, to abort it when the
	// client is closed as a slow consumer (abort.go); nil when unknown.
	netConn net.Conn
	id      string
	ip      string

	// Owned by the reading chain.
	header    http.Header // of the upgrade request, until connect
	connected bool
	info      *broker.ClientInfo
	channels  map[string]bool // granted by the connection token
	rate      ratelimit.Bucket

	// Read by the janitor; written by the reading chain.
	user            string       // set once, before connectedAt
	connectDeadline time.Time    // set before the session is registered
	connectedFlag   atomic.Bool  // connect succeeded
	expires         atomic.Int64 // Unix nanoseconds of token expiry; 0: none
	writeStarted    atomic.Int64 // Unix nanoseconds; 0 when not writing

	writer sync.WaitGroup // the writer goroutine, while it runs

	resumeFn func() // resume, bound once: Await takes it for every wait

	// userEntry is sess in its user's set at the broker, for the per-user
	// limit across nodes; guarded by mu.
	userEntry *presenceEntry

	mu      sync.Mutex // guards what follows, and the outbound queue
	subs    map[string]*subscription
	closing bool
	// endReason is why the session is closing, counted in
	// duplex_disconnects_total by the call that recorded it; "" until
	// then, also after a failed write set closing without a reason, so
	// that finish counts the reason of the read error. Every session that
	// ends is counted once, whichever way.
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
}

// newID returns a random id of 16 URL-safe characters.
func newID() string {
	var id [12]byte
	rand.Read(id[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(id[:])
}

func newSession(s *Server, conn *websocket.Conn, ip string, header http.Header) *session {
	return &session{
		srv:             s,
		conn:            conn,
		id:              newID(),
		ip:              ip,
		header:          header,
		connectDeadline: time.Now().Add(s.cfg.Limits.ConnectTimeout),
		rate:            ratelimit.NewBucket(s.cfg.Limits.MessageRate, s.cfg.Limits.MessageBurst, time.Now()),
	}
}

// run starts serving the session. It returns once the session waits for
// its first message; the session ends in finish, on whichever goroutine
// reads last.
func (sess *session) run() {
	srv := sess.srv
	if sess.conn.Subprotocol() != Subprotocol {
		srv.metrics.disconnects.With(reasonNoSubprotocol).Inc()
		sess.conn.Close(CloseSubprotocolRequired, "subprotocol "+Subprotocol+" required")
		srv.connWG.Done()
		return
	}
	if ok, limit := srv.admit(sess); !ok {
		srv.metrics.limitHits.With(limit).Inc()
		srv.metrics.disconnects.With(reasonConnLimit).Inc()
		sess.conn.Close(CloseConnectionLimit, "connection limit: "+limit)
		srv.connWG.Done()
		return
	}
	srv.metrics.connections.Inc()
	srv.sessions.add(sess)
	if srv.draining.Load() {
		// Shutdown may have listed the sessions before this one joined.
		sess.close(websocket.StatusGoingAway, "server shutting down", reasonShutdown)
	}
	sess.resumeFn = sess.resume
	sess.resume()
}

// resume reads and handles messages while they keep coming. When none has
// arrived it awaits the next without a goroutine (websocket.Conn.Await),
// which calls resume again: an idle session holds no goroutine and no
// buffer. It ends the session when reading ends.
func (sess *session) resume() {
	for {
		ready, err := sess.conn.Await(sess.resumeFn)
		if err != nil {
			sess.finish(err) // cannot happen: only this chain reads
			return
		}
		if !ready {
			return
		}
		typ, msg, err := sess.conn.Read(context.Background())
		if err != nil {
			if limit, _ := readLimitHit(err); limit != "" {
				sess.srv.metrics.limitHits.With(limit).Inc()
			}
			sess.finish(err)
			return
		}
		sess.handleMessage(typ, msg)
	}
}

// finish releases everything the session held once its connection ended
// with err.
func (sess *session) finish(err error) {
	srv := sess.srv
	sess.mu.Lock()
	sess.closing = true
	if sess.endReason == "" {
		sess.countEndLocked(endReason(err))
	}
	subs := sess.subs
	sess.subs = nil
	sess.mu.Unlock()
	sess.conn.CloseNow()
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

// The disconnect reasons and limits of the per-connection read limits the
// websocket package enforces (Limits.FrameRate and ByteRate, its fragment
// cap and message timeout), each closed with 1008.
const (
	reasonReadRate       = "read_rate"
	reasonFragments      = "fragments"
	reasonMessageTimeout = "message_timeout"
	limitReadRate        = "read_rate"
	limitFragments       = "fragments"
	limitMessageTimeout  = "message_timeout"
)

// readRate is the websocket.RateLimit of l, whose defaults are filled in:
// only positive rates limit.
func readRate(l *Limits) websocket.RateLimit {
	var r websocket.RateLimit
	if l.FrameRate > 0 {
		r.Frames, r.FrameBurst = l.FrameRate, l.FrameBurst
	}
	if l.ByteRate > 0 {
		r.Bytes, r.ByteBurst = l.ByteRate, l.ByteBurst
	}
	return r
}

// readLimitHit names the limit err reports the client went past, if any.
func readLimitHit(err error) (limit, reason string) {
	var pe *websocket.ProtocolError
	switch {
	case errors.Is(err, websocket.ErrRateLimited):
		return limitReadRate, reasonReadRate
	case errors.Is(err, websocket.ErrTooManyFragments):
		return limitFragments, reasonFragments
	case errors.Is(err, websocket.ErrMessageTimeout):
		return limitMessageTimeout, reasonMessageTimeout
	case errors.As(err, &pe) && pe.Code == websocket.StatusMessageTooBig:
		return limitMessageSize, reasonMessageSize
	}
	return "", ""
}

// endReason names why a connection ended that this side did not close.
func endReason(err error) string {
	if _, reason := readLimitHit(err); reason != "" {
		return reason
	}
	var pe *websocket.ProtocolError
	if errors.As(err, &pe) {
		if pe.Code == websocket.StatusPolicyViolation {
			return reasonNoPong
		}
		return reasonProtocol
	}
	if websocket.CloseStatus(err) != -1 {
		return reasonClient
	}
	return reasonNetwork
}

// commandPool holds the command values handleMessage decodes into.
var commandPool = sync.Pool{New: func() any { return new(command) }}

// handleMessage handles one message of the client: lines of commands.
func (sess *session) handleMessage(typ websocket.MessageType, msg []byte) {
	srv := sess.srv
	ctx := context.Background()
	srv.metrics.bytesIn.Add(float64(len(msg)))
	if sess.isClosing() {
		return // the close handshake is under way; read until it ends
	}
	if typ != websocket.MessageText {
		sess.close(CloseBadRequest, "binary messages are not part of the protocol", reasonBadRequest)
		return
	}
	// One command value for the message's lines, zeroed for each, from a
	// pool rather than allocated per line: nothing keeps it past handle.
	cmd := commandPool.Get().(*command)
	defer func() {
		*cmd = command{}
		commandPool.Put(cmd)
	}()
	for len(msg) > 0 {
		var line []byte
		line, msg, _ = bytes.Cut(msg, []byte{'\n'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		srv.metrics.messagesIn.Inc()
		if srv.cfg.Limits.MessageRate > 0 && !sess.rate.Allow(time.Now()) {
			srv.metrics.limitHits.With(limitMessageRate).Inc()
			// The replies to the commands before this one go first.
			sess.closeFlushed(CloseTooManyRequests, "too many requests", reasonMessageRate)
			return
		}
		// A line that is not a command ends the session, after the
		// replies to the commands before it, as the command rate does.
		*cmd = command{}
		if err := json.Unmarshal(line, cmd); err != nil {
			sess.closeFlushed(CloseBadRequest, "bad request: invalid JSON", reasonBadRequest)
			return
		}
		if cmd.ID == 0 {
			sess.closeFlushed(CloseBadRequest, "bad request: command without id", reasonBadRequest)
			return
		}
		if !sess.awaitRoom() {
			return
		}
		sess.handle(ctx, cmd)
		if sess.isClosing() {
			return
		}
	}
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
	srv := sess.srv
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		sess.conn.Close(code, reason)
	}()
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
		sess.conn.CloseNow()
	}()
}

// abortOnClose makes the closing of a slow consumer's connection reset it
// rather than leave the kernel holding what the client did not read. A
// close frame that goes out before the close still does.
func (sess *session) abortOnClose() {
	if sess.netConn != nil && !abortOnClose(sess.netConn) {
		sess.srv.log.Debug("cannot abort the connection of a slow consumer", "type", fmt.Sprintf("%T", sess.netConn))
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
		sess.close(CloseTokenExpired, "token expired", reasonTokenExpired)
		return
	}
	if started := sess.writeStarted.Load(); l.WriteTimeout > 0 && started != 0 && now.UnixNano()-started > int64(l.WriteTimeout) {
		sess.abortOnClose()
		sess.closeNow(reasonSlowConsumer)
	}
}

// reply queues the reply to a command.
func (sess *session) reply(id uint64, result any, e *Error) {
	sess.replyLine(encodeReply(id, result, e))
}

// replyLine queues the reply to a command, encoded.
func (sess *session) replyLine(line []byte) {
	sess.mu.Lock()
	sess.enqueueReplyLocked(line)
	sess.mu.Unlock()
}

// leave ends a subscription: the hub, presence and the leave event.
func (sess *session) leave(channel string, sub *subscription) {
	srv := sess.srv
	srv.unsubscribe(channel, sess)
	if !sub.ns.Presence || sess.info == nil {
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
		if err := srv.broker.PublishLeave(ctx, channel, sess.info); err != nil {
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
	sess.enqueueLocked(encodeUnsubscribePush(channel, UnsubscribeServer, reason), nil)
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
	if sub.buffering {
		sub.buffered = append(sub.buffered, p)
		return
	}
	sess.enqueueLocked(p.line, p)
}

// deliverLine queues a push about a channel sess is subscribed to.
func (sess *session) deliverLine(channel string, line []byte) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sub := sess.subs[channel]; sub == nil || sub.buffering {
		return
	}
	sess.enqueueLocked(line, nil)
}
