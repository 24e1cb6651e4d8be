package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// testTimeout bounds each test's network calls.
const testTimeout = 20 * time.Second

// lockedBuffer is a bytes.Buffer safe for the server's goroutines to log
// into while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// echoServer is an EchoServer running in-process for one test.
type echoServer struct {
	url    string // ws://127.0.0.1:port
	log    *lockedBuffer
	cancel context.CancelFunc
	done   chan error

	stopOnce sync.Once
	stopErr  error
}

// startEcho runs srv on a free port of 127.0.0.1 until the test ends or
// stop is called. srv.Logger is set to a buffer the test can read.
func startEcho(t *testing.T, srv *EchoServer) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{
		url:  "ws://" + ln.Addr().String(),
		log:  &lockedBuffer{},
		done: make(chan error, 1),
	}
	srv.Logger = slog.New(slog.NewTextHandler(s.log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log)
		}
	})
	return s
}

// stop cancels Serve's context and returns what Serve returned, or an
// error if it does not return in time.
func (s *echoServer) stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case s.stopErr = <-s.done:
		case <-time.After(testTimeout):
			s.stopErr = errors.New("Serve did not return within " + testTimeout.String())
		}
	})
	return s.stopErr
}

func dial(t *testing.T, ctx context.Context, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// payload returns n bytes for a message of type typ: for text, valid UTF-8
// with multi-byte runes that frame boundaries split.
func payload(typ websocket.MessageType, n int) []byte {
	if typ == websocket.MessageBinary {
		b := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(n)}).Read(b)
		return b
	}
	// Mostly ASCII, like most text, with runes of 2, 3 and 4 bytes.
	const pattern = "Duplex echoes every message back, with its type: échoué ✓ — 𝄞. "
	b := []byte(strings.Repeat(pattern, n/len(pattern)+1)[:n])
	// Replace a rune the cut left incomplete.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				for j := i; j < len(b); j++ {
					b[j] = '.'
				}
			}
			break
		}
	}
	return b
}

