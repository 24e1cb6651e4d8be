// Package h2client is an HTTP/2 client for one kind of request: the
// extended CONNECT of RFC 8441, which opens a WebSocket as a stream of an
// HTTP/2 connection. Its Transport is an http.RoundTripper to give to
// websocket.DialOptions.HTTP2Transport.
//
// It exists because Go 1.27's net/http Transport refuses the :protocol
// pseudo-header, and golang.org/x/net/http2's Transport, which can send
// it, is built only with the http2legacy build tag (without it x/net's
// Transport wraps net/http's). x/net's Framer and hpack need no tag, and
// they do the wire format here: this package adds what a client of
// long-lived streams needs on top (RFC 9113): the connection preface and
// SETTINGS, stream ids, flow control both ways, RST_STREAM, GOAWAY and
// PING. It sends no other kind of request.
package h2client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/duplexws/duplex/websocket"
)

// Transport opens extended CONNECT streams (RFC 8441 section 4) over
// HTTP/2 connections it dials and keeps, one server (host and port) to a
// pool. A stream goes on the first connection of the pool that has room
// for it (StreamsPerConn and the server's SETTINGS_MAX_CONCURRENT_STREAMS)
// and has not been told to go away; otherwise on a new one.
//
// Its methods are safe for concurrent use. Close ends its connections.
type Transport struct {
	// TLSConfig is the TLS configuration of the connections; nil means
	// the defaults. NextProtos is replaced by "h2" and "http/1.1"; a
	// server that chooses the latter fails the request with ErrNoHTTP2.
	TLSConfig *tls.Config

	// DialContext opens the TCP connections; nil means a net.Dialer's.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// StreamsPerConn caps the streams open at once on one connection; 0
	// means as many as the server allows.
	StreamsPerConn int

	// Trace, when not nil, is told what goes over the connections.
	Trace *Trace

	mu      sync.Mutex
	pools   map[string][]*clientConn // by scheme://host:port; guarded by mu
	dialing map[string]*dialCall     // dials in progress, by pool; guarded by mu
	closed  bool                     // guarded by mu
	dialed  int                      // connections dialled so far; guarded by mu
	wg      sync.WaitGroup           // the connections' read loops
}

// Trace has the functions a Transport calls as it works, any of them nil.
// They are called from several goroutines, each with what it is about.
type Trace struct {
	// ConnReady: a connection is up and the server's first SETTINGS have
	// come. tlsState is nil for a connection without TLS.
	ConnReady func(conn net.Conn, tlsState *tls.ConnectionState, settings []http2.Setting)
	// HeadersSent and HeadersReceived: a header block, pseudo-headers
	// first, on a stream.
	HeadersSent     func(streamID uint32, fields []hpack.HeaderField)
	HeadersReceived func(streamID uint32, fields []hpack.HeaderField, endStream bool)
	// DataSent (before the frame is written) and DataReceived.
	DataSent     func(streamID uint32, p []byte, endStream bool)
	DataReceived func(streamID uint32, p []byte, endStream bool)
	// StreamReset: RST_STREAM went out (byPeer false) or came in.
	StreamReset func(streamID uint32, code http2.ErrCode, byPeer bool)
	// GoAway: the server sent GOAWAY.
	GoAway func(lastStreamID uint32, code http2.ErrCode, debug []byte)
}

// Errors a RoundTrip returns when the server cannot take a WebSocket over
// HTTP/2, with more said around them (test with errors.Is). Both wrap
// websocket.ErrHTTP2Unsupported, on which DialOptions.HTTP2Fallback falls
// back to HTTP/1.1.
var (
	// ErrNoHTTP2: the server did not choose h2 in TLS's ALPN.
	ErrNoHTTP2 error = &unsupportedError{"the server does not speak HTTP/2 (ALPN did not choose h2)"}
	// ErrNoExtendedConnect: the server's SETTINGS lack
	// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 section 3).
	ErrNoExtendedConnect error = &unsupportedError{"extended connect not supported by the server"}
)

// unsupportedError is an error of its own that is also
// websocket.ErrHTTP2Unsupported.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }
func (e *unsupportedError) Unwrap() error { return websocket.ErrHTTP2Unsupported }

