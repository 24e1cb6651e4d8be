package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// WebSocket over HTTP/2, RFC 8441: the handshake is an extended CONNECT
// request, whose :protocol pseudo-header names websocket (section 4), and
// its 2xx answer; the WebSocket frames are then the DATA of the request's
// stream, both ways. Sec-WebSocket-Key, Sec-WebSocket-Accept, Upgrade and
// Connection are not used; Sec-WebSocket-Version, -Protocol and
// -Extensions and Origin are as in RFC 6455 (section 5). Closing is
// RFC 6455's closing handshake on the stream, then END_STREAM, which takes
// the place of TCP's FIN; RST_STREAM takes the place of a TCP reset
// (section 5.1).

// acceptHTTP2 is Accept for a request that came over HTTP/2.
func acceptHTTP2(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	if status, reason := checkExtendedConnect(r); status != 0 {
		http.Error(w, reason, status)
		return nil, errors.New("websocket: " + reason)
	}
	if err := checkOrigin(r, opts); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return nil, err
	}
	subprotocol := selectSubprotocol(r.Header, opts.Subprotocols)
	comp, extHeader := negotiateServer(r.Header, &opts.Compression)
	cfg := opts.connConfig()

	h := w.Header()
	for _, name := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept", "Content-Length", "Transfer-Encoding"} {
		h.Del(name)
	}
	h.Del("Sec-WebSocket-Protocol")
	h.Del("Sec-WebSocket-Extensions")
	if subprotocol != "" {
		h.Set("Sec-WebSocket-Protocol", subprotocol)
	}
	if extHeader != "" {
		h.Set("Sec-WebSocket-Extensions", extHeader)
	}
	rc := http.NewResponseController(w)
	// The server's ReadTimeout and WriteTimeout apply to each stream; a
	// WebSocket lives longer than a request.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, errors.New("websocket: sending the HTTP/2 handshake response: " + err.Error())
	}

	var local net.Addr = h2Addr("")
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = addrOf(a)
	}
	s := newH2Stream(r.Body, w, rc.Flush,
		func() {
			// A past write deadline resets the stream; once the context
			// has ended the stream has too, and the handler may have
			// returned, after which net/http must not be called.
			if r.Context().Err() == nil {
				rc.SetWriteDeadline(aLongTimeAgo)
			}
		},
		nil, // END_STREAM goes out when the handler returns
		nil, cfg.readBufferSize, local, h2Addr(r.RemoteAddr))
	// The context ends before net/http closes the body, when the handler
	// returns: a Write that follows a failed read sees it ended.
	s.ctx = r.Context()
	c := newConn(s, nil, false, subprotocol, cfg)
	c.comp = comp
	return c, nil
}

// checkExtendedConnect checks an HTTP/2 request against RFC 8441 section
// 4 and 5. It returns 0 when the request opens a WebSocket, or the status
// to answer with and why.
func checkExtendedConnect(r *http.Request) (status int, reason string) {
	switch {
	case r.Method != http.MethodConnect:
		return http.StatusBadRequest, "over HTTP/2 a WebSocket opens with extended CONNECT (RFC 8441), not " + r.Method
	case r.Header.Get(":protocol") != "websocket":
		return http.StatusBadRequest, "extended CONNECT for " + quote(r.Header.Get(":protocol")) + ", not websocket"
	}
	if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || v[0] != "13" {
		return http.StatusBadRequest, "unsupported Sec-WebSocket-Version: only 13 is supported"
	}
	return 0, ""
}

