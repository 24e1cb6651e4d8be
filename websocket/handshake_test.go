package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// The key and accept value of the example in RFC 6455 section 1.3.
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// hsRequest returns a valid opening handshake for http://example.com/chat,
// as a server handler receives it.
func hsRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/chat", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", rfcKey)
	return r
}

// hsServerConfig configures hsStart.
type hsServerConfig struct {
	accept *AcceptOptions
	// inspect, when set, runs before Accept: to look at the request or
	// set response headers.
	inspect func(w http.ResponseWriter, r *http.Request)
	tls     bool
	cert    *tls.Certificate // the TLS server's certificate; default httptest's
}

// hsStart starts a server whose handler accepts with cfg.accept and echoes
// messages, and returns its ws:// or wss:// URL. When the test ends it
// closes the server and every connection it accepted, and waits for the
// handlers.
func hsStart(t *testing.T, cfg hsServerConfig) (*httptest.Server, string) {
	t.Helper()
	var (
		mu     sync.Mutex
		conns  = map[*Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.inspect != nil {
			cfg.inspect(w, r)
		}
		c, err := Accept(w, r, cfg.accept)
		if err != nil {
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			c.CloseNow()
			return
		}
		conns[c] = true
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if c.Write(ctx, typ, msg) != nil {
				return
			}
		}
	}))
	// Tests that make TLS handshakes fail on purpose need no log of it.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cfg.tls {
		if cfg.cert != nil {
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cfg.cert}}
		}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.CloseNow()
		}
		mu.Unlock()
		wg.Wait()
	})
	return srv, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// hsEcho sends msg over c and checks that it comes back.
func hsEcho(t *testing.T, c *Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, MessageText, []byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	typ, got, err := c.Read(ctx)
	if err != nil || typ != MessageText || string(got) != msg {
		t.Fatalf("Read = %v, %q, %v; want text %q", typ, got, err, msg)
	}
}

func hsDial(t *testing.T, wsURL string, opts *DialOptions) (*Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := Dial(ctx, wsURL, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

func TestAcceptKey(t *testing.T) {
	if got := acceptKey(rfcKey); got != rfcAccept {
		t.Fatalf("acceptKey(%q) = %q, want %q (RFC 6455 section 1.3)", rfcKey, got, rfcAccept)
	}
}

func TestCheckClientHandshake(t *testing.T) {
	base64Of := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name   string
		modify func(r *http.Request)
		status int
	}{
		{"valid", func(r *http.Request) {}, 0},
		{"token lists", func(r *http.Request) {
			r.Header.Set("Connection", "keep-alive, Upgrade")
			r.Header.Set("Upgrade", "WebSocket")
		}, 0},
		{"tokens in separate lines", func(r *http.Request) {
			r.Header["Connection"] = []string{"keep-alive", "upgrade"}
			r.Header["Upgrade"] = []string{"h2c", "websocket"}
		}, 0},
		{"loose spacing and case", func(r *http.Request) {
			r.Header.Set("Connection", "keep-alive ,  UPGRADE ")
			r.Header.Set("Upgrade", "foo/1, WEBSOCKET")
		}, 0},
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, 400},
		{"HEAD", func(r *http.Request) { r.Method = http.MethodHead }, 400},
		{"HTTP/1.0", func(r *http.Request) { r.Proto, r.ProtoMinor = "HTTP/1.0", 0 }, 400},
		{"HTTP/2", func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0 }, 400},
		{"no Connection", func(r *http.Request) { r.Header.Del("Connection") }, 426},
		{"Connection without upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 426},
		{"Connection with a longer token", func(r *http.Request) { r.Header.Set("Connection", "upgraded") }, 426},
		{"no Upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 426},
		{"Upgrade to another protocol", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 426},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, 426},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"version 13 twice", func(r *http.Request) { r.Header["Sec-Websocket-Version"] = []string{"13", "13"} }, 426},
		{"version list", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "13, 8") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "this is not base64 !!!!!") }, 400},
		{"key of 15 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", base64Of(15)) }, 400},
		{"key of 17 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", base64Of(17)) }, 400},
		{"key unpadded", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", strings.TrimRight(rfcKey, "=")) }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", base64Of(16)) }, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hsRequest()
			tt.modify(r)
			status, reason := checkClientHandshake(r)
			if status != tt.status {
				t.Fatalf("status %d (%q), want %d", status, reason, tt.status)
			}
			if (status == 0) != (reason == "") {
				t.Fatalf("status %d with reason %q", status, reason)
			}
		})
	}
}

