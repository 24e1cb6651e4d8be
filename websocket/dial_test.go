package websocket

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testcert"
)

// hsRawServer accepts TCP connections on loopback and gives each to serve.
// When the test ends it closes the listener and every connection, and
// waits for serve to return. It returns the listening address.
func hsRawServer(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// hsRespond returns a raw server handler that reads the opening handshake
// and answers with response, in which %s stands for the right
// Sec-WebSocket-Accept value; it then waits for the client to hang up.
func hsRespond(response string) func(net.Conn) {
	return func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if strings.Contains(response, "%s") {
			response = fmt.Sprintf(response, acceptKey(req.Header.Get("Sec-WebSocket-Key")))
		}
		io.WriteString(c, response)
		io.Copy(io.Discard, c)
	}
}

// hsStall is a raw server handler that never answers.
func hsStall(c net.Conn) { io.Copy(io.Discard, c) }

// hsTrust returns a TLS config that trusts srv's certificate.
func hsTrust(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func TestDialTLS(t *testing.T) {
	srv, wsURL := hsStart(t, hsServerConfig{tls: true})
	if !strings.HasPrefix(wsURL, "wss://") {
		t.Fatalf("URL %q", wsURL)
	}
	t.Run("HTTPClient", func(t *testing.T) {
		c, _ := hsDial(t, wsURL, &DialOptions{HTTPClient: srv.Client()})
		hsEcho(t, c, "over the client's TLS settings")
	})
	t.Run("TLSConfig", func(t *testing.T) {
		c, _ := hsDial(t, wsURL, &DialOptions{TLSConfig: hsTrust(srv)})
		hsEcho(t, c, "over TLSConfig")
	})
	t.Run("https URL", func(t *testing.T) {
		c, _ := hsDial(t, srv.URL, &DialOptions{TLSConfig: hsTrust(srv)})
		hsEcho(t, c, "https:// is wss://")
	})
	t.Run("untrusted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, resp, err := Dial(ctx, wsURL, nil)
		if err == nil || resp != nil || !strings.Contains(err.Error(), "TLS handshake") {
			t.Fatalf("Dial to an untrusted server = %v, %v, %v; want a TLS error", c, resp, err)
		}
	})
	t.Run("wrong ServerName", func(t *testing.T) {
		cfg := hsTrust(srv)
		cfg.ServerName = "other.example"
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, _, err := Dial(ctx, wsURL, &DialOptions{TLSConfig: cfg}); err == nil {
			t.Fatal("Dial verified the certificate against the wrong name")
		}
	})
}

func TestDialNetDialContext(t *testing.T) {
	srv, wsURL := hsStart(t, hsServerConfig{})
	var calls atomic.Int32
	var addr atomic.Value
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		calls.Add(1)
		addr.Store(network + " " + a)
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}
	c, _ := hsDial(t, wsURL, &DialOptions{NetDialContext: dial})
	hsEcho(t, c, "dialled my way")
	if n, a := calls.Load(), addr.Load(); n != 1 || a != "tcp "+srv.Listener.Addr().String() {
		t.Fatalf("NetDialContext called %d times, last with %v", n, a)
	}
	// The transport's DialContext is the fallback.
	calls.Store(0)
	c, _ = hsDial(t, wsURL, &DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dial}}})
	hsEcho(t, c, "dialled the transport's way")
	if n := calls.Load(); n != 1 {
		t.Fatalf("the transport's DialContext was called %d times", n)
	}
}

