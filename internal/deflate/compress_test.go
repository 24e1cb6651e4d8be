package deflate

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"testing"
)

var syncTail = []byte{0x00, 0x00, 0xff, 0xff}

var testSizes = []int{0, 1, 16, 100, 1 << 10, 4 << 10, 16 << 10, 40 << 10, 128 << 10}

// testMessages is a sequence of messages of every size, random and text,
// with repeats so that context takeover has something to find.
func testMessages() [][]byte {
	var msgs [][]byte
	for i, n := range testSizes {
		text := textBytes(n, uint64(i))
		msgs = append(msgs, text, randomBytes(n, uint64(i)), text)
	}
	return msgs
}

func TestCompressRoundTrip(t *testing.T) {
	msgs := testMessages()
	for bits := MinWindowBits; bits <= MaxWindowBits; bits++ {
		// Greedy and lazy matching in turn; TestEncoderLevels has them all.
		level := 1
		if bits%2 == 1 {
			level = 6
		}
		for _, noTakeover := range []bool{false, true} {
			name := fmt.Sprintf("bits=%d/noTakeover=%v/level=%d", bits, noTakeover, level)
			t.Run(name, func(t *testing.T) {
				testRoundTrip(t, msgs, CompressorConfig{WindowBits: bits, NoContextTakeover: noTakeover, Level: level})
			})
		}
	}
}

// testRoundTrip compresses msgs and checks them with compress/flate (one
// inflater across the messages, as a peer with context takeover keeps),
// with the reference inflater (distances within 2^bits) and with a
// Decompressor.
func testRoundTrip(t *testing.T, msgs [][]byte, cfg CompressorConfig) {
	t.Helper()
	c := NewCompressor(cfg)
	d := NewDecompressor(DecompressorConfig{WindowBits: cfg.WindowBits, NoContextTakeover: cfg.NoContextTakeover})
	window := 1 << clampBits(cfg.WindowBits)
	var stream []byte // what a peer inflates, message after message
	var hist []byte   // the reference inflater's window
	var in, out int
	for i, msg := range msgs {
		payload := c.Compress(nil, msg)
		in, out = in+len(msg), out+len(payload)
		if len(payload) == 0 {
			t.Fatalf("message %d: empty payload", i)
		}
		got, err := d.Decompress(nil, payload, 0)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d (%d bytes): Decompressor: %d bytes, %v", i, len(msg), len(got), err)
		}
		full := append(payload[:len(payload):len(payload)], syncTail...)
		if cfg.NoContextTakeover {
			hist = nil
			got, err = io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(full), bytes.NewReader([]byte{1, 0, 0, 0xff, 0xff}))))
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("message %d (%d bytes): compress/flate: %d bytes, %v", i, len(msg), len(got), err)
			}
		} else {
			stream = append(stream, full...)
		}
		got, maxDist, err := refInflate(hist, full)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d (%d bytes): reference inflater: %d bytes, %v", i, len(msg), len(got), err)
		}
		if maxDist > window {
			t.Fatalf("message %d: distance %d beyond the %d-byte window", i, maxDist, window)
		}
		if !cfg.NoContextTakeover {
			hist = append(hist, msg...)
			hist = hist[max(0, len(hist)-window):]
		}
	}
	if !cfg.NoContextTakeover {
		fr := flate.NewReader(bytes.NewReader(stream))
		for i, msg := range msgs {
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(fr, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("message %d (%d bytes): compress/flate across messages: %v", i, len(msg), err)
			}
		}
	}
	t.Logf("%d bytes → %d", in, out)
}

// TestCompressNoTakeoverLevels covers 15 bits without context takeover at
// every kind of level.
func TestCompressNoTakeoverLevels(t *testing.T) {
	msgs := testMessages()
	for _, level := range []int{HuffmanOnly, DefaultCompression, 1, 2, 5, 9} {
		t.Run(fmt.Sprint(level), func(t *testing.T) {
			testRoundTrip(t, msgs, CompressorConfig{NoContextTakeover: true, Level: level})
		})
	}
}

func TestEncoderLevels(t *testing.T) {
	msgs := testMessages()[:12]
	for _, level := range []int{HuffmanOnly, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
		t.Run(fmt.Sprint(level), func(t *testing.T) {
			testRoundTrip(t, msgs, CompressorConfig{WindowBits: 12, Level: level})
		})
	}
}

func TestCompressEmptyMessage(t *testing.T) {
	for _, cfg := range []CompressorConfig{{}, {NoContextTakeover: true}, {WindowBits: 9}} {
		if got := NewCompressor(cfg).Compress(nil, nil); !bytes.Equal(got, []byte{0}) {
			t.Errorf("%+v: empty message compresses to % x, want 00 (RFC 7692 section 7.2.3.6)", cfg, got)
		}
	}
}

