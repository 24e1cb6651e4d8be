package websocket

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// AcceptOptions configures Accept. A nil *AcceptOptions means the zero
// value, whose every field's default is stated on it.
type AcceptOptions struct {
	// Subprotocols lists the subprotocols the server speaks, most preferred
	// first; the first of them the client offers is chosen. Default: none,
	// so the client's offers are declined.
	Subprotocols []string

	// OriginPatterns lists the hosts, besides the request's own, whose
	// pages may connect. Each is a path.Match pattern for the host (and
	// port, when it has one) of the Origin header, such as "example.com"
	// or "*.example.com:8443". Default: only pages of the request's own
	// host. A request without an Origin header does not come from a
	// browser and is always accepted.
	OriginPatterns []string

	// InsecureSkipVerifyOrigin accepts every Origin. It is dangerous: any
	// web page a user visits could then connect with the user's cookies
	// and credentials (cross-site WebSocket hijacking). Prefer
	// OriginPatterns. Default: false.
	InsecureSkipVerifyOrigin bool

	// ReadBufferSize is the size of the connection's read buffer.
	// Default: 4096 bytes; at least 256.
	ReadBufferSize int

	// WriteBufferSize is the size of the buffer a frame is written
	// through, taken from a pool for each write so that idle connections
	// hold none; a Writer sends frames of up to this size. (A client,
	// which must mask a copy, masks a larger frame from Write in a pooled
	// buffer of up to 64 KiB, so that such a message costs a system call
	// per 64 KiB.) Default: 4096 bytes; at least 256.
	WriteBufferSize int

	// PingInterval, when positive, makes the connection ping the peer at
	// this interval and fail with StatusPolicyViolation when a pong does
	// not come within PongTimeout. Pongs are read by whoever reads the
	// connection. Default: 0, no keepalive.
	PingInterval time.Duration

	// PongTimeout is how long keepalive waits for a pong. Default:
	// PingInterval.
	PongTimeout time.Duration

	// CloseTimeout bounds the closing handshake: waiting for the peer's
	// close frame and for the peer to close TCP. Default: 5 seconds.
	CloseTimeout time.Duration

	// MessageTimeout bounds how long one call of Read waits for the rest
	// of a message once part of it has arrived (and likewise a call of
	// Reader, or of its reader's Read, for the rest of a frame), so that a
	// peer trickling a message cannot hold a reader and its buffer for
	// ever. Waiting for a message to begin is not bounded. A peer too slow
	// fails the connection with StatusPolicyViolation (ErrMessageTimeout).
	// Default: 1 minute; negative: no bound.
	MessageTimeout time.Duration

	// MaxFragments caps the frames one data message may span, so that
	// endless empty continuation frames cannot keep a message open; one
	// of more fails the connection with StatusPolicyViolation
	// (ErrTooManyFragments). Default: 1,024, or one for every 256 bytes of
	// the read limit when that is more (no cap without a read limit);
	// negative: no cap.
	MaxFragments int

	// ReadRate limits the frames, control frames included, and the bytes
	// the peer may send per second (ping floods, floods of empty frames).
	// Default: no limit.
	ReadRate RateLimit

	// ReadLimit is the largest message, in bytes, the Conn accepts, as if
	// SetReadLimit had been called before the first read. Default: 0,
	// which means DefaultReadLimit (32 KiB); negative: no limit.
	ReadLimit int64

	// Compression configures permessage-deflate (RFC 7692), used with
	// clients that offer it. Default: disabled.
	Compression CompressionOptions
}

// connConfig is the Conn's configuration the options give.
func (o *AcceptOptions) connConfig() connConfig {
	cfg := newConnConfig(o.ReadBufferSize, o.WriteBufferSize, o.PingInterval, o.PongTimeout, o.CloseTimeout)
	cfg.limits = newReadLimits(o.MessageTimeout, o.MaxFragments, o.ReadRate)
	cfg.readLimit = o.ReadLimit
	return cfg
}

// Accept completes the WebSocket handshake (RFC 6455 section 4.2) of a
// request to a net/http handler and takes over the connection. Headers the
// handler set on w, such as cookies, go out with the response.
//
// A request over HTTP/2 is taken when it is an extended CONNECT (RFC 8441)
// for websocket: the Conn then runs over the request's stream, with every
// option as over HTTP/1.1, and Await waits with a goroutine. Such a Conn
// lives inside its handler: the handler must not return before the Conn
// has ended (Close, CloseNow, or a Read that failed), since returning ends
// the stream (END_STREAM, or RST_STREAM if the client has not ended its
// side); after it has, writes fail. The server must speak HTTP/2 (TLS with
// "h2" in NextProtos, as http.Server.ServeTLS and ListenAndServeTLS set
// up) and advertise SETTINGS_ENABLE_CONNECT_PROTOCOL, which Go 1.27's
// server does only with GODEBUG=http2xconnect=1: import
// github.com/duplexws/duplex/websocket/http2xconnect in the program, or
// set it in the environment. Without it browsers open their WebSockets
// over HTTP/1.1, on connections of their own.
//
// A request that is not a valid WebSocket handshake, or whose origin is not
// allowed, is answered with 400, 403 or 426 and a short plain-text reason,
// and Accept returns an error saying why. The Conn does not outlive the
// server's Shutdown by itself: net/http does not track hijacked
// connections, so the application closes them.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	if r.ProtoMajor == 2 {
		return acceptHTTP2(w, r, opts)
	}
	if status, reason := checkClientHandshake(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, reason, status)
		return nil, errors.New("websocket: " + reason)
	}
	if err := checkOrigin(r, opts); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return nil, err
	}
	subprotocol := selectSubprotocol(r.Header, opts.Subprotocols)
	comp, extHeader := negotiateServer(r.Header, &opts.Compression)

	netConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket: the server cannot take over this connection", http.StatusInternalServerError)
		return nil, errors.New("websocket: hijacking the connection: " + err.Error())
	}
	cfg := opts.connConfig()

	resp := appendResponse(nil, r.Header.Get("Sec-WebSocket-Key"), subprotocol, extHeader, w.Header())
	netConn.SetWriteDeadline(time.Now().Add(cfg.closeTimeout))
	if _, err := netConn.Write(resp); err != nil {
		netConn.Close()
		return nil, errors.New("websocket: writing the handshake response: " + err.Error())
	}
	netConn.SetWriteDeadline(time.Time{})
	c := newConn(netConn, buffered(brw.Reader), false, subprotocol, cfg)
	c.comp = comp
	releaseHijacked(brw)
	return c, nil
}