func TestEchoSizesAndTypes(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	// 33 KiB is above the library's default read limit. 20 MiB, slow
	// under the race detector, is sent only whole.
	sizes := []int{0, 1 << 10, 33 << 10, 1 << 20}
	for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
		for _, streamed := range []bool{false, true} {
			name := typ.String() + "/Write"
			if streamed {
				name = typ.String() + "/Writer"
			}
			t.Run(name, func(t *testing.T) {
				// Generous: 20 MiB under the race detector on a busy
				// machine takes a while.
				ctx, cancel := context.WithTimeout(t.Context(), 3*testTimeout)
				defer cancel()
				c := dial(t, ctx, srv.url, nil)
				c.SetReadLimit(32 << 20)
				sizes := sizes
				if !streamed {
					sizes = append(sizes, 20<<20)
				}
				for _, size := range sizes {
					want := payload(typ, size)
					// Write while reading: the echo of a message larger
					// than the sockets' buffers comes back before the
					// message has been sent whole.
					sent := make(chan error, 1)
					go func() { sent <- send(ctx, c, typ, want, streamed) }()
					gotTyp, got, err := c.Read(ctx)
					if err := <-sent; err != nil {
						t.Fatalf("%d bytes: write: %v", size, err)
					}
					if err != nil {
						t.Fatalf("%d bytes: read: %v", size, err)
					}
					if gotTyp != typ {
						t.Errorf("%d bytes: echoed as %v, sent as %v", size, gotTyp, typ)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%d bytes: echoed %d bytes that differ from those sent", size, len(got))
					}
				}
				if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// send writes p as one message: whole with Write, or streamed through a
// Writer in 64 KiB pieces, which the client sends as many frames.
func send(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, p []byte, streamed bool) error {
	if !streamed {
		return c.Write(ctx, typ, p)
	}
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		if _, err := w.Write(p[:n]); err != nil {
			w.Close()
			return err
		}
		p = p[n:]
	}
	return w.Close()
}

func TestEchoConcurrentClients(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	ctx := testContext(t)
	const clients, messages = 8, 50
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := dial(t, ctx, srv.url, nil)
		wg.Go(func() {
			for j := range messages {
				want := fmt.Sprintf("client %d message %d", i, j)
				if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
					errs <- err
					return
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if string(got) != want {
					errs <- fmt.Errorf("got %q, want %q", got, want)
					return
				}
			}
			errs <- c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestEchoReadLimit(t *testing.T) {
	const limit = 1024
	srv := startEcho(t, &EchoServer{ReadLimit: limit})

	t.Run("AtLimit", func(t *testing.T) {
		ctx := testContext(t)
		c := dial(t, ctx, srv.url, nil)
		want := payload(websocket.MessageBinary, limit)
		if err := c.Write(ctx, websocket.MessageBinary, want); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", limit, len(got), err)
		}
	})

	// One frame over the limit is refused on its header; a message of
	// small frames only when the frame that crosses the limit arrives,
	// after the server has begun to echo it.
	for _, tc := range []struct {
		name string
		opts *websocket.DialOptions
	}{
		{"OneFrame", nil},
		{"Fragmented", &websocket.DialOptions{WriteBufferSize: 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			c := dial(t, ctx, srv.url, tc.opts)
			if err := send(ctx, c, websocket.MessageText, payload(websocket.MessageText, limit+1), true); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.Read(ctx)
			if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
				t.Fatalf("read after a message over the limit: %v (close status %d), want close %d", err, code, websocket.StatusMessageTooBig)
			}
		})
	}

	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(srv.log.String(), "code=1009"); n != 2 {
		t.Errorf("log has %d lines with code=1009, want 2:\n%s", n, srv.log)
	}
}

// TestEchoDefaultReadLimit announces, with a raw frame header, a message one
// byte over 64 MiB: the server refuses it before any payload.
func TestEchoDefaultReadLimit(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	ctx := testContext(t)
	conn, br := rawDial(t, ctx, srv.url)
	var hdr [14]byte
	hdr[0] = 0x82       // FIN, binary
	hdr[1] = 0x80 | 127 // masked, 64-bit length
	binary.BigEndian.PutUint64(hdr[2:], DefaultEchoReadLimit+1)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	code, _ := readRawClose(t, br)
	if code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %d, want %d", code, websocket.StatusMessageTooBig)
	}
}

func TestEchoSubprotocol(t *testing.T) {
	srv := startEcho(t, &EchoServer{Accept: websocket.AcceptOptions{Subprotocols: []string{"chat.v2", "chat.v1"}}})
	for _, tc := range []struct {
		offered []string
		want    string
	}{
		{[]string{"chat.v1", "chat.v2"}, "chat.v2"}, // the server's preference wins
		{[]string{"chat.v1"}, "chat.v1"},
		{[]string{"other"}, ""},
		{nil, ""},
	} {
		ctx := testContext(t)
		c := dial(t, ctx, srv.url, &websocket.DialOptions{Subprotocols: tc.offered})
		if got := c.Subprotocol(); got != tc.want {
			t.Errorf("offered %q: got subprotocol %q, want %q", tc.offered, got, tc.want)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	srv.stop()
	if !strings.Contains(srv.log.String(), "subprotocol=chat.v2") {
		t.Errorf("log does not show the subprotocol:\n%s", srv.log)
	}
}

func TestEchoOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		accept websocket.AcceptOptions
		origin string
		ok     bool
	}{
		{"NoOrigin", websocket.AcceptOptions{}, "", true},
		{"SameHost", websocket.AcceptOptions{}, "http://SAME", true},
		{"OtherHost", websocket.AcceptOptions{}, "https://evil.example", false},
		{"Pattern", websocket.AcceptOptions{OriginPatterns: []string{"*.example.com"}}, "https://app.example.com", true},
		{"PatternMiss", websocket.AcceptOptions{OriginPatterns: []string{"*.example.com"}}, "https://example.org", false},
		{"Insecure", websocket.AcceptOptions{InsecureSkipVerifyOrigin: true}, "https://evil.example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEcho(t, &EchoServer{Accept: tc.accept})
			ctx := testContext(t)
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", strings.Replace(tc.origin, "SAME", strings.TrimPrefix(srv.url, "ws://"), 1))
			}
			c, resp, err := websocket.Dial(ctx, srv.url, &websocket.DialOptions{HTTPHeader: h})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.Close(websocket.StatusNormalClosure, "")
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("refusal: %v, want status 403", err)
			}
			srv.stop()
			if !strings.Contains(srv.log.String(), "handshake refused") {
				t.Errorf("log does not show the refusal:\n%s", srv.log)
			}
		})
	}
}

