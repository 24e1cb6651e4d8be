package websocket

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DialOptions configures Dial. A nil *DialOptions means the zero value,
// whose every field's default is stated on it.
type DialOptions struct {
	// HTTPClient supplies the connection settings of its *http.Transport
	// (Proxy, DialContext, TLSClientConfig), its cookie Jar and its Timeout,
	// which bounds the handshake. Its Transport must be an *http.Transport
	// or nil. Default: http.DefaultClient, which takes proxies from the
	// HTTP_PROXY, HTTPS_PROXY and NO_PROXY environment variables.
	HTTPClient *http.Client

	// HTTPHeader holds extra headers for the handshake request, such as
	// Authorization or Origin.
	HTTPHeader http.Header

	// Subprotocols lists the subprotocols to offer, most preferred first.
	// Default: none.
	Subprotocols []string

	// TLSConfig configures TLS for wss:// URLs. Default: the transport's
	// TLSClientConfig, or the zero config; ServerName defaults to the
	// URL's host.
	TLSConfig *tls.Config

	// NetDialContext opens the TCP connection, to the server or to the
	// proxy. Default: the transport's DialContext, or a net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// ReadBufferSize, WriteBufferSize, PingInterval, PongTimeout,
	// CloseTimeout, MessageTimeout, MaxFragments, ReadRate and ReadLimit
	// mean what they mean in AcceptOptions, with the same defaults: 4096,
	// 4096, no keepalive, PingInterval, 5 seconds, 1 minute, 1,024 (or one
	// per 256 bytes of the read limit), no rate limit, DefaultReadLimit.
	ReadBufferSize  int
	WriteBufferSize int
	PingInterval    time.Duration
	PongTimeout     time.Duration
	CloseTimeout    time.Duration
	MessageTimeout  time.Duration
	MaxFragments    int
	ReadRate        RateLimit
	ReadLimit       int64

	// Compression configures permessage-deflate (RFC 7692): what to offer.
	// The server may decline it. Default: disabled, nothing offered.
	Compression CompressionOptions

	// HTTP2Transport, when set, makes Dial open the WebSocket as a stream
	// of an HTTP/2 connection (RFC 8441): it sends the extended CONNECT
	// request through this transport, and Conns dialled through one
	// transport share its connections to a server, as its requests do.
	// TLS, proxies and dialling are then the transport's: TLSConfig and
	// NetDialContext must be nil (unless HTTP2Fallback, for which they
	// are), and HTTPClient lends only its Jar and Timeout. Dial fails, saying so, when the server did not advertise
	// SETTINGS_ENABLE_CONNECT_PROTOCOL, or falls back to HTTP/1.1 with
	// HTTP2Fallback.
	//
	// The transport must send a CONNECT request whose Header holds
	// ":protocol" as that pseudo-header, and return the response once its
	// headers arrive with the stream open both ways. net/http's Transport
	// cannot in Go 1.27 (it refuses the header name); golang.org/x/net/http2's
	// Transport can when built with the http2legacy tag (without it, in Go
	// 1.27, it hands requests to net/http's). Default: nil, HTTP/1.1.
	HTTP2Transport http.RoundTripper

	// HTTP2Fallback makes Dial, with HTTP2Transport, connect over HTTP/1.1
	// when the server cannot take the WebSocket over HTTP/2 (the error
	// wraps ErrHTTP2Unsupported: no h2 in ALPN, or no
	// SETTINGS_ENABLE_CONNECT_PROTOCOL). The HTTP/1.1 dial then uses
	// HTTPClient, TLSConfig and NetDialContext as it does without
	// HTTP2Transport; they may be set for it. Any other failure is returned
	// as it is. Default: false, no fallback.
	HTTP2Fallback bool
}

// connConfig is the Conn's configuration the options give.
func (o *DialOptions) connConfig() connConfig {
	cfg := newConnConfig(o.ReadBufferSize, o.WriteBufferSize, o.PingInterval, o.PongTimeout, o.CloseTimeout)
	cfg.limits = newReadLimits(o.MessageTimeout, o.MaxFragments, o.ReadRate)
	cfg.readLimit = o.ReadLimit
	return cfg
}

