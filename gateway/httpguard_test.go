package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// loopbackProxies trusts the proxy headers of httptest's clients.
var loopbackProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// frontServer is a gateway served by its own HTTPServer, as duplex serve
// serves it, on a loopback port.
type frontServer struct {
	*Server
	addr string
}

func newFrontServer(t *testing.T, mutate func(*Config)) *frontServer {
	t.Helper()
	cfg := Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{AllowAnonymous: true},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		<-done
	})
	return &frontServer{Server: srv, addr: ln.Addr().String()}
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// statusOf writes req on c and reads the response's status code.
func statusOf(t *testing.T, c net.Conn, req string) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// closedWithin reports whether the server ends c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func upgradeRequest(addr, extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Protocol: " + Subprotocol + "\r\n" + extra + "\r\n"
}

// TestHTTPServerHeaderCap: headers over MaxHeaderBytes get 431, on the
// upgrade and on other requests; below it the upgrade succeeds.
func TestHTTPServerHeaderCap(t *testing.T) {
	fs := newFrontServer(t, nil)
	big := "X-Big: " + strings.Repeat("b", 24<<10) + "\r\n"
	small := "X-Small: " + strings.Repeat("s", 8<<10) + "\r\n"
	if st := statusOf(t, dialFrom(t, "127.0.0.1", fs.addr), upgradeRequest(fs.addr, big)); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("upgrade with a 24 KiB header: %d, want 431", st)
	}
	if st := statusOf(t, dialFrom(t, "127.0.0.1", fs.addr), "GET /healthz HTTP/1.1\r\nHost: x\r\n"+big+"\r\n"); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET /healthz with a 24 KiB header: %d, want 431", st)
	}
	if st := statusOf(t, dialFrom(t, "127.0.0.1", fs.addr), upgradeRequest(fs.addr, small)); st != http.StatusSwitchingProtocols {
		t.Errorf("upgrade with an 8 KiB header: %d, want 101", st)
	}
}

