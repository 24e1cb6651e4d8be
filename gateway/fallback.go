package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The fallback transports, for clients whose networks block WebSocket:
// the same protocol (duplex.v1.json) over a response that stays open,
// newline-delimited JSON (GET /fallback/stream, "http_stream") or
// Server-Sent Events (GET /fallback/sse, "sse"), with the client's
// commands as POSTs (/fallback/send). The stream's first line names the
// session, "<node>.<random>"; a POST may reach any node, which hands it to
// the node that holds the session through the broker (Control), so that
// no load balancer affinity is needed. Everything else (limits, auth, the
// outbound queue and its slow-consumer policies, recovery) is the
// session's, as over WebSocket.

// Transport names, as the proxy's requests and logs give them.
const (
	transportHTTPStream = "http_stream"
	transportSSE        = "sse"
)

// maxOutOfOrder bounds the POSTs of one session held until the ones
// before them arrive (they may travel through the broker by different
// nodes); a client that skips more is closed.
const maxOutOfOrder = 16

// fallbackTransport is one fallback session's response stream. The
// handler that serves the stream owns it: it ends when the client goes
// away or the session closes it.
type fallbackTransport struct {
	sse bool
	srv *Server

	mu   sync.Mutex // guards writing to w and what follows
	w    http.ResponseWriter
	rc   *http.ResponseController
	done bool          // the response ended: nothing more is written
	end  chan struct{} // closed to end the response
	once sync.Once

	// dlMu orders the write deadlines: aborted, once set, makes writes
	// fail at once, and a deadline in the past ends a write in progress.
	dlMu    sync.Mutex
	aborted bool

	// The client's commands, in the order of their sequence numbers:
	// inMu makes their handling the session's one reading chain.
	inMu    sync.Mutex
	sess    *session
	nextSeq uint64
	waiting map[uint64][]byte
}

func (t *fallbackTransport) kind() string {
	if t.sse {
		return transportSSE
	}
	return transportHTTPStream
}

// writeLocked writes msg, one or more lines of the protocol, as the
// transport frames them, and flushes. The caller holds mu.
func (t *fallbackTransport) writeLocked(msg []byte) error {
	if t.done {
		return errors.New("gateway: the fallback stream ended")
	}
	if !t.setWriteDeadline() {
		return errFallbackAborted
	}
	var err error
	if t.sse {
		// One event whose data lines are the protocol's lines: the
		// client's event.data joins them with "\n", as a WebSocket
		// message would hold them.
		var b bytes.Buffer
		for len(msg) > 0 {
			var line []byte
			line, msg, _ = bytes.Cut(msg, []byte{'\n'})
			b.WriteString("data: ")
			b.Write(line)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		_, err = t.w.Write(b.Bytes())
	} else {
		if _, err = t.w.Write(msg); err == nil {
			_, err = t.w.Write([]byte{'\n'})
		}
	}
	if err == nil {
		err = t.rc.Flush()
	}
	if err == nil {
		t.srv.metrics.bytesOut.Add(float64(len(msg)))
	}
	return err
}

func (t *fallbackTransport) write(msg []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writeLocked(msg)
}

func (t *fallbackTransport) writeShared(line *sharedLine) error { return t.write(line.line) }

// closeLine is the last line of a fallback stream that the server ends:
// what a close frame says over WebSocket.
func closeLine(code websocket.StatusCode, reason string) []byte {
	b, _ := json.Marshal(map[string]any{"close": map[string]any{"code": int(code), "reason": reason}})
	return b
}

func (t *fallbackTransport) close(code websocket.StatusCode, reason string, last []byte) {
	t.mu.Lock()
	if last != nil {
		t.writeLocked(last)
	}
	t.writeLocked(closeLine(code, reason))
	t.mu.Unlock()
	t.closeNow()
}

func (t *fallbackTransport) closeNow() { t.once.Do(func() { close(t.end) }) }

var errFallbackAborted = errors.New("gateway: the fallback stream was aborted")

// setWriteDeadline sets the deadline of the next write, unless the stream
// was aborted, which it reports by false.
func (t *fallbackTransport) setWriteDeadline() bool {
	t.dlMu.Lock()
	defer t.dlMu.Unlock()
	if t.aborted {
		return false
	}
	if d := t.srv.cfg.Limits.WriteTimeout; d > 0 {
		t.rc.SetWriteDeadline(time.Now().Add(d))
	}
	return true
}

// abortOnClose ends a write stuck on a client that does not read (a slow
// consumer's) and makes every later write fail at once, so that closing
// the session does not wait for the write timeout; the handler's return
// then ends the response, and net/http the connection.
func (t *fallbackTransport) abortOnClose() bool {
	t.dlMu.Lock()
	defer t.dlMu.Unlock()
	t.aborted = true
	return t.rc.SetWriteDeadline(time.Now()) == nil
}

// keepalive writes a line the client ignores, so that proxies between
// keep the response open and a client gone is noticed.
func (t *fallbackTransport) keepalive() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return nil
	}
	if !t.setWriteDeadline() {
		return errFallbackAborted
	}
	ping := []byte("\n")
	if t.sse {
		ping = []byte(":\n\n")
	}
	if _, err := t.w.Write(ping); err != nil {
		return err
	}
	return t.rc.Flush()
}

