package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/internal/wiretrace"
	"github.com/duplexws/duplex/websocket"
)

// WebSockets over HTTP/2 (RFC 8441) for duplex connect and duplex bench.
//
// They dial through internal/h2client, an extended-CONNECT client of our
// own on x/net's Framer and hpack, not through x/net's Transport: in Go
// 1.27 that one is net/http's unless the binary is built with the
// http2legacy tag, and net/http's refuses the :protocol pseudo-header. So
// the command works as `go build` or `go run` makes it.

// The values of --http2.
const (
	http2Off      = ""         // HTTP/1.1 only
	http2Only     = "only"     // HTTP/2 or fail
	http2Fallback = "fallback" // HTTP/2, else HTTP/1.1
)

// http2FlagUsage is the help of --http2, which connect and bench share.
const http2FlagUsage = "open the WebSocket as an HTTP/2 stream (RFC 8441 extended CONNECT; wss://\n" +
	"only): `mode` only (--http2 alone) fails when the server does not take it,\n" +
	"fallback then connects over HTTP/1.1 (default: HTTP/1.1 only)"

// checkHTTP2 checks --http2 against the URL and the proxy settings.
func (d *dialer) checkHTTP2(mode string, proxyGiven bool) error {
	switch mode {
	case http2Off:
		return nil
	case http2Only, http2Fallback:
	default:
		return usageError{fmt.Errorf("--http2 must be only or fallback, not %q", mode)}
	}
	if d.url.Scheme != "wss" {
		return usageError{fmt.Errorf("--http2 needs a wss:// URL: WebSockets over HTTP/2 run over TLS here (cleartext h2c is not supported), not %s://", d.url.Scheme)}
	}
	if p := d.proxyFor(d.url); p != nil {
		if proxyGiven {
			return usageError{errors.New("--http2 does not go through a proxy: --http2 and --proxy exclude each other")}
		}
		return usageError{fmt.Errorf("the environment names the proxy %s for this URL, and --http2 does not go through proxies: add --proxy none", p.Redacted())}
	}
	d.http2 = mode
	return nil
}

// h2Transport returns a transport for WebSockets over HTTP/2 that dials
// with netDial and puts up to streamsPerConn streams on one connection (0:
// as many as the server allows); with trace, it shows the connection's
// HTTP/2 frames other than the WebSocket's (the stream id, the
// pseudo-headers, END_STREAM, RST_STREAM) and decodes the WebSocket frames
// in DATA.
func (d *dialer) h2Transport(netDial func(ctx context.Context, network, addr string) (net.Conn, error), trace *tracer, streamsPerConn int) *h2client.Transport {
	tr := &h2client.Transport{TLSConfig: d.tls, DialContext: netDial, StreamsPerConn: streamsPerConn}
	if trace != nil {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := netDial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return trace.wrapH2(conn), nil
		}
		tr.Trace = trace.h2Trace()
	}
	return tr
}

// dialH2 opens a WebSocket over HTTP/2 through tr. With --http2=fallback,
// a server that does not speak HTTP/2 or does not take extended CONNECT is
// dialled over HTTP/1.1 instead, with http1 (the options and URL
// options would dial with); fellBack then says why.
func (d *dialer) dialH2(ctx context.Context, tr *h2client.Transport, adjust func(*websocket.DialOptions), http1 func() (*websocket.DialOptions, string)) (c *websocket.Conn, resp *http.Response, fellBack error, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.handshakeTimeout)
	defer cancel()
	if d.http2 == http2Fallback {
		if why := tr.Check(ctx, "https", d.url.Host); errors.Is(why, h2client.ErrNoHTTP2) || errors.Is(why, h2client.ErrNoExtendedConnect) {
			opts, dialURL := http1()
			adjust(opts)
			c, resp, err := websocket.Dial(ctx, dialURL, opts)
			return c, resp, why, err
		}
	}
	opts := &websocket.DialOptions{
		HTTPHeader:     d.header.Clone(),
		Subprotocols:   d.subprotocols,
		Compression:    d.compression,
		HTTPClient:     &http.Client{},
		HTTP2Transport: tr,
	}
	adjust(opts)
	c, resp, err = websocket.Dial(ctx, d.url.String(), opts)
	return c, resp, nil, err
}