// TestCompressHello checks the examples of RFC 7692 section 7.2.3.1 and
// 7.2.3.2: "Hello" twice with context takeover; the second refers back.
func TestCompressHello(t *testing.T) {
	c := NewCompressor(CompressorConfig{Level: 9})
	first := c.Compress(nil, []byte("Hello"))
	second := c.Compress(nil, []byte("Hello"))
	if len(second) >= len(first) {
		t.Errorf("second Hello % x is not shorter than the first % x", second, first)
	}
	d := NewDecompressor(DecompressorConfig{})
	// The RFC's own bytes for the same two messages.
	for _, p := range [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, {0xf2, 0x00, 0x11, 0x00, 0x00}} {
		got, err := d.Decompress(nil, p, 0)
		if err != nil || string(got) != "Hello" {
			t.Fatalf("RFC example % x: %q, %v", p, got, err)
		}
	}
}

// TestStreamingMatchesOneShot writes messages in pieces of several sizes;
// the output must equal Compress's and decode likewise.
func TestStreamingMatchesOneShot(t *testing.T) {
	msgs := testMessages()
	for _, cfg := range []CompressorConfig{{}, {NoContextTakeover: true}, {WindowBits: 10}, {Level: 6}} {
		for _, piece := range []int{1, 7, 1000, 70000} {
			if raceEnabled && (piece == 1 || piece == 1000) {
				continue // covered without the race detector
			}
			t.Run(fmt.Sprintf("%+v/%d", cfg, piece), func(t *testing.T) {
				oneShot, streamed := NewCompressor(cfg), NewCompressor(cfg)
				d := NewDecompressor(DecompressorConfig{WindowBits: cfg.WindowBits, NoContextTakeover: cfg.NoContextTakeover})
				for i, msg := range msgs {
					if piece == 1 && len(msg) > 1<<10 {
						continue
					}
					want := oneShot.Compress(nil, msg)
					m := streamed.BeginMessage()
					var got []byte
					for p := msg; len(p) > 0; {
						n := min(piece, len(p))
						got = m.Write(got, p[:n])
						p = p[n:]
					}
					got = m.Finish(got)
					if !bytes.Equal(got, want) {
						t.Fatalf("message %d (%d bytes): streamed output differs", i, len(msg))
					}
					if out, err := d.Decompress(nil, got, 0); err != nil || !bytes.Equal(out, msg) {
						t.Fatalf("message %d: inflates to %d bytes, %v", i, len(out), err)
					}
				}
			})
		}
	}
}

// TestStreamingHoldsLittle checks that Write hands out output as it goes
// rather than holding the message.
func TestStreamingHoldsLittle(t *testing.T) {
	msg := randomBytes(1<<20, 7)
	for _, cfg := range []CompressorConfig{{}, {WindowBits: 9}, {NoContextTakeover: true}} {
		m := NewCompressor(cfg).BeginMessage()
		var out []byte
		for p := msg; len(p) > 0; p = p[4096:] {
			out = m.Write(out, p[:4096])
		}
		if held := len(msg) - len(out); held > 140<<10 {
			t.Errorf("%+v: %d bytes of input not yet output after writing 1 MiB", cfg, held)
		}
		m.Finish(out)
	}
}

func TestAbortKeepsHistory(t *testing.T) {
	c := NewCompressor(CompressorConfig{})
	d := NewDecompressor(DecompressorConfig{})
	msg := textBytes(3000, 1)
	for i := range 3 {
		if i == 1 {
			m := c.BeginMessage()
			m.Write(nil, textBytes(5000, 9))
			m.Abort()
		}
		got, err := d.Decompress(nil, c.Compress(nil, msg), 0)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// TestHistorySizes checks a history smaller than the window, and none.
func TestHistorySizes(t *testing.T) {
	msgs := testMessages()[:15]
	for _, h := range []int{-1, 1, 100, 4096, 1 << 20} {
		t.Run(fmt.Sprint(h), func(t *testing.T) {
			testRoundTrip(t, msgs, CompressorConfig{History: h})
		})
	}
}

// TestContextTakeoverHelps: a repeated message costs almost nothing the
// second time, within the history.
func TestContextTakeoverHelps(t *testing.T) {
	msg := randomBytes(2000, 3)
	for bits := 11; bits <= 15; bits++ {
		c := NewCompressor(CompressorConfig{WindowBits: bits})
		first, second := len(c.Compress(nil, msg)), len(c.Compress(nil, msg))
		if first < 2000 || second > 100 {
			t.Errorf("bits %d: %d then %d bytes", bits, first, second)
		}
	}
}

func TestCompressAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops objects at random under the race detector")
	}
	msg := textBytes(4096, 5)
	for _, cfg := range []CompressorConfig{{}, {NoContextTakeover: true}, {WindowBits: 10}, {Level: 9}} {
		c := NewCompressor(cfg)
		d := NewDecompressor(DecompressorConfig{WindowBits: cfg.WindowBits, NoContextTakeover: cfg.NoContextTakeover})
		buf := make([]byte, 0, 8192)
		out := make([]byte, 0, 8192)
		var err error
		allocs := testing.AllocsPerRun(50, func() {
			p := c.Compress(buf[:0], msg)
			out, err = d.Decompress(out[:0], p, 1<<20)
		})
		if err != nil || !bytes.Equal(out, msg) {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if allocs != 0 {
			t.Errorf("%+v: %v allocations per message, want 0", cfg, allocs)
		}
	}
}