// dialHTTP2 is Dial over HTTP/2: an extended CONNECT request sent through
// rt, whose stream becomes the Conn's connection.
func dialHTTP2(ctx context.Context, u *url.URL, client *http.Client, rt http.RoundTripper, opts *DialOptions) (*Conn, *http.Response, error) {
	if !opts.HTTP2Fallback && (opts.TLSConfig != nil || opts.NetDialContext != nil) {
		return nil, nil, errors.New("websocket: with DialOptions.HTTP2Transport, set TLS and dialling on that transport; TLSConfig and NetDialContext are for the HTTP/1.1 fallback (HTTP2Fallback)")
	}
	cfg := opts.connConfig()

	// The request's context governs the stream for as long as it lives,
	// so it is not ctx, which bounds only the handshake.
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	var addrMu sync.Mutex
	var local, remote net.Addr = h2Addr(""), h2Addr(u.Host)
	streamCtx = httptrace.WithClientTrace(streamCtx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			addrMu.Lock()
			local, remote = addrOf(info.Conn.LocalAddr()), addrOf(info.Conn.RemoteAddr())
			addrMu.Unlock()
		},
	})
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(streamCtx, http.MethodConnect, u.String(), pr)
	if err != nil {
		cancelStream()
		return nil, nil, errors.New("websocket: " + err.Error())
	}
	req.ContentLength = -1 // a stream, not a body of known length
	if opts.HTTPHeader != nil {
		req.Header = opts.HTTPHeader.Clone()
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	for _, name := range []string{"Upgrade", "Connection", "Sec-WebSocket-Key"} {
		req.Header.Del(name)
	}
	req.Header.Set(":protocol", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if offer := clientOffer(&opts.Compression); offer != "" {
		req.Header.Set("Sec-WebSocket-Extensions", offer)
	}
	if client.Jar != nil {
		for _, c := range client.Jar.Cookies(u) {
			req.AddCookie(c)
		}
	}

	stop := context.AfterFunc(ctx, cancelStream)
	resp, err := rt.RoundTrip(req)
	if !stop() || ctx.Err() != nil {
		if resp != nil {
			resp.Body.Close()
		}
		cancelStream()
		pw.Close()
		return nil, nil, ctxDialError(ctx)
	}
	if err != nil {
		cancelStream()
		pw.Close()
		return nil, nil, http2DialError(err)
	}
	if client.Jar != nil {
		if rc := resp.Cookies(); len(rc) > 0 {
			client.Jar.SetCookies(u, rc)
		}
	}
	err = checkHTTP2Response(resp, opts.Subprotocols)
	var comp *compression
	if err == nil {
		comp, err = acceptExtensions(resp.Header, &opts.Compression)
	}
	if err != nil {
		// A refusal's body says why (its first 1 KiB, within ctx). After
		// a 2xx the body is the stream's WebSocket frames, which need not
		// end: it is not read.
		var body []byte
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			stop := context.AfterFunc(ctx, cancelStream)
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			stop()
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		cancelStream()
		pw.Close()
		return nil, resp, err
	}

	addrMu.Lock()
	la, ra := local, remote
	addrMu.Unlock()
	body := resp.Body
	resp.Body = http.NoBody // the stream is the Conn's now
	s := newH2Stream(body, pw, nil,
		func() {
			pw.CloseWithError(errH2StreamAborted)
			cancelStream() // RST_STREAM
		},
		pw.Close, // END_STREAM once the transport has sent what was written
		func() {
			pw.Close()
			cancelStream()
		},
		cfg.readBufferSize, la, ra)
	c := newConn(s, nil, true, resp.Header.Get("Sec-WebSocket-Protocol"), cfg)
	c.comp = comp
	return c, resp, nil
}

// ErrHTTP2Unsupported is wrapped by Dial's error when, dialling through
// DialOptions.HTTP2Transport, the server cannot take a WebSocket over
// HTTP/2: it did not choose h2 in TLS's ALPN, or did not advertise
// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 section 3). A transport
// reports either by an error that wraps this one, or by the messages of
// golang.org/x/net/http2's Transport. DialOptions.HTTP2Fallback then
// dials over HTTP/1.1 instead.
var ErrHTTP2Unsupported = errors.New("websocket: the server does not take WebSockets over HTTP/2")

// http2DialError explains a failed extended CONNECT.
func http2DialError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "extended connect not supported"):
		return &http2UnsupportedError{"it did not send SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 section 3)", err}
	case strings.Contains(msg, "unexpected ALPN protocol"), strings.Contains(msg, "ALPN did not choose h2"):
		return &http2UnsupportedError{"it did not choose h2 in TLS's ALPN", err}
	case errors.Is(err, ErrHTTP2Unsupported):
		return &http2UnsupportedError{"", err}
	case strings.Contains(msg, `":protocol"`):
		return errors.New("websocket: DialOptions.HTTP2Transport refuses the :protocol pseudo-header, so it cannot send extended CONNECT (net/http's Transport refuses it in Go 1.27): " + msg)
	}
	return errors.New("websocket: extended CONNECT over HTTP/2: " + msg)
}

// http2UnsupportedError is Dial's error when the server cannot take a
// WebSocket over HTTP/2: it wraps ErrHTTP2Unsupported and the transport's
// error, and says why.
type http2UnsupportedError struct {
	why string
	err error // the transport's
}

func (e *http2UnsupportedError) Error() string {
	msg := ErrHTTP2Unsupported.Error()
	if e.why != "" {
		msg += ": " + e.why
	}
	return msg + ": " + e.err.Error()
}

func (e *http2UnsupportedError) Unwrap() []error { return []error{ErrHTTP2Unsupported, e.err} }

// checkHTTP2Response checks the server's answer to an extended CONNECT
// (RFC 8441 section 5: any 2xx status is success).
func checkHTTP2Response(resp *http.Response, offered []string) error {
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("%w: the extended CONNECT was answered over %s", ErrHTTP2Unsupported, resp.Proto)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errors.New("websocket: handshake refused: " + resp.Status)
	}
	if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) > 0 {
		if len(v) != 1 || !slices.Contains(offered, v[0]) {
			return errors.New("websocket: server chose subprotocol " + quote(strings.Join(v, ", ")) + ", which was not offered")
		}
	}
	return nil
}
