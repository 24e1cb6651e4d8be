package h2client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/internal/leakcheck"
	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect" // the server side of these tests
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// echoServer is net/http's HTTP/2 server with extended CONNECT on, echoing
// every message; it counts the TCP connections it accepts and the
// WebSockets that came over HTTP/2.
type echoServer struct {
	*httptest.Server
	tcpConns atomic.Int32
	h2Socks  atomic.Int32
}

func startEcho(t *testing.T, handler func(c *websocket.Conn)) *echoServer {
	t.Helper()
	s := &echoServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if r.ProtoMajor == 2 {
			s.h2Socks.Add(1)
		}
		c.SetReadLimit(8 << 20)
		defer c.CloseNow()
		if handler != nil {
			handler(c)
			return
		}
		ctx := context.Background()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, p); err != nil {
				return
			}
		}
	}))
	s.EnableHTTP2 = true
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.tcpConns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *echoServer) transport() *h2client.Transport {
	return &h2client.Transport{TLSConfig: s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
}

func (s *echoServer) wsURL() string { return "wss" + strings.TrimPrefix(s.URL, "https") }

func dial(t *testing.T, ctx context.Context, url string, tr *h2client.Transport) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTP2Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over %s", resp.Proto)
	}
	return c
}

// TestManyConnsOneConnectionLargeMessages: ten WebSockets dialled
// through one Transport are streams of one TCP connection (the server
// counts one, and sees each as HTTP/2), and each echoes 5 MiB messages
// written while the echo of the one before is read, both ways at once,
// which only works if flow control gives credit back on both sides (the
// message is larger than the 4 MiB stream window and the 64 KiB window
// net/http's server starts with).
func TestManyConnsOneConnectionLargeMessages(t *testing.T) {
	srv := startEcho(t, nil)
	tr := srv.transport()
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const conns = 10
	cs := make([]*websocket.Conn, conns)
	for i := range cs {
		cs[i] = dial(t, ctx, srv.wsURL(), tr)
		cs[i].SetReadLimit(8 << 20)
	}
	if n := srv.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections for %d WebSockets, want 1", n, conns)
	}
	if n := tr.Connections(); n != 1 {
		t.Fatalf("the transport dialled %d connections", n)
	}
	// Dial returns once the response has arrived, which may be before the
	// server's handler, past Accept, has counted the last WebSocket.
	for wait := time.Now().Add(5 * time.Second); srv.h2Socks.Load() < conns && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	if n := srv.h2Socks.Load(); n != conns {
		t.Fatalf("the server saw %d WebSockets over HTTP/2, want %d", n, conns)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range cs {
		wg.Go(func() {
			msg := append([]byte{byte(i)}, big...)
			writeDone := make(chan error, 1)
			go func() {
				for range 2 {
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						writeDone <- err
						return
					}
				}
				writeDone <- nil
			}()
			for range 2 {
				_, got, err := c.Read(ctx)
				if err != nil {
					errs <- err
					<-writeDone
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- errors.New("echo differs")
				}
			}
			if err := <-writeDone; err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamsPerConn: with StreamsPerConn 5, twelve WebSockets dialled
// at once take three TCP connections: those that find no room wait for
// the dial in progress instead of each dialling.
func TestStreamsPerConn(t *testing.T) {
	srv := startEcho(t, nil)
	tr := srv.transport()
	tr.StreamsPerConn = 5
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	cs := make([]*websocket.Conn, 12)
	errs := make([]error, 12)
	for i := range cs {
		wg.Go(func() {
			cs[i], _, errs[i] = websocket.Dial(ctx, srv.wsURL(), &websocket.DialOptions{HTTP2Transport: tr})
		})
	}
	wg.Wait()
	for i, c := range cs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		defer c.CloseNow()
	}
	if n := srv.tcpConns.Load(); n != 3 {
		t.Fatalf("%d TCP connections, want 3 (the transport dialled %d)", n, tr.Connections())
	}
}

// TestResetStreamLeavesOthers: a stream the server resets ends its Conn
// with an error that says so, and another Conn on the same connection
// goes on; one the client abandons (CloseNow) is reset too, and the
// server's handler sees its Conn end.
func TestResetStreamLeavesOthers(t *testing.T) {
	handlerEnded := make(chan error, 4)
	srv := startEcho(t, func(c *websocket.Conn) {
		ctx := context.Background()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil {
				handlerEnded <- err
				return
			}
			if string(p) == "reset" {
				panic(http.ErrAbortHandler) // net/http resets the stream
			}
			c.Write(ctx, typ, p)
		}
	})
	srv.Config.ErrorLog = nil
	tr := srv.transport()
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, c := dial(t, ctx, srv.wsURL(), tr), dial(t, ctx, srv.wsURL(), tr), dial(t, ctx, srv.wsURL(), tr)
	defer b.CloseNow()

	if err := a.Write(ctx, websocket.MessageText, []byte("reset")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Read(ctx); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read after the server's reset: %v, want an error that names the reset", err)
	}
	a.CloseNow()

	c.CloseNow()
	select {
	case err := <-handlerEnded:
		if err == nil {
			t.Fatal("the handler's read ended without an error")
		}
	case <-ctx.Done():
		t.Fatal("the server did not see the abandoned stream end")
	}

	if err := b.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := b.Read(ctx); err != nil || string(got) != "still here" {
		t.Fatalf("the other stream: %q, %v", got, err)
	}
	if n := srv.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections, want 1", n)
	}
	if err := b.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}

