package websocket

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// The compression benchmarks measure a server Conn that agreed on
// permessage-deflate, over loopback TCP as in bench_test.go: writing to a
// peer that drains the socket, and reading from a peer that replays frames
// compressed beforehand. Sizes are of the uncompressed JSON-like messages,
// which SetBytes counts.

var compressionBenchSizes = []struct {
	name string
	size int
}{{"16B", 16}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"128KiB", 128 << 10}}

// compressionBenchModes compress every message, however small (Threshold
// -1), so that the 16-byte case measures compression too.
var compressionBenchModes = []struct {
	name string
	opts CompressionOptions
}{
	{"noContextTakeover", CompressionOptions{Mode: CompressionNoContextTakeover, Threshold: -1}},
	{"contextTakeover", CompressionOptions{Mode: CompressionContextTakeover, Threshold: -1}},
	{"contextTakeover-bits10", CompressionOptions{
		Mode: CompressionContextTakeover, Threshold: -1, ServerMaxWindowBits: 10, ClientMaxWindowBits: 10,
	}},
}

// agreeCompression runs the negotiation of Accept and Dial for opts on both
// sides and returns the state each side gets.
func agreeCompression(tb testing.TB, opts CompressionOptions) (server, client *compression) {
	tb.Helper()
	request := http.Header{}
	request.Set("Sec-WebSocket-Extensions", clientOffer(&opts))
	server, answer := negotiateServer(request, &opts)
	if server == nil {
		tb.Fatalf("the server declined the offer %q", request.Get("Sec-WebSocket-Extensions"))
	}
	response := http.Header{}
	response.Set("Sec-WebSocket-Extensions", answer)
	client, err := acceptExtensions(response, &opts)
	if err != nil || client == nil {
		tb.Fatalf("the client refused the answer %q: %v", answer, err)
	}
	return server, client
}

// newCompressedBenchConn is newBenchConn for a server that agreed on
// compression: comp is its side of the agreement.
func newCompressedBenchConn(tb testing.TB, comp *compression, run func(peer net.Conn)) *Conn {
	tb.Helper()
	c := newBenchConn(tb, false, run)
	c.comp = comp // before any call on c: the peer goroutine does not touch it
	return c
}

// jsonMessages returns count different JSON-like messages of size bytes.
func jsonMessages(count, size int) [][]byte {
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = compressible(size, uint64(1000+i))
	}
	return msgs
}

// replayMessages returns how many different messages of size bytes a
// replayed sequence holds: at least 8, and at least the largest window, 32
// KiB, in all, which replayCompressed relies on.
func replayMessages(size int) int { return max(8, (32<<10+size-1)/size) }

// replayCompressed compresses msgs in order with the client's side of an
// agreement, twice over, as masked text frames. The first pass primes; the
// second may then be sent again and again after it. With context takeover
// a message refers back only to the last 2^bits bytes before it, and at the
// start of every pass those are the same bytes, the end of a pass, since a
// pass is at least as long as the window. It also returns the compression
// ratio of a pass.
func replayCompressed(client *compression, msgs [][]byte) (priming, pass []byte, ratio float64) {
	var payload []byte
	var raw int
	for round := range 2 {
		var wire []byte
		for _, msg := range msgs {
			payload = client.out.Compress(payload[:0], msg)
			wire = appendCompressedTestFrame(wire, frame.OpText, payload)
			raw += len(msg)
		}
		if round == 0 {
			priming, raw = wire, 0
		} else {
			pass = wire
		}
	}
	return priming, pass, float64(len(pass)) / float64(raw)
}

// appendCompressedTestFrame appends one masked, final frame with RSV1 set:
// a whole compressed message from the client.
func appendCompressedTestFrame(b []byte, op frame.Opcode, payload []byte) []byte {
	h := frame.Header{Fin: true, RSV: frame.RSV1, Opcode: op, Length: int64(len(payload)), Masked: true, MaskKey: testMaskKey}
	b = frame.AppendHeader(b, h)
	start := len(b)
	b = append(b, payload...)
	frame.Mask(testMaskKey, 0, b[start:])
	return b
}

// replayer returns a peer that sends priming once, then pass forever.
func replayer(priming, pass []byte) func(net.Conn) {
	return func(peer net.Conn) {
		if _, err := peer.Write(priming); err != nil {
			return
		}
		for {
			if _, err := peer.Write(pass); err != nil {
				return
			}
		}
	}
}

