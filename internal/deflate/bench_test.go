package deflate

import (
	"bytes"
	"fmt"
	"testing"
)

var benchSizes = []int{16, 1 << 10, 16 << 10, 128 << 10}

type benchMode struct {
	name string
	cfg  CompressorConfig
}

var benchModes = []benchMode{
	{"noTakeover", CompressorConfig{NoContextTakeover: true}},
	{"takeover", CompressorConfig{}},
	{"bits10", CompressorConfig{WindowBits: 10}},
}

// benchMessages returns a few different JSON-like messages of n bytes, so
// that context takeover finds history without identical repeats.
func benchMessages(n int) [][]byte {
	msgs := make([][]byte, 8)
	for i := range msgs {
		msgs[i] = textBytes(n, uint64(100+i))
	}
	return msgs
}

func BenchmarkCompress(b *testing.B) {
	for _, mode := range benchModes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", mode.name, n), func(b *testing.B) {
				msgs := benchMessages(n)
				c := NewCompressor(mode.cfg)
				dst := make([]byte, 0, 2*n+64)
				var out int
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					out += len(c.Compress(dst[:0], msgs[i%len(msgs)]))
					i++
				}
				b.ReportMetric(float64(out)/float64(i*n), "ratio")
			})
		}
	}
}

func BenchmarkDecompress(b *testing.B) {
	for _, mode := range benchModes {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", mode.name, n), func(b *testing.B) {
				msgs := benchMessages(n)
				// A long sequence of payloads compressed one after the other,
				// inflated in the same order (context takeover needs it).
				c := NewCompressor(mode.cfg)
				payloads := make([][]byte, 64)
				for i := range payloads {
					payloads[i] = c.Compress(nil, msgs[i%len(msgs)])
				}
				dcfg := DecompressorConfig{WindowBits: mode.cfg.WindowBits, NoContextTakeover: mode.cfg.NoContextTakeover}
				d := NewDecompressor(dcfg)
				dst := make([]byte, 0, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i%len(payloads) == 0 {
						d = NewDecompressor(dcfg) // restart the sequence
						b.StopTimer()
						b.StartTimer()
					}
					var err error
					dst, err = d.Decompress(dst[:0], payloads[i%len(payloads)], 0)
					if err != nil || !bytes.Equal(dst, msgs[i%len(payloads)%len(msgs)]) {
						b.Fatalf("message %d: %v", i, err)
					}
					i++
				}
			})
		}
	}
}