// StreamResetError is a stream's end by RST_STREAM from the server.
type StreamResetError struct {
	StreamID uint32
	Code     http2.ErrCode
}

func (e *StreamResetError) Error() string {
	return fmt.Sprintf("the server reset HTTP/2 stream %d (%v)", e.StreamID, e.Code)
}

// Connections reports how many connections the transport has dialled.
func (t *Transport) Connections() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dialed
}

// RoundTrip sends req, which must be an extended CONNECT (Method CONNECT,
// the ":protocol" pseudo-header in req.Header, an https or http URL), on a
// new stream, and returns the response once its headers have come. The
// stream's DATA is req.Body one way (END_STREAM when it ends,
// RST_STREAM when it fails) and the response's Body the other. Cancelling
// req's context resets the stream, as does closing the response's Body
// before the server has ended its side.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodConnect || req.Header.Get(":protocol") == "" {
		closeBody(req)
		return nil, errors.New("h2client: only extended CONNECT requests (RFC 8441) are sent, not " + req.Method)
	}
	if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
		closeBody(req)
		return nil, errors.New("h2client: URL scheme must be https or http, not " + req.URL.Scheme)
	}
	cc, err := t.conn(req.Context(), req.URL.Scheme, hostPort(req.URL.Scheme, req.URL.Host))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return cc.roundTrip(req)
}

// Check makes sure a connection to the server of u (https or http) is up
// and takes extended CONNECT. It returns ErrNoHTTP2 or
// ErrNoExtendedConnect, wrapped, when the server cannot take it.
func (t *Transport) Check(ctx context.Context, scheme, host string) error {
	_, err := t.conn(ctx, scheme, hostPort(scheme, host))
	return err
}

// Close closes every connection, which fails their streams, and waits for
// their read loops to end. The transport dials no more after it.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	var all []*clientConn
	for _, pool := range t.pools {
		all = append(all, pool...)
	}
	t.pools = nil
	t.mu.Unlock()
	for _, cc := range all {
		cc.fail(errTransportClosed)
	}
	t.wg.Wait()
	return nil
}

var errTransportClosed = errors.New("h2client: the transport is closed")

// conn returns a connection to addr with room for one more stream, and
// reserves that room: the caller opens a stream on it. Callers that find
// no room wait for one dial rather than each dialling its own.
func (t *Transport) conn(ctx context.Context, scheme, addr string) (*clientConn, error) {
	key := scheme + "://" + addr
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, errTransportClosed
		}
		for _, cc := range t.pools[key] {
			if cc.reserve(t.StreamsPerConn) {
				t.mu.Unlock()
				return cc, nil
			}
		}
		if call := t.dialing[key]; call != nil {
			t.mu.Unlock()
			select {
			case <-call.done:
				if call.err != nil {
					return nil, call.err
				}
				continue // the new connection may have room
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		call := &dialCall{done: make(chan struct{})}
		if t.dialing == nil {
			t.dialing = map[string]*dialCall{}
		}
		t.dialing[key] = call
		t.dialed++
		t.mu.Unlock()

		cc, err := t.dial(ctx, scheme, addr)
		t.mu.Lock()
		delete(t.dialing, key)
		call.err = err
		if err == nil && t.closed {
			call.err = errTransportClosed
		}
		if call.err == nil {
			cc.key = key
			cc.reserve(0)
			if t.pools == nil {
				t.pools = map[string][]*clientConn{}
			}
			t.pools[key] = append(t.pools[key], cc)
		}
		t.mu.Unlock()
		close(call.done)
		if call.err != nil {
			if cc != nil {
				cc.fail(call.err)
			}
			return nil, call.err
		}
		return cc, nil
	}
}

// dialCall is a dial in progress, which others wait for.
type dialCall struct {
	done chan struct{}
	err  error // once done is closed
}

// forget takes cc out of its pool, once it takes no new streams.
func (t *Transport) forget(cc *clientConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.pools[cc.key]
	for i, c := range pool {
		if c == cc {
			t.pools[cc.key] = append(pool[:i:i], pool[i+1:]...)
			break
		}
	}
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(trimBrackets(host), "443")
	}
	return net.JoinHostPort(trimBrackets(host), "80")
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