// Accept answers an invalid handshake itself, with the status, a short
// plain-text reason and, for 426, the headers section 4.2.2 asks for.
func TestAcceptRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(r *http.Request)
		status int
	}{
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, 400},
		{"HTTP/1.0", func(r *http.Request) { r.Proto, r.ProtoMinor = "HTTP/1.0", 0 }, 400},
		{"no Connection upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 426},
		{"no Upgrade websocket", func(r *http.Request) { r.Header.Del("Upgrade") }, 426},
		{"version 12", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "12") }, 426},
		{"version twice", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "13") }, 426},
		{"bad key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAA") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", rfcKey) }, 400},
		{"foreign origin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		{"null origin", func(r *http.Request) { r.Header.Set("Origin", "null") }, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hsRequest()
			tt.modify(r)
			w := httptest.NewRecorder()
			c, err := Accept(w, r, nil)
			if c != nil || err == nil {
				t.Fatalf("Accept = %v, %v; want an error", c, err)
			}
			hsCheckRefusal(t, w.Result(), tt.status, err)
		})
	}
}

// hsCheckRefusal checks Accept's answer to a handshake it refused.
func hsCheckRefusal(t *testing.T, resp *http.Response, status int, acceptErr error) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	reason := strings.TrimSpace(string(body))
	if reason == "" || len(reason) > 200 || strings.Contains(reason, "<") {
		t.Errorf("body %q is not a short plain-text reason", body)
	}
	if !strings.HasPrefix(acceptErr.Error(), "websocket: ") || !strings.Contains(acceptErr.Error(), strings.TrimPrefix(reason, "websocket: ")) {
		t.Errorf("Accept's error %q does not give the reason %q", acceptErr, reason)
	}
	upgrade, version := resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Version")
	if status == http.StatusUpgradeRequired {
		if upgrade != "websocket" || version != "13" {
			t.Errorf("426 with Upgrade %q and Sec-WebSocket-Version %q, want websocket and 13", upgrade, version)
		}
	} else if upgrade != "" || version != "" {
		t.Errorf("%d with Upgrade %q and Sec-WebSocket-Version %q", status, upgrade, version)
	}
}

// The same over a real server, whose client is a plain HTTP client.
func TestAcceptRejectsOverHTTP(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if c != nil {
			c.CloseNow()
		}
		errc <- err
	}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	acceptErr := <-errc
	if acceptErr == nil {
		t.Fatal("Accept of a plain GET returned no error")
	}
	hsCheckRefusal(t, resp, http.StatusUpgradeRequired, acceptErr)
}