func TestDialRequestHeaders(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv, wsURL := hsStart(t, hsServerConfig{inspect: func(w http.ResponseWriter, r *http.Request) {
		got <- r
		http.SetCookie(w, &http.Cookie{Name: "fromserver", Value: "1"})
	}})
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	httpURL, _ := url.Parse(srv.URL)
	jar.SetCookies(httpURL, []*http.Cookie{{Name: "session", Value: "abc"}})
	opts := &DialOptions{
		HTTPClient: &http.Client{Jar: jar},
		HTTPHeader: http.Header{
			"Authorization": {"Bearer t0ken"},
			"X-Trace":       {"a", "b"},
			"Host":          {"virtual.example:8080"},
		},
	}
	c, _ := hsDial(t, wsURL+"/path?q=1", opts)
	hsEcho(t, c, "headers")
	r := <-got
	if r.Host != "virtual.example:8080" {
		t.Errorf("Host %q, want the override", r.Host)
	}
	if r.URL.RequestURI() != "/path?q=1" {
		t.Errorf("request URI %q", r.URL.RequestURI())
	}
	if v := r.Header.Get("Authorization"); v != "Bearer t0ken" {
		t.Errorf("Authorization %q", v)
	}
	if v := r.Header.Values("X-Trace"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
		t.Errorf("X-Trace %q", v)
	}
	if ck, err := r.Cookie("session"); err != nil || ck.Value != "abc" {
		t.Errorf("cookie from the jar: %v, %v", ck, err)
	}
	// The server's cookie went into the jar.
	found := false
	for _, ck := range jar.Cookies(httpURL) {
		found = found || ck.Name == "fromserver"
	}
	if !found {
		t.Errorf("the response's cookie is not in the jar: %v", jar.Cookies(httpURL))
	}
	// The caller's header is not modified.
	if len(opts.HTTPHeader) != 3 || opts.HTTPHeader.Get("Host") == "" {
		t.Errorf("HTTPHeader modified: %v", opts.HTTPHeader)
	}
}

// A refusal comes back as an error and the response, with its body.
func TestDialRefusedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Reason", "banned")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "go away")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if c != nil || err == nil {
		t.Fatalf("Dial = %v, %v; want an error", c, err)
	}
	if !strings.Contains(err.Error(), "403") {
		t.Errorf("error %q does not give the status", err)
	}
	if resp == nil {
		t.Fatal("no response with the error")
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Reason") != "banned" {
		t.Errorf("response %d, X-Reason %q", resp.StatusCode, resp.Header.Get("X-Reason"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "go away" {
		t.Errorf("body %q, %v", body, err)
	}
	resp.Body.Close()

	// Only the first 1 KiB of a long body is kept.
	long := strings.Repeat("x", 5000)
	addr := hsRawServer(t, hsRespond("HTTP/1.1 400 Bad Request\r\nContent-Length: 5000\r\n\r\n"+long))
	_, resp, err = Dial(ctx, "ws://"+addr, nil)
	if err == nil || resp == nil {
		t.Fatalf("Dial = %v, %v", resp, err)
	}
	if body, _ := io.ReadAll(resp.Body); len(body) != 1024 {
		t.Errorf("kept %d bytes of the body, want 1024", len(body))
	}
}

// The client checks the server's 101 (RFC 6455 section 4.1).
func TestDialChecksResponse(t *testing.T) {
	const ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
	tests := []struct {
		name     string
		response string
		offer    []string
		errHas   string // "" when the handshake succeeds
		protocol string
	}{
		{name: "valid", response: ok + "\r\n"},
		{name: "token lists", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Accept: %s\r\n\r\n"},
		{name: "subprotocol offered", response: ok + "Sec-WebSocket-Protocol: chat\r\n\r\n", offer: []string{"superchat", "chat"}, protocol: "chat"},
		{name: "status 200", response: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", errHas: "200"},
		{name: "wrong accept", response: ok[:strings.Index(ok, "%s")] + rfcAccept + "\r\n\r\n", errHas: "Sec-WebSocket-Accept"},
		{name: "no accept", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", errHas: "Sec-WebSocket-Accept"},
		{name: "two accepts", response: ok + "Sec-WebSocket-Accept: %[1]s\r\n\r\n", errHas: "Sec-WebSocket-Accept"},
		{name: "no Upgrade", response: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", errHas: "Upgrade"},
		{name: "Upgrade to another protocol", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", errHas: "Upgrade"},
		{name: "no Connection", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n\r\n", errHas: "Connection"},
		{name: "Connection without upgrade", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: %s\r\n\r\n", errHas: "Connection"},
		{name: "subprotocol not offered", response: ok + "Sec-WebSocket-Protocol: superchat\r\n\r\n", offer: []string{"chat"}, errHas: "not offered"},
		{name: "subprotocol when none offered", response: ok + "Sec-WebSocket-Protocol: chat\r\n\r\n", errHas: "not offered"},
		{name: "two subprotocols", response: ok + "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", offer: []string{"chat", "superchat"}, errHas: "not offered"},
		{name: "extension", response: ok + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", errHas: "extension"},
		{name: "unknown extension", response: ok + "Sec-WebSocket-Extensions: x-custom; a=1\r\n\r\n", errHas: "extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := hsRawServer(t, hsRespond(tt.response))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := Dial(ctx, "ws://"+addr+"/", &DialOptions{Subprotocols: tt.offer})
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.CloseNow()
				if c.Subprotocol() != tt.protocol {
					t.Fatalf("Subprotocol %q, want %q", c.Subprotocol(), tt.protocol)
				}
				return
			}
			if c != nil || err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Dial = %v, %v; want an error about %q", c, err, tt.errHas)
			}
			if resp == nil {
				t.Fatal("no response with the error")
			}
		})
	}
}

// A server that takes the connection and never answers holds Dial only as
// long as the context, or the client's Timeout, allows.
func TestDialStalledHandshake(t *testing.T) {
	addr := hsRawServer(t, hsStall)
	const limit = 200 * time.Millisecond
	tests := []struct {
		name  string
		wsURL string
		ctx   func() (context.Context, context.CancelFunc)
		opts  *DialOptions
	}{
		{"ctx deadline", "ws://" + addr, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), limit)
		}, nil},
		{"ctx cancelled", "ws://" + addr, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(limit, cancel)
			return ctx, cancel
		}, nil},
		{"HTTPClient.Timeout", "ws://" + addr, func() (context.Context, context.CancelFunc) {
			return context.Background(), func() {}
		}, &DialOptions{HTTPClient: &http.Client{Timeout: limit}}},
		{"TLS handshake", "wss://" + addr, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), limit)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			c, _, err := Dial(ctx, tt.wsURL, tt.opts)
			elapsed := time.Since(start)
			if c != nil || err == nil {
				t.Fatalf("Dial = %v, %v; want an error", c, err)
			}
			if elapsed < limit-10*time.Millisecond || elapsed > limit+2*time.Second {
				t.Fatalf("Dial returned after %v, want about %v", elapsed, limit)
			}
			want := context.DeadlineExceeded
			if tt.name == "ctx cancelled" {
				want = context.Canceled
			}
			if !errors.Is(err, want) {
				t.Fatalf("error %q is not %v", err, want)
			}
		})
	}
}

