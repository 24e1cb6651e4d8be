package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// DefaultEchoReadLimit is the largest message EchoServer echoes unless told
// otherwise: 64 MiB. Messages are streamed, so a large limit costs no memory.
const DefaultEchoReadLimit = 64 << 20

// DefaultEchoControlRate is how many control frames (pings, pongs, closes)
// per second a connection of duplex echo may send unless --control-rate
// says otherwise (with bursts of as many); a connection over it is closed
// with 1008. A ping costs the server a pong write, so a client that pings
// as fast as the server answers took a core and the latency of every other
// client: on the 2-core test machines, four such connections made some
// 35,000 pings a second each. A client has no use for more than a few
// pings a second, while a fast one sends tens of thousands of messages (a
// single connection of duplex bench, each message on the echo of the last,
// made 15,000 to 26,000 a second): the control-frame rate tells the two
// apart, which a limit on all frames could not.
const DefaultEchoControlRate = 100

// DefaultEchoFrameRate is how many frames per second, data and control, a
// connection of duplex echo may send unless --frame-rate says otherwise:
// a backstop far above what a client on loopback reaches (see
// DefaultEchoControlRate).
const DefaultEchoFrameRate = 100000

// EchoServer is a WebSocket server that sends every data message back to
// its sender with the same type, on every path. It streams each message
// from the connection's Reader to its Writer through a pooled buffer, so a
// message is never held whole and its size does not matter to memory; a
// message that fits the buffer is sent back whole with Write instead, to
// which the compression threshold applies.
//
// The zero value is a valid configuration. Its only state is the counters
// Stats reports, which every call to Serve adds to: Serve may be called on
// several listeners at once. An EchoServer must not be copied after first
// use.
type EchoServer struct {
	// Accept configures each handshake and connection: subprotocols,
	// allowed origins, buffer sizes, keepalive, close timeout, compression.
	// Its defaults are stated on websocket.AcceptOptions.
	Accept websocket.AcceptOptions

	// ReadLimit is the largest message, in bytes, that is echoed; a bigger
	// one fails the connection with StatusMessageTooBig (1009). Zero means
	// DefaultEchoReadLimit (64 MiB); a negative value removes the limit.
	ReadLimit int64

	// Logger receives one line per connection, when it ends, a warning
	// for each refused handshake, and a line when Serve begins to stop.
	// Default: slog.Default().
	Logger *slog.Logger

	// ShutdownTimeout bounds how long Serve waits, once its context ends,
	// for requests that have not become WebSocket connections (handshakes
	// in progress, plain HTTP requests) before it cuts them off. Open
	// WebSocket connections get the close timeout of Accept instead.
	// Default: 5 seconds.
	ShutdownTimeout time.Duration

	// TLSConfig, when set, makes Serve speak TLS with it, offering HTTP/2
	// and HTTP/1.1 (ALPN "h2" and "http/1.1"; its NextProtos are
	// replaced). WebSockets then come over either: over HTTP/2 as extended
	// CONNECT (RFC 8441), which the process must have enabled (GODEBUG
	// http2xconnect=1, see websocket/http2xconnect), or else browsers use
	// HTTP/1.1. Default: nil, plain TCP and HTTP/1.1.
	TLSConfig *tls.Config

	stats echoCounters
}

// EchoStats counts what an EchoServer has done, over every call to Serve.
type EchoStats struct {
	Connections int64 // WebSocket connections served
	Messages    int64 // data messages echoed whole
	Bytes       int64 // payload bytes echoed, of whole and partial messages
}

// Stats returns what the server has done since it was made. It may be
// called at any time, also while Serve runs: a message counts once its
// echo has been written whole.
func (s *EchoServer) Stats() EchoStats {
	return EchoStats{
		Connections: s.stats.connections.Load(),
		Messages:    s.stats.messages.Load(),
		Bytes:       s.stats.bytes.Load(),
	}
}

// echoCounters are the counters behind EchoStats.
type echoCounters struct {
	connections, messages, bytes atomic.Int64
}