// A ResponseWriter that cannot be hijacked gets a 500, not a panic.
func TestAcceptCannotHijack(t *testing.T) {
	w := httptest.NewRecorder()
	c, err := Accept(w, hsRequest(), nil)
	if c != nil || err == nil || w.Code != http.StatusInternalServerError {
		t.Fatalf("Accept = %v, %v with status %d; want an error and 500", c, err, w.Code)
	}
}

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		name     string
		host     string
		origin   string
		patterns []string
		skip     bool
		ok       bool
		errHas   string
	}{
		{name: "no origin", origin: "", ok: true},
		{name: "same host", origin: "https://example.com", ok: true},
		{name: "same host, other case", host: "Example.COM", origin: "https://eXample.com", ok: true},
		{name: "same host and port", host: "example.com:8080", origin: "http://example.com:8080", ok: true},
		{name: "same host, other port", host: "example.com:8080", origin: "http://example.com:9090", errHas: "not allowed"},
		{name: "other host", origin: "https://evil.example", errHas: "not allowed"},
		{name: "suffix is not same host", origin: "https://notexample.com", errHas: "not allowed"},
		{name: "null", origin: "null", errHas: "malformed Origin"},
		{name: "no scheme", origin: "example.com", errHas: "malformed Origin"},
		{name: "pattern", origin: "https://a.example.com", patterns: []string{"*.example.com"}, host: "api.test", ok: true},
		{name: "pattern, deeper", origin: "https://a.b.example.com", patterns: []string{"*.example.com"}, host: "api.test", ok: true},
		{name: "pattern, other host", origin: "https://example.org", patterns: []string{"*.example.com"}, host: "api.test", errHas: "not allowed"},
		{name: "pattern, bare domain", origin: "https://example.com", patterns: []string{"*.example.com"}, host: "api.test", errHas: "not allowed"},
		{name: "pattern, case", origin: "https://A.Example.COM", patterns: []string{"*.EXAMPLE.com"}, host: "api.test", ok: true},
		{name: "pattern without port, origin with", origin: "https://a.example.com:8443", patterns: []string{"*.example.com"}, host: "api.test", errHas: "not allowed"},
		{name: "pattern with port", origin: "https://a.example.com:8443", patterns: []string{"*.example.com:8443"}, host: "api.test", ok: true},
		{name: "pattern with other port", origin: "https://a.example.com:9443", patterns: []string{"*.example.com:8443"}, host: "api.test", errHas: "not allowed"},
		{name: "second pattern", origin: "https://b.test", patterns: []string{"a.test", "b.test"}, host: "api.test", ok: true},
		{name: "malformed pattern", origin: "https://a.example.com", patterns: []string{"[a-"}, host: "api.test", errHas: "malformed origin pattern"},
		{name: "skip verify", origin: "https://evil.example", skip: true, ok: true},
		{name: "skip verify, null", origin: "null", skip: true, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hsRequest()
			if tt.host != "" {
				r.Host = tt.host
			}
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			opts := &AcceptOptions{OriginPatterns: tt.patterns, InsecureSkipVerifyOrigin: tt.skip}
			err := checkOrigin(r, opts)
			if tt.ok {
				if err != nil {
					t.Fatalf("checkOrigin: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("checkOrigin = %v, want an error about %q", err, tt.errHas)
			}
			// Accept refuses with 403 and says why.
			w := httptest.NewRecorder()
			c, acceptErr := Accept(w, r, opts)
			if c != nil || acceptErr == nil {
				t.Fatalf("Accept = %v, %v; want an error", c, acceptErr)
			}
			hsCheckRefusal(t, w.Result(), http.StatusForbidden, acceptErr)
		})
	}
}

func TestSelectSubprotocol(t *testing.T) {
	tests := []struct {
		name      string
		offered   []string // header lines
		supported []string
		want      string
	}{
		{"server's preference wins", []string{"a, b"}, []string{"b", "a"}, "b"},
		{"client's order does not matter", []string{"b, a"}, []string{"a", "b"}, "a"},
		{"only common one", []string{"x, b, y"}, []string{"a", "b"}, "b"},
		{"several header lines", []string{"x", "y, b"}, []string{"b"}, "b"},
		{"none in common", []string{"x, y"}, []string{"a", "b"}, ""},
		{"server speaks none", []string{"a"}, nil, ""},
		{"client offers none", nil, []string{"a"}, ""},
		{"names are exact", []string{"chat.v1"}, []string{"chat"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.offered {
				h.Add("Sec-WebSocket-Protocol", v)
			}
			if got := selectSubprotocol(h, tt.supported); got != tt.want {
				t.Fatalf("selectSubprotocol = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSubprotocolNegotiated(t *testing.T) {
	_, wsURL := hsStart(t, hsServerConfig{accept: &AcceptOptions{Subprotocols: []string{"v3", "v2", "v1"}}})

	c, resp := hsDial(t, wsURL, &DialOptions{Subprotocols: []string{"v1", "v2"}})
	if c.Subprotocol() != "v2" || resp.Header.Get("Sec-WebSocket-Protocol") != "v2" {
		t.Fatalf("client Subprotocol %q, header %q; want v2, the server's preference",
			c.Subprotocol(), resp.Header.Get("Sec-WebSocket-Protocol"))
	}

	c, resp = hsDial(t, wsURL, &DialOptions{Subprotocols: []string{"v9"}})
	if c.Subprotocol() != "" {
		t.Fatalf("client Subprotocol %q, want none", c.Subprotocol())
	}
	if v, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
		t.Fatalf("response carries Sec-WebSocket-Protocol %q without a common subprotocol", v)
	}
}

// Both ends report the subprotocol.
func TestSubprotocolBothEnds(t *testing.T) {
	for _, tt := range []struct {
		offered, supported []string
		want               string
	}{
		{[]string{"json", "msgpack"}, []string{"msgpack", "json"}, "msgpack"},
		{[]string{"json"}, []string{"msgpack"}, ""},
		{nil, []string{"msgpack"}, ""},
	} {
		serverConn := make(chan *Conn, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(w, r, &AcceptOptions{Subprotocols: tt.supported})
			if err != nil {
				t.Error(err)
			}
			serverConn <- c
		}))
		c, _ := hsDial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), &DialOptions{Subprotocols: tt.offered})
		s := <-serverConn
		srv.Close()
		if s == nil {
			t.FailNow()
		}
		s.CloseNow()
		if c.Subprotocol() != tt.want || s.Subprotocol() != tt.want {
			t.Errorf("offered %q, supported %q: client %q, server %q; want %q",
				tt.offered, tt.supported, c.Subprotocol(), s.Subprotocol(), tt.want)
		}
	}
}

