package interop

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect" // extended CONNECT in this test binary's HTTP/2 servers
	"github.com/duplexws/duplex/websocket/wstest"
)

// h2Server is our server over TLS with HTTP/2 and HTTP/1.1 on one port:
// it echoes on every WebSocket and records how each arrived.
type h2Server struct {
	http *httptest.Server
	url  string // wss://127.0.0.1:port

	tcpConns atomic.Int64 // TCP connections accepted (ConnState StateNew)

	mu       sync.Mutex
	arrivals []string // "HTTP/2.0 CONNECT websocket" or "HTTP/1.1 GET", one per handshake
	ends     []error  // how each echo loop ended
	handlers sync.WaitGroup
}

// startH2Server starts an h2Server accepting with opts, or with
// permessage-deflate (context takeover) on paths under /deflate; the
// handler stays in place until the Conn ends, as Accept requires over
// HTTP/2. handle, when not nil, serves each Conn instead of the echo
// loop. GET /page serves js/h2_page.html.
func startH2Server(t testing.TB, certs *testCerts, opts *websocket.AcceptOptions, handle func(*http.Request, *websocket.Conn) error) *h2Server {
	t.Helper()
	s := &h2Server{}
	s.http = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Done()
		switch r.URL.Path {
		case "/page":
			http.ServeFile(w, r, "js/h2_page.html")
			return
		case "/favicon.ico":
			http.NotFound(w, r)
			return
		}
		opts := opts
		if strings.HasPrefix(r.URL.Path, "/deflate") {
			opts = &websocket.AcceptOptions{Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover}}
		}
		s.mu.Lock()
		arrival := r.Proto + " " + r.Method
		if p := r.Header.Get(":protocol"); p != "" {
			arrival += " " + p
		}
		s.arrivals = append(s.arrivals, arrival)
		s.mu.Unlock()
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		var end error
		if handle != nil {
			end = handle(r, c)
		} else {
			end = wstest.Echo(context.Background(), c)
			if end == nil {
				c.Close(websocket.StatusNormalClosure, "")
			}
		}
		s.mu.Lock()
		s.ends = append(s.ends, end)
		s.mu.Unlock()
	}))
	s.http.EnableHTTP2 = true
	s.http.TLS = &tls.Config{Certificates: []tls.Certificate{certs.cert}}
	s.http.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.tcpConns.Add(1)
		}
	}
	s.http.StartTLS()
	s.url = "wss" + strings.TrimPrefix(s.http.URL, "https")
	t.Cleanup(s.close)
	return s
}

// close stops the server and waits for its handlers, so for every Conn.
func (s *h2Server) close() {
	s.http.CloseClientConnections()
	s.http.Close()
	s.handlers.Wait()
}

func (s *h2Server) arrived() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.arrivals...)
}

func (s *h2Server) endings() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.ends...)
}
