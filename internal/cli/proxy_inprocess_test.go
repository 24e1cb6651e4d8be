package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// startProxyCommand runs duplex proxy in-process, under the race detector
// and the package's goroutine leak check, until ctx ends; it returns its
// URL, its printout and its exit status.
func startProxyCommand(t *testing.T, ctx context.Context, args ...string) (url string, stdout *lockedBuffer, exit <-chan int) {
	t.Helper()
	stdout, stderr := new(lockedBuffer), new(lockedBuffer)
	exit = startCommand(t, ctx, strings.NewReader(""), stdout, stderr, append([]string{"proxy", "--listen", "127.0.0.1:0"}, args...)...)
	re := regexp.MustCompile(proxyFirstLine)
	deadline := time.Now().Add(testTimeout)
	for {
		if line, _, ok := strings.Cut(stdout.String(), "\n"); ok {
			m := re.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("first line %q", line)
			}
			return m[1], stdout, exit
		}
		if time.Now().After(deadline) {
			t.Fatalf("duplex proxy printed no address; stderr:\n%s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxyShutdown runs the proxy in-process: two connections, one of
// them compressed, relay while it runs; when its context ends (SIGTERM in
// the binary) both ends of each get 1001 and the command exits 0 with no
// goroutine left (the package's TestMain checks).
func TestProxyShutdown(t *testing.T) {
	ctx := testContext(t)
	echoURL := startEchoCommand(t, "--compress", "context", "--compress-threshold", "0")
	proxyCtx, stop := context.WithCancel(ctx)
	defer stop()
	url, stdout, exit := startProxyCommand(t, proxyCtx, "--to", echoURL, "--delay", "1ms")

	compressed := dial(t, ctx, url, &websocket.DialOptions{
		Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Threshold: -1},
	})
	plain := dial(t, ctx, url, nil)
	for i, c := range []*websocket.Conn{compressed, plain} {
		for range 3 {
			if err := c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("in process ", 20))); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.Read(ctx); err != nil {
				t.Fatalf("connection %d: %v", i+1, err)
			}
		}
	}
	waitFor(t, stdout, "(inflated to 220 bytes) in process")

	stop()
	for i, c := range []*websocket.Conn{compressed, plain} {
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("connection %d after the proxy's shutdown: %v, want close 1001", i+1, err)
		}
	}
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("duplex proxy exit %d after its context ended, want 0", code)
	}
	out := stdout.String()
	for _, n := range []string{"#1", "#2"} {
		for _, want := range []string{
			n + " out close fin len=21 (sent by the proxy): code=1001 (GoingAway) reason=\"proxy shutting down\"",
			n + " in  close fin len=21 (sent by the proxy): code=1001 (GoingAway) reason=\"proxy shutting down\"",
			n + " -- connection closed",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the printout lacks %q:\n%s", want, out)
			}
		}
	}
}

// TestProxyRefusedAndUnreachable checks the handshakes that do not end in
// a WebSocket: the server's refusal reaches the client as it is, and a
// server that cannot be reached is a 502; other requests are passed on.
func TestProxyRefusedAndUnreachable(t *testing.T) {
	ctx := testContext(t)
	echoURL := startEchoCommand(t)
	proxyCtx, stop := context.WithCancel(ctx)
	url, stdout, exit := startProxyCommand(t, proxyCtx, "--to", echoURL)

	// duplex echo refuses a page of another site.
	_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a refused handshake through the proxy: %v, %v; want the server's 403", resp, err)
	}
	waitFor(t, stdout, "#1 out HTTP/1.1 403 Forbidden")

	// A plain request, passed on: duplex echo answers it with 426.
	res, err := http.Get(strings.Replace(url, "ws://", "http://", 1) + "/page?q=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("a plain GET through the proxy: %s, want duplex echo's 426", res.Status)
	}
	waitFor(t, stdout, "http GET /page?q=1 -> 426 Upgrade Required")
	stop()
	waitExit(t, exit)

	// Nothing listens at the target.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "ws://" + ln.Addr().String()
	ln.Close()
	proxyCtx, stop = context.WithCancel(ctx)
	defer stop()
	url, stdout, exit = startProxyCommand(t, proxyCtx, "--to", closed)
	_, resp, err = websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a handshake to a server that is not there: %v, %v; want 502", resp, err)
	}
	waitFor(t, stdout, "#1 -- cannot reach "+closed+": ")
	stop()
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("exit %d", code)
	}
}