// BenchmarkCompressedWrite: Write of a compressed message, through eight
// different messages in turn. Steady state: 0 allocs/op.
func BenchmarkCompressedWrite(b *testing.B) {
	for _, mode := range compressionBenchModes {
		b.Run(mode.name, func(b *testing.B) {
			for _, s := range compressionBenchSizes {
				b.Run(s.name, func(b *testing.B) {
					server, _ := agreeCompression(b, mode.opts)
					c := newCompressedBenchConn(b, server, drain)
					msgs := jsonMessages(8, s.size)
					ctx := context.Background()
					for _, msg := range msgs { // fills the pools: allocations of a first write are not the steady state
						if err := c.Write(ctx, MessageText, msg); err != nil {
							b.Fatal(err)
						}
					}
					b.SetBytes(int64(s.size))
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if err := c.Write(ctx, MessageText, msgs[i%len(msgs)]); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
			}
		})
	}
}

// BenchmarkCompressedReader: Reader of a compressed message, read to io.EOF
// into a reused buffer. Steady state: 0 allocs/op. ratio is the size on the
// wire over the size inflated.
func BenchmarkCompressedReader(b *testing.B) {
	for _, mode := range compressionBenchModes {
		b.Run(mode.name, func(b *testing.B) {
			for _, s := range compressionBenchSizes {
				b.Run(s.name, func(b *testing.B) {
					server, client := agreeCompression(b, mode.opts)
					priming, pass, ratio := replayCompressed(client, jsonMessages(replayMessages(s.size), s.size))
					c := newCompressedBenchConn(b, server, replayer(priming, pass))
					buf := make([]byte, 32<<10)
					ctx := context.Background()
					if _, err := readToEOF(ctx, c, buf); err != nil { // fills the pools
						b.Fatal(err)
					}
					b.SetBytes(int64(s.size))
					b.ReportAllocs()
					for b.Loop() {
						if n, err := readToEOF(ctx, c, buf); err != nil || n != s.size {
							b.Fatalf("read %d bytes, %v", n, err)
						}
					}
					b.ReportMetric(ratio, "ratio")
				})
			}
		})
	}
}

// TestCompressionReplay checks what BenchmarkCompressedReader relies on:
// the replayed pass inflates to the right messages again and again, with
// context takeover too.
func TestCompressionReplay(t *testing.T) {
	for _, mode := range compressionBenchModes {
		t.Run(mode.name, func(t *testing.T) {
			server, client := agreeCompression(t, mode.opts)
			msgs := jsonMessages(replayMessages(1<<10), 1<<10)
			priming, pass, _ := replayCompressed(client, msgs)
			c := newCompressedBenchConn(t, server, replayer(priming, pass))
			ctx := context.Background()
			for i := range 3 * len(msgs) {
				typ, r, err := c.Reader(ctx)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if want := msgs[i%len(msgs)]; err != nil || typ != MessageText || !bytes.Equal(got, want) {
					t.Fatalf("message %d: %v, %d bytes, %v; want text, %d bytes", i, typ, len(got), err, len(want))
				}
			}
		})
	}
}

// TestCompressionZeroAllocs holds the steady state of compressed Write and
// of reading a compressed message through Reader to zero allocations, with
// and without context takeover, as TestZeroAllocs does without compression.
func TestCompressionZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over loopback TCP")
	}
	runs := 100
	if raceEnabled() {
		runs = 50 // fewer pool drops to cover with spares, see addPoolSpares
	}
	for _, mode := range compressionBenchModes[:2] {
		for _, s := range compressionBenchSizes[:3] {
			name := mode.name + "/" + s.name
			t.Run("Write/"+name, func(t *testing.T) {
				server, _ := agreeCompression(t, mode.opts)
				c := newCompressedBenchConn(t, server, drain)
				msgs := jsonMessages(8, s.size)
				ctx := benchContext(t, "cancelable")
				addPoolSpares(c, s.size)
				i := 0
				allocs := testing.AllocsPerRun(runs, func() {
					if err := c.Write(ctx, MessageText, msgs[i%len(msgs)]); err != nil {
						t.Fatal(err)
					}
					i++
				})
				if allocs != 0 {
					t.Errorf("compressed Write: %v allocs per call, want 0", allocs)
				}
			})
			t.Run("Reader/"+name, func(t *testing.T) {
				opts := mode.opts
				opts.History = 1 << 10 // the peer's: quicker to compress the replay, under -race above all
				server, client := agreeCompression(t, opts)
				priming, pass, _ := replayCompressed(client, jsonMessages(replayMessages(s.size), s.size))
				c := newCompressedBenchConn(t, server, replayer(priming, pass))
				ctx := benchContext(t, "cancelable")
				buf := make([]byte, 4096)
				addPoolSpares(c, s.size)
				allocs := testing.AllocsPerRun(runs, func() {
					if n, err := readToEOF(ctx, c, buf); err != nil || n != s.size {
						t.Fatalf("read %d bytes, %v", n, err)
					}
				})
				if allocs != 0 {
					t.Errorf("compressed Reader: %v allocs per message, want 0", allocs)
				}
			})
		}
	}
}

// addPoolSpares fills, under the race detector, the pools a compressed
// Write or Reader takes from with spare items. The race detector makes
// sync.Pool drop a quarter of what it is given, at random; each drop costs
// the next Get an allocation, and with three pools per Write that averages
// one allocation or more per call, which would hide a real one. With
// spares, a Get after a drop takes a spare instead: 48 spares, of which
// the pool keeps some 36, cover the dozen drops of 50 calls per pool.
func addPoolSpares(c *Conn, size int) {
	if !raceEnabled() {
		return
	}
	const spares = 48
	compressors := make([]*deflate.MessageCompressor, spares)
	readers := make([]*deflate.MessageReader, spares)
	for i := range spares {
		compressors[i] = deflate.NewCompressor(deflate.CompressorConfig{}).BeginMessage()
		readers[i] = deflate.NewDecompressor(deflate.DecompressorConfig{}).BeginMessage(bytes.NewReader(nil), 0)
	}
	for i := range spares {
		compressors[i].Abort() // returns the encoder to the pool
		readers[i].Close()     // returns the inflater
		b := make([]byte, 0, max(4096, 2*size))
		compressBuffers.Put(&b)
		w := make([]byte, 0, c.cfg.writePool.size)
		c.cfg.writePool.put(&w)
	}
}
