package deflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

// TestRFCExamples inflates the payloads of RFC 7692 section 7.2.3.
func TestRFCExamples(t *testing.T) {
	tests := []struct {
		name     string
		payloads [][]byte // consecutive messages, with context takeover
		want     []string
	}{
		{"7.2.3.1 Hello", [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}}, []string{"Hello"}},
		{"7.2.3.2 takeover", [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, {0xf2, 0x00, 0x11, 0x00, 0x00}}, []string{"Hello", "Hello"}},
		{"7.2.3.3 stored", [][]byte{{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}}, []string{"Hello"}},
		{"7.2.3.4 BFINAL", [][]byte{{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}}, []string{"Hello"}},
		{"7.2.3.4 BFINAL then takeover", [][]byte{{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}, {0xf2, 0x00, 0x11, 0x00, 0x00}}, []string{"Hello", "Hello"}},
		{"7.2.3.5 two blocks", [][]byte{{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}}, []string{"Hello"}},
		{"7.2.3.6 empty", [][]byte{{0x00}}, []string{""}},
		{"empty payload", [][]byte{{}}, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecompressor(DecompressorConfig{})
			ds := NewDecompressor(DecompressorConfig{})
			for i, p := range tt.payloads {
				got, err := d.Decompress(nil, p, 0)
				if err != nil || string(got) != tt.want[i] {
					t.Fatalf("message %d: %q, %v", i, got, err)
				}
				got, err = io.ReadAll(ds.BeginMessage(iotest.OneByteReader(bytes.NewReader(p)), 0))
				if err != nil || string(got) != tt.want[i] {
					t.Fatalf("message %d streamed: %q, %v", i, got, err)
				}
			}
		})
	}
}

// TestReaderChunkings inflates through readers that split the payload.
func TestReaderChunkings(t *testing.T) {
	chunkers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	msgs := testMessages()
	for name, chunk := range chunkers {
		t.Run(name, func(t *testing.T) {
			c := NewCompressor(CompressorConfig{Level: 6})
			d := NewDecompressor(DecompressorConfig{})
			for i, msg := range msgs {
				p := c.Compress(nil, msg)
				m := d.BeginMessage(chunk(bytes.NewReader(p)), 0)
				var r io.Reader = m
				if len(msg) <= 4096 {
					r = iotest.OneByteReader(m)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("message %d (%d bytes): %d bytes, %v", i, len(msg), len(got), err)
				}
			}
		})
	}
}

func TestLimit(t *testing.T) {
	msg := textBytes(10000, 4)
	p := NewCompressor(CompressorConfig{NoContextTakeover: true}).Compress(nil, msg)
	for _, limit := range []int64{1, 9999, 10000, 10001} {
		d := NewDecompressor(DecompressorConfig{NoContextTakeover: true})
		got, err := d.Decompress(nil, p, limit)
		if limit < 10000 {
			if !errors.Is(err, ErrTooBig) || int64(len(got)) != limit || !bytes.Equal(got, msg[:limit]) {
				t.Errorf("limit %d: %d bytes, %v; want the first %d bytes and ErrTooBig", limit, len(got), err, limit)
			}
		} else if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("limit %d: %d bytes, %v", limit, len(got), err)
		}
		// Streamed, the same.
		got, err = io.ReadAll(d.BeginMessage(bytes.NewReader(p), limit))
		if (limit < 10000) != errors.Is(err, ErrTooBig) || int64(len(got)) != min(limit, 10000) {
			t.Errorf("limit %d streamed: %d bytes, %v", limit, len(got), err)
		}
	}
}

// zeroBomb compresses n zero bytes.
func zeroBomb(n int) []byte {
	m := NewCompressor(CompressorConfig{NoContextTakeover: true, Level: 9}).BeginMessage()
	var out []byte
	zeros := make([]byte, 64<<10)
	for ; n > 0; n -= len(zeros) {
		out = m.Write(out, zeros[:min(n, len(zeros))])
	}
	return m.Finish(out)
}