// TestProxyPassesHeaders checks what the server receives of a client's
// handshake: its end-to-end headers, credentials included (they are
// hidden only in the printout), without the hop-by-hop ones, and with the
// server's Host, or the client's with --keep-host.
func TestProxyPassesHeaders(t *testing.T) {
	ctx := testContext(t)
	got := make(chan *http.Request, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat"}, InsecureSkipVerifyOrigin: true})
		if err != nil {
			return
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()
	serverURL := "ws" + strings.TrimPrefix(srv.URL, "http")

	for _, keepHost := range []bool{false, true} {
		args := []string{"--to", serverURL}
		if keepHost {
			args = append(args, "--keep-host")
		}
		proxyCtx, stop := context.WithCancel(ctx)
		url, stdout, exit := startProxyCommand(t, proxyCtx, args...)
		addr := strings.TrimPrefix(url, "ws://")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /path?q=1 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n"+
			"X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n"+
			"Authorization: Bearer end-to-end\r\nX-End: 2\r\nOrigin: http://page.example\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "chat" ||
			resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Errorf("the client got %s %v", resp.Status, resp.Header)
		}
		r := <-got
		for name, want := range map[string]string{
			"Authorization": "Bearer end-to-end", "X-End": "2", "Origin": "http://page.example", "Sec-WebSocket-Protocol": "chat",
			"X-Hop": "", "Keep-Alive": "", "Te": "", "Proxy-Authorization": "",
		} {
			if v := r.Header.Get(name); v != want {
				t.Errorf("the server got %s: %q, want %q", name, v, want)
			}
		}
		wantHost := strings.TrimPrefix(srv.URL, "http://")
		if keepHost {
			wantHost = addr
		}
		if r.Host != wantHost || r.URL.RequestURI() != "/path?q=1" {
			t.Errorf("keep-host %v: the server got Host %q and %q, want %q and /path?q=1", keepHost, r.Host, r.URL.RequestURI(), wantHost)
		}
		waitFor(t, stdout, "#1 in  Authorization: [17 bytes hidden]")
		if strings.Contains(stdout.String(), "end-to-end") {
			t.Errorf("the printout shows the credential:\n%s", stdout)
		}
		conn.Close()
		stop()
		waitExit(t, exit)
	}
}

// TestProxyReadLimit checks that a frame over --read-limit is not relayed:
// both ends get 1009 from the proxy.
func TestProxyReadLimit(t *testing.T) {
	ctx := testContext(t)
	echoURL := startEchoCommand(t)
	proxyCtx, stop := context.WithCancel(ctx)
	defer stop()
	url, stdout, exit := startProxyCommand(t, proxyCtx, "--to", echoURL, "--read-limit", "1000")
	c := dial(t, ctx, url, nil)
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || len(got) != 1000 {
		t.Fatalf("a frame of --read-limit bytes: %d bytes back, %v", len(got), err)
	}
	c.Write(ctx, websocket.MessageBinary, make([]byte, 1001))
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("a frame over --read-limit: %v, want close 1009", err)
	}
	waitFor(t, stdout, "#1 -- in: a frame of 1001 bytes is over --read-limit 1000")
	waitFor(t, stdout, "#1 in  close fin len=35 (sent by the proxy): code=1009 (MessageTooBig) reason=\"frame over the proxy's read limit\"")
	waitFor(t, stdout, "(not passed on: the proxy has closed): code=1009") // the server's answer
	waitFor(t, stdout, "#1 -- connection closed")
	stop()
	waitExit(t, exit)
}