// Serve accepts connections on ln and echoes on them until ctx ends or ln
// fails; it closes ln. When ctx ends, it stops accepting and closes every
// open connection with StatusGoingAway (1001), then returns nil once every
// connection has ended; each closing handshake is bounded by the close
// timeout of Accept. When ln fails, Serve closes the connections the same
// way and returns the listener's error.
func (s *EchoServer) Serve(ctx context.Context, ln net.Listener) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	h := &echoHandler{
		stats:     &s.stats,
		accept:    s.Accept,
		readLimit: s.ReadLimit,
		logger:    logger,
		conns:     make(map[*websocket.Conn]*serverClose),
	}
	if h.readLimit == 0 {
		h.readLimit = DefaultEchoReadLimit
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second, // bounds slow handshakes (slowloris)
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	serveDone := make(chan error, 1)
	if s.TLSConfig != nil {
		srv.TLSConfig = s.TLSConfig.Clone()
		srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		go func() { serveDone <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveDone <- srv.Serve(ln) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-serveDone:
	}

	// Refuse new handshakes, then close what is open while the HTTP server
	// stops: Shutdown does not know about hijacked connections.
	closing, open := h.startClosing()
	logger.Info("stopping", "connections", open)
	shutdownTimeout := s.ShutdownTimeout
	if shutdownTimeout <= 0 {
		shutdownTimeout = 5 * time.Second
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	if srv.Shutdown(shutdownCtx) != nil {
		srv.Close()
	}
	cancel()
	if err == nil {
		<-serveDone // http.ErrServerClosed, now that Shutdown has run
	}
	closing.Wait()
	h.handlers.Wait()
	return err
}

// echoHandler is the state of one call to Serve: its options and the
// connections it has open.
type echoHandler struct {
	stats     *echoCounters
	accept    websocket.AcceptOptions
	readLimit int64
	logger    *slog.Logger

	// mu guards closing and conns. handlers counts the ServeHTTP calls
	// that began before closing was set; Serve waits for them.
	mu       sync.Mutex
	closing  bool
	conns    map[*websocket.Conn]*serverClose
	handlers sync.WaitGroup
}

// serverClose is the closing of a connection by Serve as it stops.
type serverClose struct {
	done chan struct{} // closed when Close has returned
	err  error         // what Close returned; read once done is closed
}

// goingAway is the reason sent with StatusGoingAway when the server stops.
const goingAway = "server shutting down"

// startClosing makes the handler refuse new requests and closes every open
// connection with StatusGoingAway, each in a goroutine of its own because
// a closing handshake may take the whole close timeout. Connections
// accepted from now on are closed by their handler. It returns a wait for
// the closes to end, and how many there are.
func (h *echoHandler) startClosing() (*sync.WaitGroup, int) {
	var wg sync.WaitGroup
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
	for c, sc := range h.conns {
		wg.Go(func() {
			sc.err = c.Close(websocket.StatusGoingAway, goingAway)
			close(sc.done)
		})
	}
	return &wg, len(h.conns)
}

// enter registers a ServeHTTP call, unless the server is closing.
func (h *echoHandler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.handlers.Add(1)
	return true
}

// track records an open connection, unless the server is closing.
func (h *echoHandler) track(c *websocket.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.conns[c] = &serverClose{done: make(chan struct{})}
	return true
}

// untrack forgets a connection. If Serve has begun to close it, untrack
// waits for that and returns the close, or else nil.
func (h *echoHandler) untrack(c *websocket.Conn) *serverClose {
	h.mu.Lock()
	sc, closing := h.conns[c], h.closing
	delete(h.conns, c)
	h.mu.Unlock()
	if !closing {
		return nil
	}
	// Every connection tracked when closing began is being closed.
	<-sc.done
	return sc
}

func (h *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.enter() {
		w.Header().Set("Connection", "close")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.handlers.Done()

	c, err := websocket.Accept(w, r, &h.accept)
	if err != nil {
		h.logger.Warn("handshake refused", "remote", r.RemoteAddr, "path", r.URL.Path, "error", err)
		return
	}
	start := time.Now()

	st := echoStats{total: h.stats}
	var sc *serverClose
	if h.track(c) {
		h.stats.connections.Add(1)
		c.SetReadLimit(h.readLimit)
		err = echo(c, &st)
		sc = h.untrack(c)
	} else {
		// Accepted just as Serve began to stop, too late for startClosing.
		sc = &serverClose{err: c.Close(websocket.StatusGoingAway, goingAway)}
	}
	c.CloseNow()

	attrs := []any{
		"remote", r.RemoteAddr,
		"path", r.URL.Path,
		"subprotocol", c.Subprotocol(),
		"duration", time.Since(start).Round(time.Millisecond),
		"messages", st.messages,
		"bytes", st.bytes,
	}
	h.logger.Info("connection closed", append(attrs, endAttrs(err, sc)...)...)
}

// echoStats counts what one connection echoed, and adds it to total.
type echoStats struct {
	messages int64 // messages echoed whole
	bytes    int64 // payload bytes echoed, of whole and partial messages
	total    *echoCounters
}

// copyBuffers holds the buffers messages are copied through, so that an idle
// connection holds none.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// echo echoes messages until the connection ends and returns why it ended:
// a *websocket.CloseError when the peer closed (or answered this side's
// close), a *websocket.ProtocolError when this side failed the connection,
// or the network's error.
//
// It reads and writes with a context that never ends: the connection ends
// through Close, by the peer or by Serve, and Close bounds its handshake.
func echo(c *websocket.Conn, st *echoStats) error {
	ctx := context.Background()
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		buf := copyBuffers.Get().(*[]byte)
		n, readErr, writeErr := echoMessage(ctx, c, typ, r, *buf)
		copyBuffers.Put(buf)
		st.bytes += n
		st.total.bytes.Add(n)
		if readErr != nil {
			return readErr
		}
		if writeErr != nil {
			return drain(ctx, c)
		}
		st.messages++
		st.total.messages.Add(1)
	}
}

// echoMessage sends the message r reads back as a message of type typ. A
// message that fits buf goes back whole with Write, which leaves it
// uncompressed under the compression threshold; a longer one is streamed
// through a Writer, which compresses whatever it is given.
func echoMessage(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, r io.Reader, buf []byte) (written int64, readErr, writeErr error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF { // the whole message fits buf
			if err := c.Write(ctx, typ, buf[:n]); err != nil {
				return 0, nil, err
			}
			return int64(n), nil, nil
		}
		if err != nil {
			return 0, err, nil
		}
	}
	// buf is full: the message may go on.
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return 0, nil, err
	}
	m, writeErr := w.Write(buf[:n])
	written = int64(m)
	if writeErr == nil {
		var copied int64
		copied, readErr, writeErr = copyMessage(w, r, buf)
		written += copied
	}
	// Close releases the writer even when the copy failed; the message is
	// then cut short, but the connection is ending anyway.
	if err := w.Close(); writeErr == nil {
		writeErr = err
	}
	return written, readErr, writeErr
}