// TestBomb: 10 MiB of zeros in a few KiB stops at the limit, having
// allocated little more than the limit.
func TestBomb(t *testing.T) {
	bomb := zeroBomb(10 << 20)
	if len(bomb) > 20<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	const limit = 64 << 10
	for _, takeover := range []bool{false, true} {
		d := NewDecompressor(DecompressorConfig{NoContextTakeover: !takeover})
		d.Decompress(nil, []byte{0}, 0) // warm the pool up
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got, err := d.Decompress(nil, bomb, limit)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooBig) || len(got) != limit {
			t.Fatalf("%d bytes, %v; want %d and ErrTooBig", len(got), err, limit)
		}
		// dst doubles up to the limit (2×limit in all), and a GC may have
		// emptied the pool (one inflater, about 75 KiB).
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*limit+128<<10 && !raceEnabled {
			t.Errorf("takeover %v: allocated %d bytes to inflate %d", takeover, alloc, limit)
		}
		// The streaming reader allocates nothing.
		buf := make([]byte, 4096)
		allocs := testing.AllocsPerRun(5, func() {
			m := d.BeginMessage(bytes.NewReader(bomb), limit)
			for err == nil || err == ErrTooBig {
				if _, err = m.Read(buf); err != nil {
					break
				}
			}
		})
		if !errors.Is(err, ErrTooBig) && !errors.Is(err, errHistoryLost) {
			t.Errorf("streamed: %v", err)
		}
		if allocs > 1 && !raceEnabled { // the bytes.Reader
			t.Errorf("streamed: %v allocations", allocs)
		}
		d = NewDecompressor(DecompressorConfig{NoContextTakeover: !takeover})
	}
}

func TestCorrupt(t *testing.T) {
	valid := NewCompressor(CompressorConfig{}).Compress(nil, textBytes(3000, 1))
	tests := map[string][]byte{
		"block type 3":           {0x06},
		"stored length":          {0x00, 0x05, 0x00, 0xfb, 0xff, 'H'},
		"truncated stored":       {0x00, 0x05, 0x00, 0xfa, 0xff, 'H', 'e'},
		"distance too far":       {0x02, 0x01, 0x06}, // fixed block, literal, then distance beyond the data
		"truncated":              valid[:len(valid)/2],
		"tail only":              {0x00, 0x00, 0xff, 0xff},
		"dynamic, bad HLIT":      {0xfc, 0xff},
		"fixed, length code 286": {0x02, 0x0c, 0x03},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := io.ReadAll(flate.NewReader(bytes.NewReader(append(p, deflateTail...)))); err == nil {
				t.Logf("note: compress/flate accepts it")
			}
			d := NewDecompressor(DecompressorConfig{})
			if _, err := d.Decompress(nil, p, 0); !errors.Is(err, ErrCorrupt) {
				t.Errorf("err %v, want ErrCorrupt", err)
			}
			// With context takeover the window is lost: the next message fails.
			if _, err := d.Decompress(nil, valid, 0); err == nil {
				t.Errorf("message after a corrupt one succeeded")
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestSourceError(t *testing.T) {
	boom := errors.New("boom")
	p := NewCompressor(CompressorConfig{}).Compress(nil, randomBytes(20000, 1))
	d := NewDecompressor(DecompressorConfig{NoContextTakeover: true})
	_, err := io.ReadAll(d.BeginMessage(io.MultiReader(bytes.NewReader(p[:5000]), errReader{boom}), 0))
	if err != boom {
		t.Errorf("err %v, want the source's", err)
	}
	// Without context takeover the next message is fine.
	if _, err := d.Decompress(nil, p, 0); err != nil {
		t.Errorf("next message: %v", err)
	}
}

func TestCloseLosesWindow(t *testing.T) {
	c := NewCompressor(CompressorConfig{})
	d := NewDecompressor(DecompressorConfig{})
	msg := textBytes(100000, 1)
	m := d.BeginMessage(bytes.NewReader(c.Compress(nil, msg)), 0)
	m.Read(make([]byte, 10))
	m.Close()
	if _, err := d.Decompress(nil, c.Compress(nil, msg), 0); !errors.Is(err, errHistoryLost) {
		t.Errorf("err %v, want errHistoryLost", err)
	}
	// Without context takeover, no harm done.
	d = NewDecompressor(DecompressorConfig{NoContextTakeover: true})
	c = NewCompressor(CompressorConfig{NoContextTakeover: true})
	d.BeginMessage(bytes.NewReader(c.Compress(nil, msg)), 0).Close()
	if got, err := d.Decompress(nil, c.Compress(nil, msg), 0); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("%v", err)
	}
}

// TestInflateMatchesStdlib inflates what compress/flate writes at every
// level (dynamic blocks, long codes), with and without a dictionary.
func TestInflateMatchesStdlib(t *testing.T) {
	for _, level := range []int{flate.HuffmanOnly, 1, 4, 9} {
		for i, msg := range testMessages() {
			dict := textBytes(40000, uint64(i))
			var buf bytes.Buffer
			w, _ := flate.NewWriterDict(&buf, level, dict)
			w.Write(msg)
			w.Flush()
			p := buf.Bytes()[:buf.Len()-4]
			f := new(inflater)
			f.src.reset(nil, p)
			f.reset(dict)
			var got []byte
			for f.state != stateDone && f.err == nil {
				// decode stops with output pending before it asks for
				// input: hand it out each time, as MessageReader does.
				got = append(got, f.win[f.rpos:f.wpos]...)
				f.rpos = f.wpos
				if f.wpos >= highWater {
					f.slide()
				}
				f.decode()
			}
			got = append(got, f.win[f.rpos:f.wpos]...)
			if f.err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("level %d message %d: %d bytes, %v", level, i, len(got), f.err)
			}
		}
	}
}

func TestHistoryAcrossWindowSizes(t *testing.T) {
	// Messages larger and smaller than every window, alternately.
	for bits := MinWindowBits; bits <= MaxWindowBits; bits++ {
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			var msgs [][]byte
			for i, n := range []int{10, 1 << bits, (1 << bits) - 1, 3, 5 << bits, 100, 7} {
				msgs = append(msgs, textBytes(n, uint64(i)))
			}
			testRoundTrip(t, msgs, CompressorConfig{WindowBits: bits, Level: 9})
		})
	}
}