// Dial opens a WebSocket connection to a ws:// or wss:// URL (http:// and
// https:// are taken as the same), through an HTTP or HTTPS proxy when the
// client's settings name one (the tunnel is made with CONNECT). ctx bounds
// the connection and the handshake, not the Conn after.
//
// The handshake response is returned when there is one, also with an error,
// so that a caller can read a refusal's status, headers and body (its first
// 1 KiB).
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, *http.Response, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := parseWebSocketURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	for _, p := range opts.Subprotocols {
		if !isToken(p) {
			return nil, nil, errors.New("websocket: subprotocol " + quote(p) + " is not an HTTP token")
		}
	}
	transport := http.DefaultTransport.(*http.Transport)
	if client.Transport != nil {
		var ok bool
		if transport, ok = client.Transport.(*http.Transport); !ok && opts.HTTP2Transport == nil {
			return nil, nil, errors.New("websocket: DialOptions.HTTPClient.Transport must be an *http.Transport")
		}
	}
	if client.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, client.Timeout)
		defer cancel()
	}
	if opts.HTTP2Transport != nil {
		c, resp, err := dialHTTP2(ctx, u, client, opts.HTTP2Transport, opts)
		if err == nil || !opts.HTTP2Fallback || !errors.Is(err, ErrHTTP2Unsupported) {
			return c, resp, err
		}
		if transport == nil {
			return nil, nil, errors.New("websocket: HTTP/1.1 fallback: DialOptions.HTTPClient.Transport must be an *http.Transport")
		}
		// The server cannot take it over HTTP/2: over HTTP/1.1, then.
	}

	netConn, err := dialNet(ctx, u, transport, opts)
	if err != nil {
		if ctx.Err() != nil {
			err = ctxDialError(ctx) // the dial or TLS error says less
		}
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { netConn.SetDeadline(aLongTimeAgo) })
	cfg := opts.connConfig()
	br, resp, comp, err := handshake(netConn, u, client.Jar, opts, cfg.readBufferSize)
	if !stop() || ctx.Err() != nil {
		netConn.Close()
		return nil, resp, ctxDialError(ctx)
	}
	if err != nil {
		netConn.Close()
		return nil, resp, err
	}
	netConn.SetDeadline(time.Time{})
	c := newConn(netConn, buffered(br), true, resp.Header.Get("Sec-WebSocket-Protocol"), cfg)
	c.comp = comp
	return c, resp, nil
}

// ctxDialError wraps ctx's cause, so that errors.Is(err,
// context.DeadlineExceeded) tells a timeout from a refusal.
func ctxDialError(ctx context.Context) error {
	return fmt.Errorf("websocket: dial: %w", context.Cause(ctx))
}

func parseWebSocketURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("websocket: " + err.Error())
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return nil, errors.New("websocket: URL scheme must be ws or wss, not " + quote(u.Scheme))
	}
	if u.Host == "" {
		return nil, errors.New("websocket: URL has no host: " + quote(rawURL))
	}
	u.Fragment, u.RawFragment = "", "" // section 3: fragments are not part of WebSocket URIs
	return u, nil
}

// handshake sends the opening handshake over netConn and checks the answer
// (section 4.1).
func handshake(netConn net.Conn, u *url.URL, jar http.CookieJar, opts *DialOptions, readSize int) (*bufio.Reader, *http.Response, *compression, error) {
	var keyBytes [16]byte
	crand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])

	req := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     opts.HTTPHeader.Clone(),
		Host:       u.Host,
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	setRaw(req.Header, "Sec-WebSocket-Key", key)
	setRaw(req.Header, "Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		setRaw(req.Header, "Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if offer := clientOffer(&opts.Compression); offer != "" {
		setRaw(req.Header, "Sec-WebSocket-Extensions", offer)
	}
	if jar != nil {
		for _, c := range jar.Cookies(u) {
			req.AddCookie(c)
		}
	}
	if err := req.Write(netConn); err != nil {
		return nil, nil, nil, errors.New("websocket: writing the handshake request: " + err.Error())
	}
	br := bufio.NewReaderSize(netConn, readSize)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, nil, nil, errors.New("websocket: reading the handshake response: " + err.Error())
	}
	if jar != nil {
		if rc := resp.Cookies(); len(rc) > 0 {
			jar.SetCookies(u, rc)
		}
	}
	err = checkServerResponse(resp, key, opts.Subprotocols)
	var comp *compression
	if err == nil {
		comp, err = acceptExtensions(resp.Header, &opts.Compression)
	}
	if err != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, resp, nil, err
	}
	return br, resp, comp, nil
}