// copyMessage copies a message from r to w through buf, like io.CopyBuffer,
// but tells a failure to read from a failure to write.
func copyMessage(w io.Writer, r io.Reader, buf []byte) (written int64, readErr, writeErr error) {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, nil, werr
			}
		}
		if err == io.EOF {
			return written, nil, nil
		}
		if err != nil {
			return written, err, nil
		}
	}
}

// drain reads, discarding, until the connection ends, and returns why it
// ended. Writing fails once a close frame has been sent, as when Serve
// closes the connection; the peer's answer then arrives only to a reader,
// and a Close in another goroutine waits for one while this handler reads.
// When writing failed because the connection broke, reading fails at once.
func drain(ctx context.Context, c *websocket.Conn) error {
	for {
		if _, _, err := c.Reader(ctx); err != nil {
			return err
		}
	}
}

// endAttrs describes how a connection ended, for the log: err is what
// ended echo, and sc the closing by Serve, if it began one.
func endAttrs(err error, sc *serverClose) []any {
	var ce *websocket.CloseError
	var pe *websocket.ProtocolError
	switch {
	case errors.As(err, &pe):
		return []any{"code", int(pe.Code), "reason", pe.Reason, "error", err}
	case errors.As(err, &ce) && (sc == nil || ce.Code != websocket.StatusGoingAway):
		// The peer closed, before Serve's close if there was one.
		return []any{"code", int(ce.Code), "reason", ce.Reason}
	case sc != nil:
		// The peer's answer to Serve's close, or the end Serve forced
		// when none came.
		attrs := []any{"code", int(websocket.StatusGoingAway), "reason", goingAway}
		if sc.err != nil {
			attrs = append(attrs, "error", sc.err)
		}
		return attrs
	default:
		return []any{"error", err}
	}
}