func TestDialBadArguments(t *testing.T) {
	var dialled atomic.Int32
	dial := func(context.Context, string, string) (net.Conn, error) {
		dialled.Add(1)
		return nil, errors.New("should not dial")
	}
	tests := []struct {
		name, wsURL string
		opts        DialOptions
		errHas      string
	}{
		{name: "ftp", wsURL: "ftp://example.com/", errHas: "scheme"},
		{name: "no scheme", wsURL: "example.com:80", errHas: "scheme"},
		{name: "scheme only", wsURL: "ws://", errHas: "no host"},
		{name: "no host", wsURL: "wss:///path", errHas: "no host"},
		{name: "unparsable", wsURL: "ws://exa mple.com/", errHas: "invalid"},
		{name: "subprotocol with a space", wsURL: "ws://example.com", opts: DialOptions{Subprotocols: []string{"a b"}}, errHas: "token"},
		{name: "subprotocol list", wsURL: "ws://example.com", opts: DialOptions{Subprotocols: []string{"a,b"}}, errHas: "token"},
		{name: "empty subprotocol", wsURL: "ws://example.com", opts: DialOptions{Subprotocols: []string{"chat", ""}}, errHas: "token"},
		{name: "subprotocol with CRLF", wsURL: "ws://example.com", opts: DialOptions{Subprotocols: []string{"x\r\nEvil: 1"}}, errHas: "token"},
		{name: "foreign Transport", wsURL: "ws://example.com", opts: DialOptions{HTTPClient: &http.Client{Transport: hsRoundTripper{}}}, errHas: "Transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.NetDialContext = dial
			c, resp, err := Dial(context.Background(), tt.wsURL, &tt.opts)
			if c != nil || resp != nil || err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Dial = %v, %v, %v; want an error about %q", c, resp, err, tt.errHas)
			}
			if !strings.HasPrefix(err.Error(), "websocket: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("dialled %d times for invalid arguments", n)
	}
}

type hsRoundTripper struct{}

func (hsRoundTripper) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("not used")
}

