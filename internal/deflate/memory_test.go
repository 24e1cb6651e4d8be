package deflate

import (
	"bytes"
	"runtime"
	"testing"
)

// TestIdleMemory measures the heap held by idle connections with context
// takeover at 15 bits in both directions, after a few messages: only the
// windows stay (16 KiB of history to compress, 32 KiB to inflate), the
// encoders and inflaters go back to the shared pools.
func TestIdleMemory(t *testing.T) {
	pairs := 10000
	if raceEnabled {
		pairs = 1000 // the race detector makes every byte slow
	}
	msgs := [][]byte{textBytes(1000, 1), textBytes(300, 2), randomBytes(2000, 3)}
	payloads := make([][]byte, len(msgs))
	type pair struct {
		c *Compressor
		d *Decompressor
	}
	conns := make([]pair, pairs)
	buf := make([]byte, 0, 4096)
	var out []byte
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		c, d := NewCompressor(CompressorConfig{}), NewDecompressor(DecompressorConfig{})
		for j, msg := range msgs {
			p := c.Compress(buf[:0], msg)
			var err error
			if out, err = d.Decompress(out[:0], p, 1<<20); err != nil || !bytes.Equal(out, msg) {
				t.Fatalf("pair %d message %d: %v", i, j, err)
			}
			if i == 0 {
				payloads[j] = append([]byte(nil), p...)
			}
		}
		conns[i] = pair{c, d}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPair := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(pairs)
	t.Logf("%d bytes per idle pair (Compressor %d B of history, Decompressor %d B of window)",
		perPair, cap(conns[0].c.hist), cap(conns[0].d.hist))
	if perPair > 64<<10 {
		t.Errorf("%d bytes per idle pair, want under 64 KiB", perPair)
	}
	// A sanity floor, below the windows by the noise of the heap's
	// figures (other garbage freed between the two readings, spread over
	// 1,000 pairs under the race detector: 49,003 against 49,152 in CI).
	if perPair < 46<<10 {
		t.Errorf("%d bytes per idle pair: well under the windows, the measure is wrong", perPair)
	}
	// Without context takeover, nothing stays.
	clear(conns)
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range conns {
		c := NewCompressor(CompressorConfig{NoContextTakeover: true})
		d := NewDecompressor(DecompressorConfig{NoContextTakeover: true})
		for _, msg := range msgs {
			out, _ = d.Decompress(out[:0], c.Compress(buf[:0], msg), 0)
		}
		conns[i] = pair{c, d}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPair = (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(pairs)
	t.Logf("%d bytes per idle pair without context takeover", perPair)
	if perPair > 512 && !raceEnabled { // pools drop objects under the race detector
		t.Errorf("%d bytes per idle pair without context takeover, want under 512", perPair)
	}
	runtime.KeepAlive(conns)
}