// Headers the handler set on w go out with the 101, except those the
// handshake owns; values cannot smuggle in header lines.
func TestAcceptResponseHeaders(t *testing.T) {
	_, wsURL := hsStart(t, hsServerConfig{inspect: func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s3cr3t", HttpOnly: true})
		w.Header().Set("X-Served-By", "duplex")
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.Header().Set("X-Smuggle", "a\r\nX-Injected: 1")
		// Nor can names; net/http drops those that are not tokens.
		w.Header()["X-A: b\r\nX-Injected-By-Name"] = []string{"1"}
		// The handshake's own headers are not the handler's to set.
		w.Header().Set("Sec-WebSocket-Accept", "bogus")
		w.Header().Set("Upgrade", "h2c")
		w.Header().Set("Content-Length", "10")
	}})
	c, resp := hsDial(t, wsURL, nil)
	hsEcho(t, c, "headers")
	if got := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(got, "session=s3cr3t") {
		t.Errorf("Set-Cookie %q", got)
	}
	if got := resp.Header.Get("X-Served-By"); got != "duplex" {
		t.Errorf("X-Served-By %q", got)
	}
	if got := resp.Header.Values("X-Multi"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("X-Multi %q", got)
	}
	if got := resp.Header.Get("X-Injected"); got != "" {
		t.Errorf("a header value injected the header X-Injected: %q", got)
	}
	if got := resp.Header.Get("X-Injected-By-Name"); got != "" {
		t.Errorf("a header name injected the header X-Injected-By-Name: %q", got)
	}
	if got := resp.Header.Values("Upgrade"); len(got) != 1 || got[0] != "websocket" {
		t.Errorf("Upgrade %q", got)
	}
	if _, ok := resp.Header["Content-Length"]; ok {
		t.Errorf("Content-Length %q in a 101", resp.Header.Get("Content-Length"))
	}
}

// The 101 on the wire, for the request of RFC 6455 section 1.2.
func TestAcceptRawResponse(t *testing.T) {
	srv, _ := hsStart(t, hsServerConfig{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /chat HTTP/1.1\r\n"+
		"Host: "+srv.Listener.Addr().String()+"\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+rfcKey+"\r\n"+
		"Sec-WebSocket-Protocol: chat, superchat\r\n"+
		"Sec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 101 Switching Protocols\r\n" {
		t.Fatalf("status line %q, %v", status, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(status), br)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != rfcAccept {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, rfcAccept)
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
		t.Errorf("Upgrade %q, Connection %q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
	}
	if _, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
		t.Errorf("subprotocol %q chosen by a server that speaks none", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
}

// Frames a client sends in the same write as its handshake reach the
// Conn: the HTTP server read them into its buffer, and Accept keeps them.
func TestAcceptKeepsEarlyFrames(t *testing.T) {
	srv, _ := hsStart(t, hsServerConfig{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// A masked text frame "Hello", as in RFC 6455 section 5.7, then a
	// masked ping in the same write.
	frames := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	frames = append(frames, 0x89, 0x82, 1, 2, 3, 4, 'p'^1, 'g'^2)
	if _, err := conn.Write(append([]byte(req), frames...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v, %v", resp, err)
	}
	// The echo of "Hello", then the pong, which the server sends when its
	// next Read meets the ping.
	want := []byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o', 0x8a, 0x02, 'p', 'g'}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("server sent % x, %v; want % x", got, err, want)
	}
}