// hsProxy is an HTTP proxy that supports only CONNECT. Whatever host a
// CONNECT names, it connects to that port on 127.0.0.1, so that names only
// it knows can be dialled through it.
type hsProxy struct {
	addr   string
	refuse int // when set, every CONNECT is answered with this status

	mu      sync.Mutex
	targets []string // what each CONNECT asked for
	auths   []string // and its Proxy-Authorization header
}

func hsStartProxy(t *testing.T, refuse int) *hsProxy {
	t.Helper()
	p := &hsProxy{refuse: refuse}
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup // the copies, beside hsRawServer's handlers
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns[c] = true
		return true
	}
	// Registered before hsRawServer's, so it runs after: the tunnels'
	// ends towards the servers close once the clients' ends have.
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	p.addr = hsRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.targets = append(p.targets, req.RequestURI)
		p.auths = append(p.auths, req.Header.Get("Proxy-Authorization"))
		p.mu.Unlock()
		switch {
		case req.Method != http.MethodConnect:
			io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
			return
		case p.refuse != 0:
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nProxy-Authenticate: Basic realm=\"duplex\"\r\nContent-Length: 0\r\n\r\n", p.refuse, http.StatusText(p.refuse))
			return
		}
		_, port, err := net.SplitHostPort(req.RequestURI)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		target, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		if !track(target) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		wg.Go(func() {
			io.Copy(c, target)
			c.Close()
			target.Close()
		})
		io.Copy(target, br) // br holds anything sent behind the CONNECT
		target.Close()
	})
	return p
}

// record returns the CONNECT targets and Proxy-Authorization headers seen.
func (p *hsProxy) record() (targets, auths []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...), append([]string(nil), p.auths...)
}

func TestDialProxy(t *testing.T) {
	plain, plainURL := hsStart(t, hsServerConfig{})
	secure, secureURL := hsStart(t, hsServerConfig{tls: true})
	for _, tt := range []struct {
		name  string
		srv   *httptest.Server
		wsURL string
	}{{"ws", plain, plainURL}, {"wss", secure, secureURL}} {
		t.Run(tt.name, func(t *testing.T) {
			proxy := hsStartProxy(t, 0)
			proxyURL, _ := url.Parse("http://user:pa%3Ass@" + proxy.addr)
			transport := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: hsTrust(secure)}
			c, _ := hsDial(t, tt.wsURL, &DialOptions{HTTPClient: &http.Client{Transport: transport}})
			hsEcho(t, c, "through the proxy")
			targets, auths := proxy.record()
			if len(targets) != 1 || targets[0] != tt.srv.Listener.Addr().String() {
				t.Errorf("proxy saw CONNECT %q, want %q", targets, tt.srv.Listener.Addr())
			}
			if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pa:ss")); len(auths) != 1 || auths[0] != want {
				t.Errorf("Proxy-Authorization %q, want %q", auths, want)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		proxy := hsStartProxy(t, 0)
		proxyURL, _ := url.Parse("http://" + proxy.addr)
		c, _ := hsDial(t, plainURL, &DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}})
		hsEcho(t, c, "anonymous")
		if _, auths := proxy.record(); len(auths) != 1 || auths[0] != "" {
			t.Errorf("Proxy-Authorization %q without credentials", auths)
		}
	})
	t.Run("refused", func(t *testing.T) {
		proxy := hsStartProxy(t, http.StatusProxyAuthRequired)
		proxyURL, _ := url.Parse("http://user:wrong@" + proxy.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := Dial(ctx, plainURL, &DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}})
		if c != nil || err == nil || !strings.Contains(err.Error(), "407") {
			t.Fatalf("Dial = %v, %v; want an error with 407", c, err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q shows the proxy password", err)
		}
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		proxyURL, _ := url.Parse("socks5://127.0.0.1:1")
		_, _, err := Dial(context.Background(), plainURL, &DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}})
		if err == nil || !strings.Contains(err.Error(), "socks5") {
			t.Fatalf("Dial through a socks5 proxy: %v", err)
		}
	})
}