// stallingReader hands out its parts one Read at a time and counts the
// Reads made after the first part, which a network source would block in.
type stallingReader struct {
	parts [][]byte
	asked int
}

func (r *stallingReader) Read(p []byte) (int, error) {
	r.asked++
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	if r.parts[0] = r.parts[0][n:]; len(r.parts[0]) == 0 {
		r.parts = r.parts[1:]
	}
	return n, nil
}

// What the input at hand inflates to is handed out before the source is
// asked for more, which may mean waiting for the network: a message's first
// fragment (flushed, as a compressor does at a fragment's end) is checked as
// soon as it arrives. For every block type, with and without a window.
func TestReadHandsOutBeforeWaiting(t *testing.T) {
	first := []byte("the first fragment: \xff\xfe, not UTF-8, ")
	for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, 1, 9} {
		for _, takeover := range []bool{false, true} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(first)
			w.Flush()
			part1 := bytes.Clone(buf.Bytes())
			buf.Reset()
			w.Write(bytes.Repeat([]byte("and the rest "), 100))
			w.Flush()
			part2 := buf.Bytes()[:buf.Len()-4]
			d := NewDecompressor(DecompressorConfig{NoContextTakeover: !takeover})
			if takeover { // a window from an earlier message
				d.Decompress(nil, NewCompressor(CompressorConfig{Level: 6}).Compress(nil, first), 0)
			}
			src := &stallingReader{parts: [][]byte{part1, part2}}
			m := d.BeginMessage(src, 0)
			got := make([]byte, 0, 4096)
			for len(got) < len(first) && src.asked <= 1 {
				n, err := m.Read(got[len(got):cap(got)])
				got = got[:len(got)+n]
				if err != nil {
					t.Fatalf("level %d, takeover %v: %v", level, takeover, err)
				}
			}
			if !bytes.Equal(got, first) || src.asked > 1 {
				t.Fatalf("level %d, takeover %v: %d bytes handed out after %d reads of the source, want the first fragment's %d after 1", level, takeover, len(got), src.asked, len(first))
			}
			if rest, err := io.ReadAll(m); err != nil || len(rest) != 1300 {
				t.Fatalf("level %d, takeover %v: the rest: %d bytes, %v", level, takeover, len(rest), err)
			}
		}
	}
}