// releaseHijacked frees the buffers of the bufio.Reader and Writer that
// Hijack handed over. net/http keeps pointers to both, 4 KiB each, for as
// long as the handler runs, which in the common pattern (Accept, then Read
// in a loop) is the life of the connection: 8 KiB of every idle
// connection. They are ours after Hijack, and net/http does nothing more
// with them; the Conn has copied what the reader held (buffered).
func releaseHijacked(brw *bufio.ReadWriter) {
	*brw.Reader = bufio.Reader{}
	*brw.Writer = bufio.Writer{}
}

// checkClientHandshake checks a request against section 4.2.1. It returns
// 0 when the request is a valid opening handshake, or the status to answer
// with and why.
func checkClientHandshake(r *http.Request) (status int, reason string) {
	switch {
	case r.Method != http.MethodGet:
		return http.StatusBadRequest, "handshake must use GET, not " + r.Method
	case !r.ProtoAtLeast(1, 1):
		return http.StatusBadRequest, "handshake needs HTTP/1.1 or later"
	case r.ProtoMajor != 1:
		return http.StatusBadRequest, "WebSocket over HTTP/2 (RFC 8441) is not supported"
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return http.StatusUpgradeRequired, `missing "Connection: Upgrade"`
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return http.StatusUpgradeRequired, `missing "Upgrade: websocket"`
	}
	if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || v[0] != "13" {
		return http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version: only 13 is supported"
	}
	if k := r.Header.Values("Sec-WebSocket-Key"); len(k) != 1 || !validKey(k[0]) {
		return http.StatusBadRequest, "Sec-WebSocket-Key must be one base64-encoded 16-byte value"
	}
	return 0, ""
}

// checkOrigin enforces the origin policy against cross-site WebSocket
// hijacking (section 10.2).
func checkOrigin(r *http.Request, opts *AcceptOptions) error {
	origin := r.Header.Get("Origin")
	if origin == "" || opts.InsecureSkipVerifyOrigin {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return errors.New("websocket: malformed Origin header " + quote(origin))
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	host := strings.ToLower(u.Host)
	for _, pattern := range opts.OriginPatterns {
		ok, err := path.Match(strings.ToLower(pattern), host)
		if err != nil {
			return errors.New("websocket: malformed origin pattern " + quote(pattern))
		}
		if ok {
			return nil
		}
	}
	return errors.New("websocket: origin " + quote(origin) + " is not allowed")
}

func quote(s string) string {
	if len(s) > 100 {
		s = strings.ToValidUTF8(s[:100], "") + "…" // the cut may split a character
	}
	return `"` + s + `"`
}

// selectSubprotocol returns the first of the server's subprotocols that the
// client offered, or "".
func selectSubprotocol(h http.Header, supported []string) string {
	offered := headerTokens(h, "Sec-WebSocket-Protocol")
	for _, p := range supported {
		if slices.Contains(offered, p) {
			return p
		}
	}
	return ""
}

// appendResponse appends the 101 response (section 4.2.2) with the
// handler's own headers.
func appendResponse(b []byte, key, subprotocol, extensions string, extra http.Header) []byte {
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = append(b, acceptKey(key)...)
	b = append(b, "\r\n"...)
	if subprotocol != "" {
		b = append(b, "Sec-WebSocket-Protocol: "...)
		b = append(b, subprotocol...)
		b = append(b, "\r\n"...)
	}
	if extensions != "" {
		b = append(b, "Sec-WebSocket-Extensions: "...)
		b = append(b, extensions...)
		b = append(b, "\r\n"...)
	}
	for name, values := range extra {
		switch http.CanonicalHeaderKey(name) {
		case "Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Content-Length", "Transfer-Encoding":
			continue
		}
		if !isToken(name) {
			continue // as net/http drops it: such a name could inject header lines
		}
		for _, v := range values {
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, strings.NewReplacer("\r", " ", "\n", " ").Replace(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// buffered returns what br read past the handshake, which newConn copies:
// a peer may send its first frames right behind it.
func buffered(br *bufio.Reader) []byte {
	early, _ := br.Peek(br.Buffered())
	return early
}