// deliver hands the client's POST number seq, body, to its protocol, in
// order: one that comes early waits for those before it.
func (t *fallbackTransport) deliver(seq uint64, body []byte) {
	t.inMu.Lock()
	defer t.inMu.Unlock()
	sess := t.sess
	if seq < t.nextSeq {
		return // a repeat
	}
	if seq > t.nextSeq {
		if t.waiting == nil {
			t.waiting = make(map[uint64][]byte)
		}
		if len(t.waiting) >= maxOutOfOrder {
			sess.close(CloseBadRequest, "bad request: fallback commands out of order", reasonBadRequest)
			return
		}
		t.waiting[seq] = body
		return
	}
	for {
		t.nextSeq++
		sess.srv.metrics.bytesIn.Add(float64(len(body)))
		if !sess.isClosing() {
			sess.proto.handleMessage(sess, true, body)
		}
		next, ok := t.waiting[t.nextSeq]
		if !ok {
			return
		}
		delete(t.waiting, t.nextSeq)
		body = next
	}
}

// fallbackOrigin applies the origin policy of WebSocket handshakes to the
// fallback requests: a page of another site may neither open a stream
// (reading a user's publications with their cookies) nor send commands.
// A page of an allowed other origin gets the CORS headers that let it read
// the answer and send its cookies.
func (s *Server) fallbackOrigin(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pattern := range s.cfg.OriginPatterns {
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(u.Host)); ok {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
			return true
		}
	}
	return false
}

