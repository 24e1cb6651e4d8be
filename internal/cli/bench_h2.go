package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/websocket"
)

// duplex bench --http2: connection i is a stream of the HTTP/2 connection
// of group i / --http2-streams, one h2client.Transport per group with that
// many streams at most, so that -c 1000 --http2-streams 100 is 1,000
// WebSockets on 10 TCP connections (more only if the server allows fewer
// streams per connection, or sends GOAWAY). A group dials from the source
// address its first connection would use with --local-addrs.

// DefaultBenchHTTP2Streams is --http2-streams unless told otherwise: as
// many as a browser puts on one connection to a server with net/http's
// default limit (250), rounded down.
const DefaultBenchHTTP2Streams = 100

// benchH2 is the HTTP/2 side of one bench run.
type benchH2 struct {
	streamsPerConn int

	mu         sync.Mutex
	transports map[int]*h2client.Transport // by group; guarded by mu

	streams   atomic.Int64 // WebSockets opened over HTTP/2
	fallbacks atomic.Int64 // opened over HTTP/1.1 by --http2=fallback
}

// transport returns the transport of connection i's group.
func (h *benchH2) transport(b *bench, i int) *h2client.Transport {
	group := i / h.streamsPerConn
	h.mu.Lock()
	defer h.mu.Unlock()
	tr := h.transports[group]
	if tr == nil {
		tr = b.cfg.dialer.h2Transport(b.netDial(group*h.streamsPerConn), nil, h.streamsPerConn)
		h.transports[group] = tr
	}
	return tr
}

// dialH2 is bench.dial over HTTP/2.
func (b *bench) dialH2(ctx context.Context, i int) (*websocket.Conn, error) {
	h := b.h2
	d := b.cfg.dialer
	c, resp, fellBack, err := d.dialH2(ctx, h.transport(b, i),
		func(opts *websocket.DialOptions) { opts.CloseTimeout = benchCloseTimeout },
		func() (*websocket.DialOptions, string) { return d.options(b.netDial(i), nil) })
	if err != nil {
		return nil, err
	}
	if fellBack != nil || resp.ProtoMajor != 2 {
		h.fallbacks.Add(1)
	} else {
		h.streams.Add(1)
	}
	return c, nil
}

// tcpConnections is how many HTTP/2 connections the run dialled.
func (h *benchH2) tcpConnections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, tr := range h.transports {
		n += tr.Connections()
	}
	return n
}

// close ends the HTTP/2 connections, once every WebSocket has closed.
func (h *benchH2) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, tr := range h.transports {
		tr.Close() // it still counts the connections it dialled
	}
}

// benchHTTP2Report is the report's account of --http2.
type benchHTTP2Report struct {
	Streams        int64 `json:"streams"`          // WebSockets opened as HTTP/2 streams
	TCPConnections int   `json:"tcp_connections"`  // HTTP/2 connections dialled
	StreamsPerConn int   `json:"streams_per_conn"` // --http2-streams
	HTTP1Fallbacks int64 `json:"http1_fallbacks"`  // opened over HTTP/1.1 by --http2=fallback
}

func (h *benchH2) report() *benchHTTP2Report {
	return &benchHTTP2Report{
		Streams:        h.streams.Load(),
		TCPConnections: h.tcpConnections(),
		StreamsPerConn: h.streamsPerConn,
		HTTP1Fallbacks: h.fallbacks.Load(),
	}
}

// writeText writes the report's HTTP/2 line.
func (r *benchHTTP2Report) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "http2        %d WebSockets as streams of %d TCP connections (up to %d each)", r.Streams, r.TCPConnections, r.StreamsPerConn)
	if r.HTTP1Fallbacks > 0 {
		fmt.Fprintf(b, "; %d over HTTP/1.1 (fallback)", r.HTTP1Fallbacks)
	}
	b.WriteString("\n")
}
