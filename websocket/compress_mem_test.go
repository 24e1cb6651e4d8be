package websocket

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// The memory an idle connection holds for compression: the windows kept
// between messages with context takeover, and the state every agreement
// carries. It is measured on server Conns that have sent and received a few
// compressed messages, as the heap they hold after garbage collection,
// minus what the same Conns hold without compression.

// compressionMemoryModes are the agreements measured, with the defaults of
// CompressionOptions otherwise.
var compressionMemoryModes = []struct {
	name string
	opts CompressionOptions
}{
	{"noContextTakeover", CompressionOptions{Mode: CompressionNoContextTakeover}},
	{"contextTakeover", CompressionOptions{Mode: CompressionContextTakeover}},
	{"contextTakeover-bits10", CompressionOptions{
		Mode: CompressionContextTakeover, ServerMaxWindowBits: 10, ClientMaxWindowBits: 10,
	}},
}

// idleMessages are what each Conn sends and receives: 36 KiB in all, more
// than the largest window, so that the windows are full.
func idleMessages() [][]byte {
	return [][]byte{compressible(8<<10, 1), compressible(12<<10, 2), compressible(16<<10, 3)}
}

// replayConn is the network connection of a server Conn whose client has
// already sent everything: reads come from the client's frames, recorded
// once and shared by every replayConn, and writes are discarded. It
// buffers nothing of its own, so it weighs the same for every Conn, with
// compression or without, and drops out of the difference.
type replayConn struct{ r bytes.Reader }

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return replayAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return replayAddr{} }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }

type replayAddr struct{}

func (replayAddr) Network() string { return "replay" }
func (replayAddr) String() string  { return "replay" }

// idleConnHeap returns the heap, per Conn, that n idle server Conns hold
// after each has written msgs and read them back from its client, with
// compression as opts agree (opts.Mode may be CompressionDisabled).
func idleConnHeap(tb testing.TB, n int, opts CompressionOptions, msgs [][]byte) int64 {
	tb.Helper()
	// The client's frames, the same for every Conn: each starts with
	// empty windows.
	var wire []byte
	if opts.Mode == CompressionDisabled {
		for _, msg := range msgs {
			wire = appendTestFrame(wire, true, frame.OpText, true, msg)
		}
	} else {
		_, client := agreeCompression(tb, opts)
		for _, msg := range msgs {
			wire = appendCompressedTestFrame(wire, frame.OpText, client.out.Compress(nil, msg))
		}
	}
	ctx := context.Background()
	buf := make([]byte, 4096)
	conns := make([]*Conn, n)
	cfg := newConnConfig(0, 0, 0, 0, 0)
	heapBefore := liveHeap()
	for i := range conns {
		nc := new(replayConn)
		nc.r.Reset(wire)
		c := newConn(nc, nil, false, "", cfg)
		if opts.Mode != CompressionDisabled {
			// What Accept does with the client's offer.
			c.comp, _ = agreeCompression(tb, opts)
		}
		for _, msg := range msgs {
			if err := c.Write(ctx, MessageText, msg); err != nil {
				tb.Fatal(err)
			}
		}
		for _, msg := range msgs {
			if n, err := readToEOF(ctx, c, buf); err != nil || n != len(msg) {
				tb.Fatalf("read %d bytes, %v; want %d", n, err, len(msg))
			}
		}
		conns[i] = c
	}
	perConn := (liveHeap() - heapBefore) / int64(n)
	for _, c := range conns {
		c.CloseNow()
	}
	return perConn
}

// liveHeap returns the bytes of live heap objects. Two collections also
// empty every sync.Pool, which keeps what it holds through one.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// compressionStatePerConn returns the heap an idle server Conn holds for
// the compression opts agree, measured over n Conns: the heap of such a
// Conn minus plainConn, idleConnHeap without compression.
func compressionStatePerConn(tb testing.TB, n int, opts CompressionOptions, plainConn int64) int64 {
	tb.Helper()
	return idleConnHeap(tb, n, opts, idleMessages()) - plainConn
}

// BenchmarkCompressionMemory reports B/conn, the heap an idle server
// connection holds for compression, at 10,000 connections, after each has
// sent and received 36 KiB of compressed messages. One iteration takes
// seconds: run it with -benchtime=1x.
func BenchmarkCompressionMemory(b *testing.B) {
	const conns = 10000
	plainConn := idleConnHeap(b, conns, CompressionOptions{}, idleMessages())
	for _, mode := range compressionMemoryModes {
		b.Run(mode.name, func(b *testing.B) {
			var state int64
			for b.Loop() {
				state = compressionStatePerConn(b, conns, mode.opts, plainConn)
			}
			b.ReportMetric(float64(state), "B/conn")
			b.ReportMetric(0, "ns/op") // the time of the setup, meaningless
		})
	}
}

// TestCompressionMemoryPerConn bounds the memory of idle connections that
// agreed on compression: at most 64 KiB each with context takeover and the
// default windows (the windows alone take DefaultCompressionHistory to
// compress and 32 KiB to inflate), under 1 KiB without.
func TestCompressionMemoryPerConn(t *testing.T) {
	conns := 1000
	if raceEnabled() {
		conns = 200 // compression under the race detector is slow
	}
	plainConn := idleConnHeap(t, conns, CompressionOptions{}, idleMessages())
	t.Logf("%d bytes per idle Conn without compression", plainConn)
	for _, tc := range []struct {
		name     string
		opts     CompressionOptions
		min, max int64 // bytes per connection; min guards the measure itself
	}{
		{"noContextTakeover", CompressionOptions{Mode: CompressionNoContextTakeover}, 0, 1<<10 - 1},
		{"contextTakeover", CompressionOptions{Mode: CompressionContextTakeover}, DefaultCompressionHistory + 32<<10, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := compressionStatePerConn(t, conns, tc.opts, plainConn)
			t.Logf("%d bytes of compression state per idle connection", state)
			if state < tc.min || state > tc.max {
				t.Errorf("%d bytes of compression state per idle connection, want %d to %d", state, tc.min, tc.max)
			}
		})
	}
}
