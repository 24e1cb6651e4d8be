//go:build http2legacy

// Our client over HTTP/2 needs a transport that sends extended CONNECT:
// net/http's cannot in Go 1.27, and golang.org/x/net/http2's can only when
// built with the http2legacy tag (otherwise it hands requests to
// net/http's). Run: go test -tags http2legacy -run H2 ./interop/

package interop

//lint:file-ignore SA1019 x/net's http2.Transport is deprecated for net/http's, which cannot send extended CONNECT

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/duplexws/duplex/websocket"
)

// h2Transport returns an HTTP/2 transport that trusts certs. x/net marks
// it deprecated in favour of net/http's, which cannot send extended
// CONNECT: it is the one Go client that can.
func h2Transport(t *testing.T, certs *testCerts) *http2.Transport {
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// TestH2OurClientManyConnsOneTCP: Conns dialled through one transport are
// streams of one TCP connection, each arriving at the server as an
// extended CONNECT over HTTP/2, and each echoes on its own.
func TestH2OurClientManyConnsOneTCP(t *testing.T) {
	certs := newTestCerts(t)
	srv := startH2Server(t, certs, nil, nil)
	tr := h2Transport(t, certs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 20
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, resp, err := websocket.Dial(ctx, srv.url+"/many", &websocket.DialOptions{HTTP2Transport: tr})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Fatalf("dial %d answered %s %s", i, resp.Proto, resp.Status)
		}
		conns[i] = c
	}
	for i, c := range conns {
		msg := []byte(strings.Repeat("x", i) + "!")
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i, c := range conns {
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, []byte(strings.Repeat("x", i)+"!")) {
			t.Fatalf("conn %d read %q, %v", i, got, err)
		}
	}
	for i, c := range conns {
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	if got := srv.tcpConns.Load(); got != 1 {
		t.Fatalf("%d Conns took %d TCP connections, want 1", n, got)
	}
	arrivals := srv.arrived()
	if len(arrivals) != n {
		t.Fatalf("%d handshakes arrived, want %d", len(arrivals), n)
	}
	for _, a := range arrivals {
		if a != "HTTP/2.0 CONNECT websocket" {
			t.Fatalf("a handshake arrived as %q", a)
		}
	}
	srv.close()
	for _, end := range srv.endings() {
		if end != nil {
			t.Fatalf("a server Conn ended with %v, not the client's normal close", end)
		}
	}
}

// TestH2OurClientLargeBothWays: several Conns on one connection write
// 8 MiB messages while reading their echoes; with compression and
// without. HTTP/2 flow control (per stream and for the connection) must
// not stall any of them.
func TestH2OurClientLargeBothWays(t *testing.T) {
	certs := newTestCerts(t)
	for _, compress := range []bool{false, true} {
		name := "plain"
		var acceptOpts *websocket.AcceptOptions
		dialOpts := &websocket.DialOptions{HTTP2Transport: h2Transport(t, certs)}
		if compress {
			name = "deflate"
			acceptOpts = &websocket.AcceptOptions{Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover}}
			dialOpts.Compression = websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover}
		}
		t.Run(name, func(t *testing.T) {
			srv := startH2Server(t, certs, acceptOpts, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const conns, size, msgs = 3, 4 << 20, 2
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for i := range conns {
				wg.Go(func() {
					errs <- echoLarge(ctx, srv.url, dialOpts, byte(i), size, msgs)
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := srv.tcpConns.Load(); got != 1 {
				t.Fatalf("%d TCP connections, want 1", got)
			}
		})
	}
}

// echoLarge dials, writes msgs messages of size bytes from one goroutine
// while another reads their echoes and checks them, then closes.
func echoLarge(ctx context.Context, url string, opts *websocket.DialOptions, seed byte, size, msgs int) error {
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = seed + byte(i*7) + byte(i>>13)
	}
	writeErr := make(chan error, 1)
	go func() {
		for range msgs {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for i := range msgs {
		_, got, err := c.Read(ctx)
		if err != nil {
			return errors.Join(err, <-writeErr)
		}
		if !bytes.Equal(got, msg) {
			return errors.New("echo " + string(rune('0'+i)) + " differs")
		}
	}
	if err := <-writeErr; err != nil {
		return err
	}
	return c.Close(websocket.StatusNormalClosure, "")
}

// TestH2OurClientCloseHandshake: both ways, the close frame is answered
// over the stream, and both ends learn the code and reason.
func TestH2OurClientCloseHandshake(t *testing.T) {
	certs := newTestCerts(t)
	tr := h2Transport(t, certs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("client-closes", func(t *testing.T) {
		serverEnd := make(chan error, 1)
		srv := startH2Server(t, certs, nil, func(r *http.Request, c *websocket.Conn) error {
			_, _, err := c.Read(ctx)
			serverEnd <- err
			return err
		})
		c, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTP2Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Close(4001, "client done"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Close took %v: the server's answer or END_STREAM was late", d)
		}
		var ce *websocket.CloseError
		if err := <-serverEnd; !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "client done" {
			t.Fatalf("the server read %v, want close 4001 \"client done\"", err)
		}
	})

	t.Run("server-closes", func(t *testing.T) {
		srv := startH2Server(t, certs, nil, func(r *http.Request, c *websocket.Conn) error {
			return c.Close(4002, "server done")
		})
		c, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTP2Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		_, _, err = c.Read(ctx)
		if websocket.CloseStatus(err) != 4002 {
			t.Fatalf("the client read %v, want close 4002", err)
		}
		if srv.close(); len(srv.endings()) != 1 || srv.endings()[0] != nil {
			t.Fatalf("the server's Close returned %v, want nil (answered)", srv.endings())
		}
	})
}

// TestH2OurClientStreamReset: a stream reset (RST_STREAM) ends the Conn
// at the other end with an error that says so, and the other streams of
// the connection go on: the server resets one (its handler panics with
// http.ErrAbortHandler), the client another (CloseNow, which sends
// RST_STREAM when the stream has not ended).
func TestH2OurClientStreamReset(t *testing.T) {
	certs := newTestCerts(t)
	tr := h2Transport(t, certs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reset := make(chan struct{})
	clientReset := make(chan error, 1)
	srv := startH2Server(t, certs, nil, func(r *http.Request, c *websocket.Conn) error {
		switch r.Header.Get("X-Role") {
		case "reset":
			<-reset
			panic(http.ErrAbortHandler) // net/http resets the stream
		case "client-resets":
			_, _, err := c.Read(ctx)
			clientReset <- err
			return err
		}
		return echoUntilEnd(ctx, c)
	})
	victim, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTP2Transport: tr, HTTPHeader: http.Header{"X-Role": {"reset"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.CloseNow()
	other, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTP2Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer other.CloseNow()
	close(reset)
	_, _, err = victim.Read(ctx)
	if err == nil || !strings.Contains(err.Error(), "HTTP/2 stream was reset") {
		t.Fatalf("the reset stream's Conn read %v, want an error naming the reset", err)
	}
	if websocket.CloseStatus(err) != -1 {
		t.Fatalf("a reset reads as close status %d", websocket.CloseStatus(err))
	}
	if err := other.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := other.Read(ctx); err != nil || string(got) != "still here" {
		t.Fatalf("the other stream read %q, %v", got, err)
	}

	resetter, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTP2Transport: tr, HTTPHeader: http.Header{"X-Role": {"client-resets"}}})
	if err != nil {
		t.Fatal(err)
	}
	resetter.CloseNow()
	err = <-clientReset
	if err == nil || !strings.Contains(err.Error(), "HTTP/2 stream was reset") {
		t.Fatalf("the server's Conn read %v after the client's reset, want an error naming the reset", err)
	}
	if err := other.Write(ctx, websocket.MessageText, []byte("after the reset")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := other.Read(ctx); err != nil || string(got) != "after the reset" {
		t.Fatalf("the other stream read %q, %v", got, err)
	}
	other.Close(websocket.StatusNormalClosure, "")
}

// startNodeH2Server starts Node's http2 server with ws on its streams
// (js/h2_ws.mjs), advertising extended CONNECT or not, and returns its
// wss:// URL and the lines it prints.
func startNodeH2Server(t *testing.T, certs *testCerts, enableConnect bool) (string, *peerProcess) {
	t.Helper()
	flag := "0"
	if enableConnect {
		flag = "1"
	}
	listening := make(chan string, 1)
	proc := startPeer(t, 60*time.Second, func(line string) {
		if port, ok := strings.CutPrefix(line, "listening "); ok {
			listening <- port
		}
	}, "node", "js/h2_ws.mjs", "server", certs.certFile, certs.keyFile, flag)
	select {
	case port := <-listening:
		return "wss://127.0.0.1:" + port, proc
	case <-proc.exited:
		t.Fatalf("the Node server exited: %v\n%s", proc.err, proc.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("the Node server did not start listening")
	}
	return "", nil
}

// TestH2OurClientToNodeServer: our client against Node's http2 server
// (ws framing on its streams): messages both ways on two Conns sharing
// the transport, the close handshake as Node reports it; and, against a
// Node server that does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL, a
// dial error that names the setting.
func TestH2OurClientToNodeServer(t *testing.T) {
	requireNode(t)
	certs := newTestCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("echo", func(t *testing.T) {
		url, proc := startNodeH2Server(t, certs, true)
		tr := h2Transport(t, certs)
		for i := range 2 {
			c, resp, err := websocket.Dial(ctx, url+"/go", &websocket.DialOptions{HTTP2Transport: tr, Subprotocols: []string{"chat"}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 || c.Subprotocol() != "chat" {
				t.Fatalf("answered over %s with subprotocol %q", resp.Proto, c.Subprotocol())
			}
			c.SetReadLimit(-1)
			for _, size := range []int{0, 125, 126, 65536, 3 << 20} {
				msg := bytes.Repeat([]byte{byte(i), byte(size)}, size/2)
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: %v, %d bytes, %v", size, typ, len(got), err)
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, "go done"); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		proc.stdin.Close() // the server exits
		lines := proc.output(t)
		var closes int
		for _, line := range lines {
			if strings.Contains(line, `"closeCode":1000`) && strings.Contains(line, `"closeReason":"go done"`) && strings.Contains(line, `"messages":5`) && strings.Contains(line, `"protocol":"websocket"`) {
				closes++
			}
		}
		if closes != 2 {
			t.Fatalf("Node saw %d WebSockets of 5 messages closed with 1000 \"go done\", want 2; it printed %q", closes, lines)
		}
	})

	t.Run("no-extended-connect", func(t *testing.T) {
		url, _ := startNodeH2Server(t, certs, false)
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTP2Transport: h2Transport(t, certs)})
		if err == nil {
			c.CloseNow()
			t.Fatal("dial succeeded")
		}
		if !strings.Contains(err.Error(), "SETTINGS_ENABLE_CONNECT_PROTOCOL") {
			t.Fatalf("dial error %q does not name the missing setting", err)
		}
	})
}

// echoUntilEnd echoes whole messages until the connection ends.
func echoUntilEnd(ctx context.Context, c *websocket.Conn) error {
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, b); err != nil {
			return err
		}
	}
}

// TestH2HandlerReturnedEarly: a handler that returns right after Accept,
// as servers written for HTTP/1.1 do, ends the stream; the Conn's writes
// after that fail with an error saying why instead of panicking in
// net/http (which would end the process), and the client learns that the
// stream ended.
func TestH2HandlerReturnedEarly(t *testing.T) {
	certs := newTestCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accepted := make(chan *websocket.Conn, 1)
	var handlers sync.WaitGroup
	srv := httptestTLSServer(t, certs, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- c // and return, leaving c to another goroutine
	}))
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{HTTP2Transport: h2Transport(t, certs)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	sc := <-accepted
	defer sc.CloseNow()
	handlers.Wait()
	err = sc.Write(ctx, websocket.MessageText, []byte("too late"))
	if err == nil || !strings.Contains(err.Error(), "stream has ended") {
		t.Fatalf("a write after the handler returned: %v, want an error saying the stream ended", err)
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("the client read a message from a stream whose handler returned")
	}
}

// httptestTLSServer starts a TLS server with HTTP/2 and certs' certificate.
func httptestTLSServer(t *testing.T, certs *testCerts, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs.cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestH2OurClientOptions: the options of the HTTP/1.1 path work over
// HTTP/2 too: the server's choice of subprotocol, small buffers (frames
// larger than them), keepalive pings answered over the stream while both
// ends read, Ping, and the read limit, which fails the connection with
// 1009.
func TestH2OurClientOptions(t *testing.T) {
	certs := newTestCerts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serverEnd := make(chan error, 1)
	srv := startH2Server(t, certs, &websocket.AcceptOptions{
		Subprotocols:    []string{"second", "first"},
		ReadBufferSize:  256,
		WriteBufferSize: 256,
		PingInterval:    50 * time.Millisecond,
	}, func(_ *http.Request, c *websocket.Conn) error {
		if c.Subprotocol() != "second" {
			return errors.New("server chose " + c.Subprotocol())
		}
		c.SetReadLimit(4096)
		err := echoUntilEnd(ctx, c)
		serverEnd <- err
		return err
	})
	c, _, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{
		HTTP2Transport:  h2Transport(t, certs),
		Subprotocols:    []string{"first", "second"},
		ReadBufferSize:  256,
		WriteBufferSize: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "second" {
		t.Fatalf("subprotocol %q, want the server's choice", c.Subprotocol())
	}
	msg := bytes.Repeat([]byte("0123456789"), 400) // 4,000 bytes: many frames of 256
	for range 3 {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	}
	// Six keepalive intervals with both ends reading: the client answers
	// the server's pings, or the server would fail the connection.
	readCtx, stopReading := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = c.Read(readCtx)
	stopReading()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an idle read ended with %v, not its deadline", err)
	}
	// From here a goroutine reads, which also takes in the pongs.
	type read struct {
		msg []byte
		err error
	}
	reads := make(chan read, 4)
	go func() {
		for {
			_, msg, err := c.Read(ctx)
			reads <- read{msg, err}
			if err != nil {
				return
			}
		}
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("after ping")); err != nil {
		t.Fatal(err)
	}
	if r := <-reads; r.err != nil || string(r.msg) != "after ping" {
		t.Fatalf("echo after the idle time: %q, %v", r.msg, r.err)
	}
	// Over the server's read limit of 4096. The server fails the
	// connection when the frame's header arrives, so the write may be cut
	// short by the close it answers with: with that close's code when the
	// reader took the close frame in first, or as a lost stream when the
	// stream ended under the write first. The reader's error and the
	// server's, below, say 1009.
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 5000)); err != nil {
		t.Logf("the oversized write: %v", err)
	}
	if r := <-reads; websocket.CloseStatus(r.err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after an oversized message: %v, want close 1009", r.err)
	}
	if err := <-serverEnd; websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		var pe *websocket.ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("the server's Conn ended with %v, want the read limit", err)
		}
	}
}