// checkServerResponse checks the server's answer to the opening handshake
// (section 4.1, the client's requirements on the response).
func checkServerResponse(resp *http.Response, key string, offered []string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return errors.New("websocket: handshake refused: " + resp.Status)
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		return errors.New(`websocket: handshake response lacks "Upgrade: websocket"`)
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return errors.New(`websocket: handshake response lacks "Connection: Upgrade"`)
	}
	if v := resp.Header.Values("Sec-WebSocket-Accept"); len(v) != 1 || v[0] != acceptKey(key) {
		return errors.New("websocket: handshake response has a wrong Sec-WebSocket-Accept")
	}
	if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) > 0 {
		if len(v) != 1 || !slices.Contains(offered, v[0]) {
			return errors.New("websocket: server chose subprotocol " + quote(strings.Join(v, ", ")) + ", which was not offered")
		}
	}
	return nil // the extensions are checked against the offer by acceptExtensions
}

// dialNet opens the connection the handshake runs over: TCP, through a
// proxy tunnel when one applies, and TLS for https.
func dialNet(ctx context.Context, u *url.URL, transport *http.Transport, opts *DialOptions) (net.Conn, error) {
	dial := opts.NetDialContext
	if dial == nil {
		dial = transport.DialContext
	}
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	addr := hostPort(u)
	var proxyURL *url.URL
	if transport.Proxy != nil {
		var err error
		proxyURL, err = transport.Proxy(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
		if err != nil {
			return nil, errors.New("websocket: choosing a proxy: " + err.Error())
		}
	}
	var conn net.Conn
	var err error
	if proxyURL != nil && proxyURL.Scheme != "http" && proxyURL.Scheme != "https" {
		return nil, errors.New("websocket: proxy scheme " + quote(proxyURL.Scheme) + " is not supported; use http or https")
	}
	if proxyURL != nil {
		conn, err = dialProxy(ctx, dial, proxyURL, addr)
	} else {
		conn, err = dial(ctx, "tcp", addr)
		if err != nil {
			err = errors.New("websocket: dial: " + err.Error())
		}
	}
	if err != nil || u.Scheme != "https" {
		return conn, err
	}
	cfg := opts.TLSConfig
	if cfg == nil {
		cfg = transport.TLSClientConfig
	}
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, errors.New("websocket: TLS handshake: " + err.Error())
	}
	return tc, nil
}

// dialProxy opens a tunnel to addr through an HTTP or HTTPS proxy with
// CONNECT (RFC 9110 section 9.3.6).
func dialProxy(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), proxyURL *url.URL, addr string) (net.Conn, error) {
	conn, err := dial(ctx, "tcp", hostPort(proxyURL))
	if err != nil {
		return nil, errors.New("websocket: dial proxy: " + err.Error())
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	fail := func(msg string) (net.Conn, error) {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctxDialError(ctx)
		}
		return nil, errors.New("websocket: proxy " + proxyURL.Redacted() + ": " + msg)
	}
	if proxyURL.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: proxyURL.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("TLS handshake: " + err.Error())
		}
		conn = tc
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if user := proxyURL.User; user != nil {
		pass, _ := user.Password()
		auth := base64.StdEncoding.EncodeToString([]byte(user.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+auth)
	}
	if err := req.Write(conn); err != nil {
		return fail(err.Error())
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(err.Error())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("CONNECT refused: " + resp.Status)
	}
	if !stop() {
		return fail("dial cancelled")
	}
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		return &prefixConn{Conn: conn, prefixReader: prefixReader{prefix: append([]byte(nil), early...), r: conn}}, nil
	}
	return conn, nil
}

// prefixConn is a net.Conn whose first bytes were already read from it.
type prefixConn struct {
	net.Conn
	prefixReader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.prefixReader.Read(b) }

// hostPort returns u's host with the scheme's default port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// prefixReader reads prefix, then r.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// setRaw sets a header under the spelling RFC 6455 gives it
// ("Sec-WebSocket-Key", where Go's canonical form is "Sec-Websocket-Key"),
// for peers and proxies that compare names case-sensitively, replacing a
// value the caller's HTTPHeader held under either spelling.
func setRaw(h http.Header, name, value string) {
	h.Del(name)
	h[name] = []string{value}
}