// TestAuthHeaderKeepsOnlyCredentials: a session keeps Cookie and
// Authorization for the Authenticate hook, and nothing without one.
func TestAuthHeaderKeepsOnlyCredentials(t *testing.T) {
	h := http.Header{"Cookie": {"a=1", "b=2"}, "Authorization": {"Bearer x"}, "X-Big": {strings.Repeat("b", 8<<10)}, "User-Agent": {"ua"}}
	got := authHeader(h, true)
	if len(got) != 2 || len(got["Cookie"]) != 2 || got.Get("Authorization") != "Bearer x" {
		t.Fatalf("with the hook: %v", got)
	}
	if got := authHeader(h, false); got != nil {
		t.Fatalf("without the hook: %v", got)
	}

	// Through a real handshake: the hook sees the cookie, not the rest.
	seen := make(chan http.Header, 1)
	fs := newFrontServer(t, func(cfg *Config) {
		cfg.Hooks.Authenticate = func(ctx context.Context, token string, header http.Header) (*Credentials, error) {
			seen <- header
			return &Credentials{User: "u"}, nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+fs.addr+"/ws", &websocket.DialOptions{
		Subprotocols: []string{Subprotocol},
		HTTPHeader:   http.Header{"Cookie": {"session=s"}, "X-Big": {strings.Repeat("b", 4<<10)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"method":"connect"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-seen:
		if h.Get("Cookie") != "session=s" || h.Get("X-Big") != "" || len(h) != 1 {
			t.Fatalf("the hook saw %v", h)
		}
	case <-ctx.Done():
		t.Fatal("the hook was not called")
	}
}

// TestHTTPServerDeadlines: a request body that trickles is cut at
// ReadTimeout, a silent kept-alive connection at IdleTimeout, and neither
// deadline reaches an upgraded connection.
func TestHTTPServerDeadlines(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	fs := newFrontServer(t, func(cfg *Config) {
		cfg.Limits.ReadTimeout = readTimeout
		cfg.Limits.IdleTimeout = readTimeout
		cfg.PingInterval = -1 // no traffic from the server keeps the upgraded one busy
	})
	for _, path := range []string{"/api/publish", "/healthz"} {
		c := dialFrom(t, "127.0.0.1", fs.addr)
		io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: "+fs.addr+"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		start := time.Now()
		if !closedWithin(c, 10*readTimeout) {
			t.Errorf("%s: a body of 1 byte in 1000 still open after %v", path, 10*readTimeout)
		} else if took := time.Since(start); took < readTimeout/2 {
			t.Errorf("%s: closed after %v, before the read timeout", path, took)
		}
	}
	// Kept alive after one request, then silent.
	c := dialFrom(t, "127.0.0.1", fs.addr)
	if st := statusOf(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
	if !closedWithin(c, 10*readTimeout) {
		t.Errorf("an idle kept-alive connection still open after %v", 10*readTimeout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+fs.addr+"/ws", &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	time.Sleep(3 * readTimeout) // past both deadlines, silent
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"id":1,"method":"connect"}`)); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"id":1`) {
		t.Fatalf("upgraded connection after %v of silence: %q %v", 3*readTimeout, data, err)
	}
}

// TestPendingConnectionCaps: connections that have not upgraded are capped
// per peer address, the others' still served; upgrading frees the slot; a
// trusted proxy is exempt from the per-address cap but not from the total.
func TestPendingConnectionCaps(t *testing.T) {
	const perIP = 3
	fs := newFrontServer(t, func(cfg *Config) {
		cfg.Limits.MaxPendingConnectionsPerIP = perIP
		cfg.Limits.MaxPendingConnections = 2 * perIP
		cfg.Limits.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	})
	var held []net.Conn
	for range perIP {
		held = append(held, dialFrom(t, "127.0.0.1", fs.addr))
	}
	waitFor(t, "3 pending connections", func() bool { return fs.pending.total.Load() == perIP })
	over := dialFrom(t, "127.0.0.1", fs.addr)
	if !closedWithin(over, 2*time.Second) {
		t.Fatalf("connection %d from one address was not closed", perIP+1)
	}
	// Another address is served meanwhile.
	other := dialFrom(t, "127.0.0.2", fs.addr)
	if st := statusOf(t, other, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"); st != http.StatusOK {
		t.Fatalf("readyz from another address: %d", st)
	}
	other.Close()
	if n := readValue(fs.metrics.limitHits.With(limitPendingConnectionsPerIP)); n != 1 {
		t.Errorf("limit hits %v, want 1", n)
	}

	// An upgraded connection no longer counts: closing the held ones and
	// upgrading more than the cap from one address works.
	for _, c := range held {
		c.Close()
	}
	waitFor(t, "no pending connections", func() bool { return fs.pending.total.Load() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 * perIP {
		ws, _, err := websocket.Dial(ctx, "ws://"+fs.addr+"/ws", &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			t.Fatalf("upgrade %d: %v", i, err)
		}
		defer ws.CloseNow()
	}
	waitFor(t, "the upgraded ones released", func() bool { return fs.pending.total.Load() == 0 })

	// The trusted proxy holds more than the per-address cap, up to the
	// total.
	for i := range 2 * perIP {
		c := dialFrom(t, "127.0.0.9", fs.addr)
		if st := statusOf(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); st != http.StatusOK {
			t.Fatalf("proxy connection %d: %d", i, st)
		}
	}
	if !closedWithin(dialFrom(t, "127.0.0.9", fs.addr), 2*time.Second) {
		t.Fatal("a connection over the total cap was not closed")
	}
	if n := readValue(fs.metrics.limitHits.With(limitPendingConnections)); n != 1 {
		t.Errorf("total limit hits %v, want 1", n)
	}
}

// TestClientIPTrustedProxies: the header is believed only from a trusted
// proxy, and then its rightmost address that is not a trusted proxy is the
// client's.
func TestClientIPTrustedProxies(t *testing.T) {
	s := &Server{cfg: Config{Limits: Limits{
		ClientIPHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}}}
	for _, tc := range []struct {
		name, peer string
		header     []string
		want       string
	}{
		{"untrusted peer, header ignored", "203.0.113.5:1000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer, no header", "10.1.2.3:1000", nil, "10.1.2.3"},
		{"trusted peer, one address", "10.1.2.3:1000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written addresses on the left are ignored", "10.1.2.3:1000", []string{"127.0.0.3, 192.0.2.9, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops on the right are skipped", "10.1.2.3:1000", []string{"192.0.2.9, 198.51.100.1, 10.0.0.7"}, "198.51.100.1"},
		{"several header lines: the last is nearest", "10.1.2.3:1000", []string{"192.0.2.9", "198.51.100.1, 10.0.0.7"}, "198.51.100.1"},
		{"all trusted: the leftmost", "10.1.2.3:1000", []string{"10.0.0.8, 10.0.0.7"}, "10.0.0.8"},
		{"garbage on the right: the proxy", "10.1.2.3:1000", []string{"198.51.100.1, bogus"}, "10.1.2.3"},
		{"IPv6 peer trusted", "[::1]:1000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:1000", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
		for _, v := range tc.header {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.clientIP(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestAPIRefusesBrowsers: without an API key, requests a web page could
// make a browser send are refused and publish nothing; a backend's JSON
// request is served.
func TestAPIRefusesBrowsers(t *testing.T) {
	ts := newTestServer(t, nil)
	port := ts.http.URL[strings.LastIndexByte(ts.http.URL, ':')+1:]
	body := `{"channel":"chat:api","data":1}`
	for _, tc := range []struct {
		name   string
		header http.Header
		host   string
		want   int
	}{
		{"text/plain (no preflight)", http.Header{"Content-Type": {"text/plain"}}, "", http.StatusUnsupportedMediaType},
		{"form", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "", http.StatusUnsupportedMediaType},
		{"no content type", nil, "", http.StatusUnsupportedMediaType},
		{"with an Origin", http.Header{"Content-Type": {"application/json"}, "Origin": {"http://evil.example"}}, "", http.StatusForbidden},
		{"rebound Host", http.Header{"Content-Type": {"application/json"}}, "evil.example:" + port, http.StatusForbidden},
		{"JSON with a charset, localhost", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, "localhost:" + port, http.StatusOK},
	} {
		req, _ := http.NewRequest("POST", ts.http.URL+"/api/publish", strings.NewReader(body))
		for k, v := range tc.header {
			req.Header[k] = v
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	// Only the last one published.
	if st, body := apiPost(t, ts.http.URL, "history", msg{"channel": "chat:api"}, nil); st != http.StatusOK || body.num("offset") != 1 {
		t.Fatalf("history: %d %v, want offset 1", st, body)
	}
	if n := readValue(ts.metrics.limitHits.With(limitAPIBrowser)); n != 5 {
		t.Errorf("api_browser hits %v, want 5", n)
	}
}

// TestMetricsProtection: /metrics needs the bearer token when one is
// configured, and is served to loopback clients only otherwise (a client
// a trusted proxy forwards is not loopback).
func TestMetricsProtection(t *testing.T) {
	get := func(url string, header http.Header) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url+"/metrics", nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := newTestServer(t, func(cfg *Config) { cfg.MetricsToken = "m3trics" })
	for _, tc := range []struct {
		header http.Header
		want   int
	}{
		{nil, http.StatusUnauthorized},
		{http.Header{"Authorization": {"Bearer wrong"}}, http.StatusUnauthorized},
		{http.Header{"Authorization": {"m3trics"}}, http.StatusUnauthorized},
		{http.Header{"Authorization": {"Bearer m3trics"}}, http.StatusOK},
	} {
		if st := get(tok.http.URL, tc.header); st != tc.want {
			t.Errorf("token server, %v: %d, want %d", tc.header, st, tc.want)
		}
	}
	open := newTestServer(t, func(cfg *Config) {
		cfg.Limits.ClientIPHeader = "X-Real-IP"
		cfg.Limits.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	if st := get(open.http.URL, nil); st != http.StatusOK {
		t.Errorf("loopback without a token: %d, want 200", st)
	}
	if st := get(open.http.URL, http.Header{"X-Real-Ip": {"203.0.113.4"}}); st != http.StatusForbidden {
		t.Errorf("a remote client through the loopback proxy: %d, want 403", st)
	}
	if st := get(open.http.URL, http.Header{"X-Real-Ip": {strconv.Quote("x")}}); st != http.StatusOK {
		t.Errorf("garbage in the header (the proxy itself): %d, want 200", st)
	}
}

// An extended CONNECT over HTTP/2 (RFC 8441) to /ws is served now, not
// refused with 505: gateway/h2_test.go.