// validSessionID reports whether id has the shape of a fallback session's
// id, "<node>.<random>", each part newID's: a POST for anything else is
// not carried to the other nodes.
func validSessionID(id string) bool {
	node, rest, ok := strings.Cut(id, ".")
	valid := func(p string) bool {
		if len(p) != 16 {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		return true
	}
	return ok && valid(node) && valid(rest)
}

// serveFallbackStream serves GET /fallback/stream and /fallback/sse: a
// session whose transport is the response.
func (s *Server) serveFallbackStream(w http.ResponseWriter, r *http.Request, sse bool) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if !s.fallbackOrigin(w, r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ip := s.clientIP(r)
	if s.handshakes != nil && !s.handshakes.Allow(ip, time.Now()) {
		s.metrics.limitHits.With(limitHandshakeRate).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(1/s.cfg.Limits.HandshakeRate))))
		http.Error(w, "too many handshakes", http.StatusTooManyRequests)
		return
	}
	// From here the connection is the session's, counted by the
	// connection limits as an upgraded one is, no longer as pending.
	if c, ok := r.Context().Value(tcpConnKey{}).(net.Conn); ok {
		s.pending.release(c)
	}
	rc := http.NewResponseController(w)
	// The server's read and write deadlines are for ordinary requests:
	// this response lasts as long as the session, and each write gets the
	// write timeout of its own.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	t := &fallbackTransport{sse: sse, srv: s, w: w, rc: rc, end: make(chan struct{})}
	h := w.Header()
	if sse {
		h.Set("Content-Type", "text/event-stream")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // proxies that buffer responses must not buffer this one
	s.connWG.Add(1)
	sess := newSession(s, t, duplexProtocol{}, ip, authHeader(r.Header, s.cfg.Hooks.Authenticate != nil))
	sess.id = s.node + "." + sess.id
	sess.proxyHeader = keepHeaders(r.Header, s.proxyHeaders)
	t.sess = sess
	if !sess.start() {
		return
	}
	s.fallbacks.Store(sess.id, t)
	defer s.fallbacks.Delete(sess.id)
	hello, _ := json.Marshal(map[string]string{"session": sess.id})
	if err := t.write(hello); err != nil {
		t.closeNow()
	}
	var ping <-chan time.Time
	if d := s.cfg.PingInterval; d > 0 {
		tk := time.NewTicker(d)
		defer tk.Stop()
		ping = tk.C
	}
	reason := reasonClient
wait:
	for {
		select {
		case <-r.Context().Done():
			break wait
		case <-t.end:
			break wait
		case <-ping:
			if err := t.keepalive(); err != nil {
				reason = reasonNetwork
				break wait
			}
		}
	}
	// Nothing is written once the handler returns.
	t.mu.Lock()
	t.done = true
	t.mu.Unlock()
	sess.finish(reason)
}

// serveFallbackSend serves POST /fallback/send?session=ID&seq=N: lines of
// the client's commands, for the session wherever it is.
func (s *Server) serveFallbackSend(w http.ResponseWriter, r *http.Request) {
	if !s.fallbackOrigin(w, r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if s.fallbackSends != nil && !s.fallbackSends.Allow(s.clientIP(r), time.Now()) {
		s.metrics.limitHits.With(limitFallbackSendRate).Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many fallback POSTs from this address", http.StatusTooManyRequests)
		return
	}
	q := r.URL.Query()
	id := q.Get("session")
	seq, err := strconv.ParseUint(q.Get("seq"), 10, 64)
	if !validSessionID(id) || err != nil {
		http.Error(w, "a session id and a seq number are required", http.StatusBadRequest)
		return
	}
	node, _, _ := strings.Cut(id, ".")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxMessageSize))
	if err != nil {
		s.metrics.limitHits.With(limitMessageSize).Inc()
		http.Error(w, "the commands are over the message size limit", http.StatusRequestEntityTooLarge)
		return
	}
	if node == s.node {
		if !s.deliverFallback(id, seq, body) {
			http.Error(w, "no such session", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	msg, _ := json.Marshal(controlMessage{Op: "fallback", Node: s.node, Target: node, Session: id, Seq: seq, Data: body})
	if err := s.broker.Control(r.Context(), msg); err != nil {
		http.Error(w, "the broker is unavailable", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// deliverFallback hands a POST to the local fallback session id; it
// reports whether the session is here.
func (s *Server) deliverFallback(id string, seq uint64, body []byte) bool {
	t, ok := s.fallbacks.Load(id)
	if !ok {
		s.metrics.fallbackUnknown.Inc()
		return false
	}
	t.(*fallbackTransport).deliver(seq, body)
	return true
}

// fallbackControl runs a POST that another node received for a session of
// this one, off the broker's delivery goroutine.
func (s *Server) fallbackControl(m *controlMessage) {
	// Once draining, the sessions are closing, and Shutdown will soon
	// wait for the goroutines it counts: start no more.
	if m.Target != s.node || s.draining.Load() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.deliverFallback(m.Session, m.Seq, m.Data)
	}()
}