func TestEchoShutdown(t *testing.T) {
	srv := startEcho(t, &EchoServer{Accept: websocket.AcceptOptions{CloseTimeout: 500 * time.Millisecond}})
	ctx := testContext(t)

	idle := dial(t, ctx, srv.url, nil)
	busy := dial(t, ctx, srv.url, nil)
	busy.SetReadLimit(-1)
	// busy is in the middle of a message the server is echoing.
	w, err := busy.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload(websocket.MessageBinary, 10<<10)); err != nil {
		t.Fatal(err)
	}
	// mute completes the handshake, then never reads nor answers: only the
	// close timeout ends it.
	mute, _ := rawDial(t, ctx, srv.url)
	_ = mute

	// Let the server register all three before it stops.
	if err := idle.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := idle.Read(ctx); err != nil {
		t.Fatal(err)
	}

	// The clients read, as the close handshake needs.
	readErrs := make(map[string]chan error)
	for name, c := range map[string]*websocket.Conn{"idle": idle, "busy": busy} {
		readErrs[name] = make(chan error, 1)
		go func() {
			var err error
			for err == nil {
				_, _, err = c.Read(ctx)
			}
			readErrs[name] <- err
		}()
	}

	start := time.Now()
	if err := srv.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Serve took %v to return", d)
	}
	for name, errc := range readErrs {
		err := <-errc
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Errorf("%s client: %v, want close %d", name, err, websocket.StatusGoingAway)
		}
	}
	w.Close()

	if _, _, err := websocket.Dial(ctx, srv.url, nil); err == nil {
		t.Error("dial after Serve returned succeeded")
	}
	log := srv.log.String()
	// The count may be less than 3: a connection whose handler had not
	// registered it when the server began to stop closes itself.
	if !strings.Contains(log, "msg=stopping connections=") {
		t.Errorf("log does not say it is stopping:\n%s", log)
	}
	if n := strings.Count(log, `msg="connection closed"`); n != 3 {
		t.Errorf("log has %d close lines, want 3:\n%s", n, log)
	}
	if n := strings.Count(log, `code=1001 reason="server shutting down"`); n != 3 {
		t.Errorf("log has %d lines with code=1001, want 3:\n%s", n, log)
	}
	if n := strings.Count(log, "error="); n != 1 {
		t.Errorf("log has %d errors, want 1, for the client that did not answer:\n%s", n, log)
	}
}

// TestEchoServeListenerError checks that Serve returns when its listener
// fails, and closes the connections it has.
func TestEchoServeListenerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, fail: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- (&EchoServer{Logger: slog.New(slog.DiscardHandler)}).Serve(context.Background(), fl)
	}()
	ctx := testContext(t)
	c := dial(t, ctx, "ws://"+ln.Addr().String(), nil)
	close(fl.fail)
	_, _, err = c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Errorf("client: %v, want close %d", err, websocket.StatusGoingAway)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errListenerFailed) {
			t.Errorf("Serve returned %v, want %v", err, errListenerFailed)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
	}
}

var errListenerFailed = errors.New("listener failed")

// failingListener accepts one connection, then fails once fail is closed.
type failingListener struct {
	net.Listener
	fail     chan struct{}
	accepted bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if !l.accepted {
		l.accepted = true
		return l.Listener.Accept()
	}
	<-l.fail
	return nil, errListenerFailed
}

func TestEchoLogLines(t *testing.T) {
	srv := startEcho(t, &EchoServer{Accept: websocket.AcceptOptions{Subprotocols: []string{"p1"}}})
	ctx := testContext(t)
	c := dial(t, ctx, srv.url+"/some/path", &websocket.DialOptions{Subprotocols: []string{"p1"}})
	for _, msg := range []string{"hello", "world!"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	// The server closes TCP, which ends the client's Close, before it logs
	// the end of the connection: the stop may come first.
	lines := strings.Split(strings.TrimSpace(srv.log.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want one for the connection and one for the stop:\n%s", len(lines), srv.log)
	}
	for _, want := range [][]string{
		{`msg="connection closed"`, "level=INFO", "remote=127.0.0.1:", "path=/some/path", "subprotocol=p1", "duration=", "messages=2", "bytes=11", "code=1000", "reason=bye"},
		{"msg=stopping", "level=INFO", "connections="},
	} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, want[0]) })
		if i < 0 {
			t.Errorf("no log line with %s:\n%s", want[0], srv.log)
			continue
		}
		for _, w := range want[1:] {
			if !strings.Contains(lines[i], w) {
				t.Errorf("log line %q lacks %q", lines[i], w)
			}
		}
		if strings.Contains(lines[i], "error=") {
			t.Errorf("log line %q has an error", lines[i])
		}
	}
}

// rawDial opens a WebSocket connection by hand, for tests that write frames
// the client would not, or that need a peer that does nothing.
func rawDial(t *testing.T, ctx context.Context, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(url, "ws://")
	conn, err := new(net.Dialer).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br
}

// readRawClose reads frames until a close frame and returns its code and
// reason.
func readRawClose(t *testing.T, br *bufio.Reader) (websocket.StatusCode, string) {
	t.Helper()
	for {
		_, op, p := readRawFrame(t, br)
		if op == 0x8 {
			if len(p) < 2 {
				return websocket.StatusNoStatusRcvd, ""
			}
			return websocket.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:])
		}
	}
}
