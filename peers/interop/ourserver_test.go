package interop

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// serverConfigs are the configurations of our server, one handler each,
// at /ws/{name}. Pages of any port of 127.0.0.1 may connect: the browser's
// page is served by the plain server and also opens wss connections to the
// TLS one.
var serverConfigs = map[string]websocket.AcceptOptions{
	"plain":       {OriginPatterns: []string{"127.0.0.1:*"}},
	"subprotocol": {OriginPatterns: []string{"127.0.0.1:*"}, Subprotocols: []string{"duplex.test"}},
	// Threshold -1 compresses every message, down to the empty one.
	"deflate-no-context": {OriginPatterns: []string{"127.0.0.1:*"}, Compression: websocket.CompressionOptions{
		Mode: websocket.CompressionNoContextTakeover, Threshold: -1}},
	"deflate-context": {OriginPatterns: []string{"127.0.0.1:*"}, Compression: websocket.CompressionOptions{
		Mode: websocket.CompressionContextTakeover, Threshold: -1}},
}

// ourServer is our library's server for the client peers: one httptest
// server for ws and one for wss, with the handlers of serverConfigs and,
// under /page/, the files of js/ for the browser.
//
// The mode query parameter picks what a handler does: "" echoes every
// message, streaming it from a Reader to a Writer; "close" closes at once
// with 4001 "bye"; "ping" pings the client three times while echoing, then
// sends "pings answered: 3"; "fragments" first sends a text and a binary
// message of fragmentedSize bytes through a Writer in fragmentCount writes;
// "serve" echoes every message from Conn.Serve's onMessage, the library's
// way to serve many connections (its epoll sets on Linux).
// Each handler reports how its connection went under the id query
// parameter, in results.
type ourServer struct {
	plain, secure *httptest.Server
	certs         *testCerts
	results       mailbox[handlerResult]

	mu       sync.Mutex
	closing  bool
	conns    map[*websocket.Conn]bool
	handlers sync.WaitGroup
}

// handlerResult is how one of our server's connections went.
type handlerResult struct {
	Protocol string
	// End is why the connection ended as the handler saw it: the peer's
	// *websocket.CloseError, or what Close returned in mode "close".
	End             error
	PingErr         error
	WireIn, WireOut int64 // bytes read and written on the connection, TLS included
}

func startOurServer(t *testing.T, certs *testCerts) *ourServer {
	s := &ourServer{certs: certs, conns: make(map[*websocket.Conn]bool)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws/{config}", s.serveWebSocket)
	mux.Handle("GET /page/", http.StripPrefix("/page/", http.FileServer(http.Dir("js"))))
	newServer := func() *httptest.Server {
		hs := httptest.NewUnstartedServer(mux)
		hs.Listener = wireListener{hs.Listener}
		hs.Config.ConnContext = connContext
		return hs
	}
	s.plain = newServer()
	s.plain.Start()
	s.secure = newServer()
	s.secure.TLS = &tls.Config{Certificates: []tls.Certificate{certs.cert}}
	s.secure.StartTLS()
	t.Cleanup(s.close)
	return s
}

// url returns the address of a handler for a connection named id.
func (s *ourServer) url(secure bool, config, mode, id string) string {
	base := "ws" + s.plain.URL[len("http"):]
	if secure {
		base = "wss" + s.secure.URL[len("https"):]
	}
	q := url.Values{"id": {id}}
	if mode != "" {
		q.Set("mode", mode)
	}
	return base + "/ws/" + config + "?" + q.Encode()
}

// pageURL returns the address of the browser's page.
func (s *ourServer) pageURL() string { return s.plain.URL + "/page/browser.html" }

// close ends every connection, waits for the handlers, and stops the
// servers: httptest does not wait for hijacked connections.
func (s *ourServer) close() {
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		c.CloseNow()
	}
	s.mu.Unlock()
	s.handlers.Wait()
	s.plain.Close()
	s.secure.Close()
}

func (s *ourServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.handlers.Add(1)
	return true
}

func (s *ourServer) track(c *websocket.Conn, on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && s.closing {
		return false
	}
	if on {
		s.conns[c] = true
	} else {
		delete(s.conns, c)
	}
	return true
}

func (s *ourServer) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	opts, ok := serverConfigs[r.PathValue("config")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !s.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.handlers.Done()
	id, mode := r.URL.Query().Get("id"), r.URL.Query().Get("mode")
	c, err := websocket.Accept(w, r, &opts)
	if err != nil {
		s.results.put(id, handlerResult{End: err})
		return
	}
	if !s.track(c, true) {
		c.CloseNow()
		return
	}
	res := handlerResult{Protocol: c.Subprotocol()}
	res.End, res.PingErr = serveMode(c, mode)
	c.CloseNow()
	s.track(c, false)
	if wc, ok := r.Context().Value(wireKey{}).(*wireConn); ok {
		res.WireIn, res.WireOut = wc.read.Load(), wc.written.Load()
	}
	s.results.put(id, res)
}

func serveMode(c *websocket.Conn, mode string) (end, pingErr error) {
	c.SetReadLimit(readLimit)
	ctx := context.Background()
	switch mode {
	case "close":
		return c.Close(4001, "bye"), nil
	case "ping":
		var wg sync.WaitGroup
		wg.Go(func() {
			pingErr = pingTimes(c, 3)
			msg := "pings answered: 3"
			if pingErr != nil {
				msg = "ping failed: " + pingErr.Error()
			}
			c.Write(ctx, websocket.MessageText, []byte(msg))
		})
		end = echoMessages(c)
		wg.Wait()
		return end, pingErr
	case "fragments":
		for _, kind := range kinds {
			if err := writeInPieces(ctx, c, kind, payload(kind, fragmentedSize), fragmentCount); err != nil {
				return err, nil
			}
		}
	case "serve":
		return serveMessages(c), nil
	}
	return echoMessages(c), nil
}

// serveMessages echoes every message with Write from Serve's onMessage
// until the connection ends, and returns why it ended: the error a failed
// echo met, or the one onEnd reports.
func serveMessages(c *websocket.Conn) error {
	ended := make(chan error, 1)
	var writeErr error // onMessage's; onEnd comes after every onMessage
	err := c.Serve(func(typ websocket.MessageType, p []byte) {
		if writeErr != nil {
			return
		}
		if writeErr = c.Write(context.Background(), typ, p); writeErr != nil {
			c.CloseNow()
		}
	}, func(err error) {
		if writeErr != nil {
			err = writeErr
		}
		ended <- err
	})
	if err != nil {
		return err
	}
	return <-ended
}

// pingTimes pings n times, one after the other; someone must be reading.
func pingTimes(c *websocket.Conn, n int) error {
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Ping(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// writeInPieces writes a message through a Writer in n writes.
func writeInPieces(ctx context.Context, c *websocket.Conn, kind string, b []byte, n int) error {
	w, err := c.Writer(ctx, messageType(kind))
	if err != nil {
		return err
	}
	return writePieces(w, b, n)
}

// echoMessages echoes every message, streamed from the Reader to a Writer,
// until the connection ends, and returns why it ended.
func echoMessages(c *websocket.Conn) error {
	ctx := context.Background()
	buf := make([]byte, 32<<10)
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		w, err := c.Writer(ctx, typ)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(w, r, buf)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}
