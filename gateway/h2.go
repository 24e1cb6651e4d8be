package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// WebSockets over HTTP/2 (RFC 8441): a browser that reached the gateway
// over HTTP/2 opens /ws as an extended CONNECT on that connection, many
// sockets to one TCP and TLS connection. websocket.Accept takes it (with
// extended CONNECT enabled in the process: GODEBUG=http2xconnect=1, or
// the websocket/http2xconnect import) and gives the same Conn, so the
// session is the same; what differs is here:
//
//   - The stream is the request: it ends when the handler returns. Over
//     HTTP/1.1 serveWebSocket returns at once and the session runs on
//     (net/http has let go of the hijacked connection); over HTTP/2 the
//     handler stays until the session's Conn has closed its stream.
//   - Limits per IP, per user and in total count sessions, so they apply
//     per stream as they do per connection. The pending-connection caps
//     count TCP connections that carry no WebSocket: over HTTP/1.1 a
//     connection leaves them at the hijack, over HTTP/2 when its first
//     WebSocket stream opens (it carries WebSockets from then on, whatever
//     other requests share it).
//   - A slow consumer's abort resets its stream (RST_STREAM), not the TCP
//     connection other streams share: the session has no connection of its
//     own to abort (netConn stays nil), and the Conn's close resets a
//     stream whose write is stuck (websocket's h2Stream).

// h2Stream is a WebSocket request over HTTP/2 while its session runs.
type h2Stream struct {
	srv  *Server
	tcp  net.Conn // the connection carrying the stream, from ConnContext; nil when unknown
	body *streamBody
	w    *streamWriter
}

// newH2Stream prepares an extended CONNECT for websocket.Accept: its body
// (the client's side of the stream) tells when the Conn has closed it, and
// its ResponseWriter keeps count of the writes in progress.
func newH2Stream(s *Server, w http.ResponseWriter, r *http.Request) (*h2Stream, http.ResponseWriter, *http.Request) {
	tcp, _ := r.Context().Value(tcpConnKey{}).(net.Conn)
	b := &streamBody{ReadCloser: r.Body, closed: make(chan struct{})}
	r = r.WithContext(r.Context()) // a shallow copy, whose Body is ours
	r.Body = b
	sw := &streamWriter{ResponseWriter: w}
	return &h2Stream{srv: s, tcp: tcp, body: b, w: sw}, sw, r
}

// serve starts the session (start, which returns once the session waits
// for its client), and returns once its Conn has closed the stream and no
// write to it is in progress: returning sooner would end the stream
// (END_STREAM) under a write, which net/http forbids.
func (h *h2Stream) serve(ip string, start func()) {
	if h.tcp != nil {
		h.srv.pending.release(h.tcp) // it carries a WebSocket now
	}
	h.srv.log.Debug("WebSocket over HTTP/2", "ip", ip)
	start()
	<-h.body.closed
	h.w.finish()
}

// streamWriter is the ResponseWriter of an HTTP/2 WebSocket: the session's
// writer may be inside Write or Flush when the Conn closes the stream, and
// the handler must not return before it is out. finish refuses new calls,
// wakes one stuck on flow control (a slow consumer's: the expired write
// deadline resets the stream) and waits for those in progress.
type streamWriter struct {
	http.ResponseWriter
	mu       sync.Mutex
	finished bool
	inFlight sync.WaitGroup
	busy     int // calls in progress; guarded by mu
}

var errStreamEnded = errors.New("gateway: the HTTP/2 stream has ended")

func (w *streamWriter) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return false
	}
	w.busy++
	w.inFlight.Add(1)
	return true
}

func (w *streamWriter) leave() {
	w.mu.Lock()
	w.busy--
	w.mu.Unlock()
	w.inFlight.Done()
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if !w.enter() {
		return 0, errStreamEnded
	}
	defer w.leave()
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController's Flush calls.
func (w *streamWriter) FlushError() error {
	if !w.enter() {
		return errStreamEnded
	}
	defer w.leave()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer's deadlines.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamWriter) finish() {
	w.mu.Lock()
	w.finished = true
	stuck := w.busy > 0
	w.mu.Unlock()
	if stuck {
		http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now())
	}
	w.inFlight.Wait()
}

// streamBody is an HTTP/2 request's body that says when it was closed,
// which websocket's h2Stream does when its Conn closes.
type streamBody struct {
	io.ReadCloser
	once   sync.Once
	closed chan struct{}
}

func (b *streamBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { close(b.closed) })
	return err
}

// tcpConnKey is the request context's key for the connection it came on
// (http.Server.ConnContext in HTTPServer).
type tcpConnKey struct{}

// withTCPConn is HTTPServer's ConnContext.
func withTCPConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, tcpConnKey{}, c)
}