// hsProxyHelperEnv marks the process TestDialProxyFromEnvironment starts.
const hsProxyHelperEnv = "DUPLEX_TEST_PROXY_HELPER"

// TestHelperProxyEnv is not a test: it is the process in which
// TestDialProxyFromEnvironment dials with the proxy its environment names.
func TestHelperProxyEnv(t *testing.T) {
	if os.Getenv(hsProxyHelperEnv) != "1" {
		t.Skip("helper process for TestDialProxyFromEnvironment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, os.Getenv("DUPLEX_TEST_PROXY_TARGET"), nil) // http.DefaultClient: proxies from the environment
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	hsEcho(t, c, "via the environment's proxy")
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
}

// With nil options, Dial takes its proxy from HTTP_PROXY and HTTPS_PROXY.
// net/http reads them once per process and never proxies loopback
// addresses, so a fresh test process dials a name only the proxy resolves.
func TestDialProxyFromEnvironment(t *testing.T) {
	if os.Getenv(hsProxyHelperEnv) != "" {
		t.Skip("in the helper process")
	}
	const host = "duplex-proxy-test.invalid"
	plain, _ := hsStart(t, hsServerConfig{})
	cert, err := testcert.New(host)
	if err != nil {
		t.Fatal(err)
	}
	secure, _ := hsStart(t, hsServerConfig{tls: true, cert: &cert.TLS})
	certFile, _, err := cert.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD", "SSL_CERT_FILE", "SSL_CERT_DIR", hsProxyHelperEnv:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, hsProxyHelperEnv+"=1")

	for _, tt := range []struct {
		name   string
		srv    *httptest.Server
		scheme string
		proxy  string // the variable that names the proxy
	}{
		{"ws", plain, "ws", "HTTP_PROXY"},
		{"wss", secure, "wss", "HTTPS_PROXY"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxy := hsStartProxy(t, 0)
			_, port, _ := net.SplitHostPort(tt.srv.Listener.Addr().String())
			target := net.JoinHostPort(host, port)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProxyEnv$", "-test.v")
			cmd.Env = append(env,
				tt.proxy+"=http://"+proxy.addr,
				"DUPLEX_TEST_PROXY_TARGET="+tt.scheme+"://"+target+"/",
				"SSL_CERT_FILE="+certFile, // the only root the helper trusts
			)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestHelperProxyEnv") {
				t.Fatalf("helper process: %v\n%s", err, out)
			}
			if targets, _ := proxy.record(); len(targets) != 1 || targets[0] != target {
				t.Fatalf("proxy saw CONNECT %q, want %q", targets, target)
			}
		})
	}
}

// The handshake's own headers go out in RFC 6455's spelling, for peers that
// compare names case-sensitively, and a caller's HTTPHeader under Go's
// spelling does not duplicate them.
func TestDialHeaderSpelling(t *testing.T) {
	head := make(chan string, 1)
	addr := hsRawServer(t, func(c net.Conn) {
		var b strings.Builder
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\r\n" {
				break
			}
		}
		head <- b.String()
		io.Copy(io.Discard, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	Dial(ctx, "ws://"+addr+"/", &DialOptions{
		Subprotocols: []string{"chat"},
		Compression:  CompressionOptions{Mode: CompressionContextTakeover},
		HTTPHeader:   http.Header{"Sec-Websocket-Protocol": {"spoofed"}},
	})
	got := <-head
	for _, name := range []string{"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if n := strings.Count(got, "\r\n"+name+": "); n != 1 {
			t.Errorf("%s sent %d times in this spelling:\n%s", name, n, got)
		}
	}
	if strings.Contains(strings.ToLower(got), "spoofed") || strings.Count(strings.ToLower(got), "sec-websocket-protocol:") != 1 {
		t.Errorf("the caller's header duplicated or replaced the offer:\n%s", got)
	}
}