// TestServerWithoutExtendedConnect: a server whose SETTINGS lack
// SETTINGS_ENABLE_CONNECT_PROTOCOL fails the dial with ErrNoExtendedConnect
// (and websocket.Dial with a message naming the setting); one that does
// not choose h2 in ALPN, with ErrNoHTTP2.
func TestServerWithoutExtendedConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("no-setting", func(t *testing.T) {
		addr, cfg, stop := plainH2Server(t)
		defer stop()
		tr := &h2client.Transport{TLSConfig: cfg}
		defer tr.Close()
		err := tr.Check(ctx, "https", addr)
		if !errors.Is(err, h2client.ErrNoExtendedConnect) {
			t.Fatalf("Check: %v, want ErrNoExtendedConnect", err)
		}
		_, _, err = websocket.Dial(ctx, "wss://"+addr, &websocket.DialOptions{HTTP2Transport: tr})
		if err == nil || !strings.Contains(err.Error(), "SETTINGS_ENABLE_CONNECT_PROTOCOL") {
			t.Fatalf("Dial: %v, want an error naming SETTINGS_ENABLE_CONNECT_PROTOCOL", err)
		}
	})

	t.Run("no-h2", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler()) // HTTP/1.1 only
		defer srv.Close()
		tr := &h2client.Transport{TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
		defer tr.Close()
		err := tr.Check(ctx, "https", strings.TrimPrefix(srv.URL, "https://"))
		if !errors.Is(err, h2client.ErrNoHTTP2) {
			t.Fatalf("Check: %v, want ErrNoHTTP2", err)
		}
	})
}

// plainH2Server is an HTTP/2 server (over TLS, h2 in ALPN) that sends
// SETTINGS without SETTINGS_ENABLE_CONNECT_PROTOCOL, as servers that do
// not take WebSockets over HTTP/2 do, and then waits for the client to
// leave.
func plainH2Server(t *testing.T) (addr string, client *tls.Config, stop func()) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.EnableHTTP2 = true
	srv.StartTLS() // only for its certificate and client configuration
	cert := srv.TLS.Certificates
	client = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	srv.Close()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: cert, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(20 * time.Second))
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(conn, preface); err != nil {
					return
				}
				fr := http2.NewFramer(conn, conn)
				fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
				for {
					if _, err := fr.ReadFrame(); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String(), client, func() { ln.Close(); wg.Wait() }
}

// TestCloseWithOpenStreams: Transport.Close fails the WebSockets still
// open on its connections and returns (its goroutines have ended, which
// TestMain checks): their reads end with an error and their writes fail.
func TestCloseWithOpenStreams(t *testing.T) {
	srv := startEcho(t, nil)
	tr := srv.transport()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := dial(t, ctx, srv.wsURL(), tr), dial(t, ctx, srv.wsURL(), tr)
	defer a.CloseNow()
	defer b.CloseNow()
	readErr := make(chan error, 1)
	go func() {
		_, _, err := a.Read(ctx)
		readErr <- err
	}()
	closed := make(chan struct{})
	go func() {
		tr.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Transport.Close did not return with WebSockets open")
	}
	if err := <-readErr; err == nil {
		t.Fatal("a read went on after the transport closed")
	}
	if err := b.Write(ctx, websocket.MessageText, []byte("late")); err == nil {
		t.Fatal("a write succeeded after the transport closed")
	}
}

// TestDialHTTP2Fallback: with DialOptions.HTTP2Fallback, a server that
// does not speak HTTP/2 gets the WebSocket over HTTP/1.1; without it, Dial
// fails with websocket.ErrHTTP2Unsupported; and a refusal over HTTP/2 is
// not a reason to fall back.
func TestDialHTTP2Fallback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var proto atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil || c.Write(context.Background(), typ, msg) != nil {
				return
			}
		}
	})) // HTTP/1.1 only
	defer srv.Close()
	trust := srv.Client().Transport.(*http.Transport).TLSClientConfig
	wssURL := "wss://" + strings.TrimPrefix(srv.URL, "https://")
	tr := &h2client.Transport{TLSConfig: trust.Clone()}
	defer tr.Close()

	_, _, err := websocket.Dial(ctx, wssURL, &websocket.DialOptions{HTTP2Transport: tr})
	if !errors.Is(err, websocket.ErrHTTP2Unsupported) {
		t.Fatalf("Dial without fallback: %v, want ErrHTTP2Unsupported", err)
	}
	c, _, err := websocket.Dial(ctx, wssURL, &websocket.DialOptions{HTTP2Transport: tr, HTTP2Fallback: true, TLSConfig: trust.Clone()})
	if err != nil {
		t.Fatalf("Dial with fallback: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("over 1.1")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "over 1.1" {
		t.Fatalf("echo after the fallback: %q, %v", msg, err)
	}
	if p := proto.Load(); p != "HTTP/1.1" {
		t.Fatalf("the server saw %v, want HTTP/1.1", p)
	}

	// A server over HTTP/2 with extended CONNECT that refuses the
	// handshake: the refusal stands.
	h2srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	h2srv.EnableHTTP2 = true
	h2srv.StartTLS()
	defer h2srv.Close()
	tr2 := &h2client.Transport{TLSConfig: h2srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	defer tr2.Close()
	_, resp, err := websocket.Dial(ctx, "wss://"+strings.TrimPrefix(h2srv.URL, "https://"), &websocket.DialOptions{HTTP2Transport: tr2, HTTP2Fallback: true})
	if err == nil || errors.Is(err, websocket.ErrHTTP2Unsupported) || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a refusal over HTTP/2 with fallback: %v (response %v), want the 403 itself", err, resp)
	}
}
