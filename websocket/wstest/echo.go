package wstest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/duplexws/duplex/websocket"
)

// Echo reads every message from c and writes it back with the same type,
// until the connection or ctx ends. It removes c's read limit and streams
// each message through a 32 KiB buffer, frame by frame, so messages of any
// size are echoed without being held whole; a peer that writes a message
// larger than the network buffers must read the echo while it writes.
//
// Echo returns nil when the peer closed the connection with
// StatusNormalClosure or StatusGoingAway, and otherwise why the connection
// ended. It does not close c.
func Echo(ctx context.Context, c *websocket.Conn) error {
	c.SetReadLimit(-1)
	buf := make([]byte, 32<<10)
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway:
				return nil
			}
			return err
		}
		w, err := c.Writer(ctx, typ)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			// Closing w would send the truncated message as if whole.
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
}

// EchoServer is a WebSocket server on a loopback port that runs Echo on
// every connection: the peer that tests and benchmarks point a client at.
// Its handler accepts any path.
type EchoServer struct {
	// URL is the server's address for Dial: ws://127.0.0.1:port, or
	// wss:// for NewTLSEchoServer.
	URL string

	// HTTP is the underlying server. For a TLS server, pass HTTP.Client()
	// as DialOptions.HTTPClient, or trust HTTP.Certificate().
	HTTP *httptest.Server

	opts   *websocket.AcceptOptions
	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the echo loops
}

// NewEchoServer starts an EchoServer accepting connections with opts,
// which may be nil. Stop it with Close.
func NewEchoServer(opts *websocket.AcceptOptions) *EchoServer {
	return newEchoServer(opts, false)
}

// NewTLSEchoServer starts an EchoServer that speaks TLS (wss://) with a
// certificate for 127.0.0.1 and example.com, as httptest.NewTLSServer does.
func NewTLSEchoServer(opts *websocket.AcceptOptions) *EchoServer {
	return newEchoServer(opts, true)
}

func newEchoServer(opts *websocket.AcceptOptions, tls bool) *EchoServer {
	s := &EchoServer{opts: opts, conns: make(map[*websocket.Conn]struct{})}
	s.HTTP = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if tls {
		s.HTTP.StartTLS()
	} else {
		s.HTTP.Start()
	}
	s.URL = "ws" + strings.TrimPrefix(s.HTTP.URL, "http")
	return s
}

func (s *EchoServer) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, s.opts)
	if err != nil {
		return // Accept has answered
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close(websocket.StatusGoingAway, "server closing")
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	Echo(context.Background(), c)
	c.CloseNow()
}

// Close stops accepting connections, closes those open with
// StatusGoingAway (waiting for each peer's answer as long as the close
// timeout of the options allows) and waits for their echo loops to end.
func (s *EchoServer) Close() {
	s.HTTP.Close() // returns once every connection is closed or taken over by Accept
	s.mu.Lock()
	s.closed = true
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close(websocket.StatusGoingAway, "server closing") })
	}
	wg.Wait()
	s.wg.Wait()
}