// wrapH2 returns the TCP connection of an HTTP/2 connection, counted: its
// bytes are TLS records, so the trace shows what they carry through
// h2Trace instead, and their sum when the connection closes.
func (t *tracer) wrapH2(conn net.Conn) net.Conn {
	t.con.printf("-- connected to %v from %v", conn.RemoteAddr(), conn.LocalAddr())
	return &countConn{Conn: conn, t: t}
}

// countConn counts the bytes of a connection, for its last trace line.
type countConn struct {
	net.Conn
	t              *tracer
	sent, received atomic.Int64
	closed         atomic.Bool
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func (c *countConn) Close() error {
	if !c.closed.Swap(true) {
		c.t.con.printf("-- HTTP/2 connection closed: %d bytes sent, %d received (TLS)", c.sent.Load(), c.received.Load())
	}
	return c.Conn.Close()
}

// h2Trace prints an HTTP/2 connection's handshake and stream frames, and
// feeds the DATA of the streams to the WebSocket frame decoder.
func (t *tracer) h2Trace() *h2client.Trace {
	fieldLines := func(arrow string, id uint32, frame string, fields []hpack.HeaderField) {
		t.con.printf("%s HTTP/2 %s, stream %d", arrow, frame, id)
		for _, f := range fields {
			t.con.printf("%s   %s", arrow, redactField(f.Name, f.Value))
		}
	}
	return &h2client.Trace{
		ConnReady: func(_ net.Conn, st *tls.ConnectionState, settings []http2.Setting) {
			if st != nil {
				t.tlsDone(*st)
			}
			names := make([]string, len(settings))
			for i, s := range settings {
				names[i] = s.String()
			}
			t.con.printf("<< HTTP/2 SETTINGS: %s", strings.Join(names, ", "))
		},
		HeadersSent: func(id uint32, fields []hpack.HeaderField) {
			fieldLines(">>", id, "HEADERS (extended CONNECT)", fields)
		},
		HeadersReceived: func(id uint32, fields []hpack.HeaderField, end bool) {
			frame := "HEADERS"
			if end {
				frame += " with END_STREAM"
			}
			fieldLines("<<", id, frame, fields)
			status, deflate := "", false
			for _, f := range fields {
				switch f.Name {
				case ":status":
					status = f.Value
				case "sec-websocket-extensions":
					deflate = deflate || strings.Contains(f.Value, "permessage-deflate")
				}
			}
			t.mu.Lock()
			if len(status) == 3 && status[0] == '2' {
				t.wire.Frames(deflate) // the stream's DATA is WebSocket frames (RFC 8441 section 5)
			} else {
				t.wire.Raw("after the handshake failed: not decoded")
			}
			t.mu.Unlock()
		},
		DataSent: func(id uint32, p []byte, end bool) {
			t.mu.Lock()
			t.wire.Sent.Feed(t.wire, p)
			t.mu.Unlock()
			if end {
				t.con.printf(">> HTTP/2 END_STREAM, stream %d", id)
			}
		},
		DataReceived: func(id uint32, p []byte, end bool) {
			t.mu.Lock()
			t.wire.Received.Feed(t.wire, p)
			t.mu.Unlock()
			if end {
				t.con.printf("<< HTTP/2 END_STREAM, stream %d", id)
			}
		},
		StreamReset: func(id uint32, code http2.ErrCode, byPeer bool) {
			arrow := ">>"
			if byPeer {
				arrow = "<<"
			}
			t.con.printf("%s HTTP/2 RST_STREAM %v, stream %d", arrow, code, id)
		},
		GoAway: func(last uint32, code http2.ErrCode, debug []byte) {
			t.con.printf("<< HTTP/2 GOAWAY %v, last stream %d %q", code, last, debug)
		},
	}
}

// redactField is a header field as a trace line, credentials hidden as
// in HTTP/1.1's trace.
func redactField(name, value string) string {
	if strings.HasPrefix(name, ":") {
		return name + " " + value
	}
	return wiretrace.RedactHeader(name + ": " + value)
}
