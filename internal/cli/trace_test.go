package cli

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/duplexws/duplex/internal/frame"
)

// wireFrame encodes a frame with internal/frame, masked when key is not nil.
func wireFrame(h frame.Header, payload string, key []byte) []byte {
	h.Length = int64(len(payload))
	if key != nil {
		h.Masked = true
		copy(h.MaskKey[:], key)
	}
	b := frame.AppendHeader(nil, h)
	p := []byte(payload)
	if key != nil {
		frame.Mask(h.MaskKey, 0, p)
	}
	return append(b, p...)
}

// traceOutput returns what was printed to con's log, without the times.
func traceOutput(t *testing.T, log *lockedBuffer) []string {
	t.Helper()
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSuffix(log.String(), "\n"), "\n") {
		if len(line) < len("15:04:05.000 ") {
			t.Fatalf("line without a time: %q", line)
		}
		lines = append(lines, line[len("15:04:05.000 "):])
	}
	return lines
}

// chunkings split a stream as reads and writes might: whole, a byte at a
// time, and at random places.
var chunkings = []struct {
	name  string
	split func(b []byte) [][]byte
}{
	{"Whole", func(b []byte) [][]byte { return [][]byte{b} }},
	{"OneByte", func(b []byte) [][]byte {
		var out [][]byte
		for i := range b {
			out = append(out, b[i:i+1])
		}
		return out
	}},
	{"Random", func(b []byte) [][]byte {
		r := rand.New(rand.NewPCG(1, uint64(len(b))))
		var out [][]byte
		for len(b) > 0 {
			n := min(1+r.IntN(9), len(b))
			out = append(out, b[:n])
			b = b[n:]
		}
		return out
	}},
}

func TestTraceStreams(t *testing.T) {
	key := []byte{1, 2, 3, 4}
	var sent []byte
	sent = append(sent, "GET /chat HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer secret\r\nUpgrade: websocket\r\n\r\n"...)
	sent = append(sent, wireFrame(frame.Header{Fin: true, Opcode: frame.OpText}, "hello", key)...)
	sent = append(sent, wireFrame(frame.Header{Opcode: frame.OpBinary}, "abc", key)...)
	sent = append(sent, wireFrame(frame.Header{Fin: true, Opcode: frame.OpPing}, "p", key)...)
	sent = append(sent, wireFrame(frame.Header{Fin: true, Opcode: frame.OpContinuation}, strings.Repeat("d", 300), key)...)
	sent = append(sent, wireFrame(frame.Header{Fin: true, Opcode: frame.OpClose}, "\x03\xe8bye", key)...)

	var received []byte
	received = append(received, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate\r\nSet-Cookie: a=b\r\n\r\n"...)
	received = append(received, wireFrame(frame.Header{Fin: true, RSV: frame.RSV1, Opcode: frame.OpText}, "deflate", nil)...)
	received = append(received, wireFrame(frame.Header{Fin: true, Opcode: frame.OpText}, "", nil)...)
	received = append(received, wireFrame(frame.Header{Fin: true, Opcode: frame.OpPong}, "p", nil)...)
	received = append(received, wireFrame(frame.Header{Fin: true, Opcode: frame.OpClose}, "\x03\xe9", nil)...)

	wantSent := []string{
		">> GET /chat HTTP/1.1",
		">> Host: example.com",
		">> Authorization: [13 bytes hidden]",
		">> Upgrade: websocket",
		">> text fin masked key=01020304 len=5",
		">> binary masked key=01020304 len=3",
		">> ping fin masked key=01020304 len=1 payload=70",
		">> continuation fin masked key=01020304 len=300",
		`>> close fin masked key=01020304 len=5 code=1000 (NormalClosure) reason="bye"`,
	}
	wantReceived := []string{
		"<< HTTP/1.1 101 Switching Protocols",
		"<< Upgrade: websocket",
		"<< Sec-WebSocket-Extensions: permessage-deflate",
		"<< Set-Cookie: [3 bytes hidden]",
		"<< text fin rsv1 len=7 (compressed)",
		"<< text fin len=0",
		"<< pong fin len=1 payload=70",
		"<< close fin len=2 code=1001 (GoingAway)",
	}

	for _, ch := range chunkings {
		t.Run(ch.name, func(t *testing.T) {
			log := &lockedBuffer{}
			tr := newTracer(&console{log: log})
			// The request goes first, then the response: a tracer learns
			// from the response how to read RSV1.
			for _, part := range ch.split(sent) {
				tr.sent.feed(tr, part)
			}
			for _, part := range ch.split(received) {
				tr.received.feed(tr, part)
			}
			if got := traceOutput(t, log); !slices.Equal(got, append(slices.Clone(wantSent), wantReceived...)) {
				t.Errorf("trace:\n%s\nwant:\n%s\n%s", strings.Join(got, "\n"), strings.Join(wantSent, "\n"), strings.Join(wantReceived, "\n"))
			}
			for _, want := range []wireMessage{{wire: 7, frames: 1, compressed: true}, {wire: 0, frames: 1}} {
				if got, ok := tr.nextReceived(); !ok || got != want {
					t.Errorf("message received: %+v %v, want %+v", got, ok, want)
				}
			}
			if _, ok := tr.nextReceived(); ok {
				t.Error("a message received too many")
			}
			if tr.sent.total != int64(len(sent)) || tr.received.total != int64(len(received)) {
				t.Errorf("totals %d and %d, want %d and %d", tr.sent.total, tr.received.total, len(sent), len(received))
			}
		})
	}
}

func TestTraceProxyAndRefusal(t *testing.T) {
	for _, ch := range chunkings {
		t.Run(ch.name, func(t *testing.T) {
			log := &lockedBuffer{}
			tr := newTracer(&console{log: log})
			feed := func(s *traceStream, b string) {
				for _, part := range ch.split([]byte(b)) {
					s.feed(tr, part)
				}
			}
			feed(&tr.sent, "CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n")
			feed(&tr.received, "HTTP/1.1 200 OK\r\n\r\n")
			feed(&tr.sent, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
			feed(&tr.received, "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\n")
			tr.received.feed(tr, []byte("nope"))
			want := []string{
				">> CONNECT example.com:80 HTTP/1.1",
				">> Host: example.com:80",
				"<< HTTP/1.1 200 OK",
				">> GET / HTTP/1.1",
				">> Host: example.com",
				"<< HTTP/1.1 403 Forbidden",
				"<< Content-Length: 4",
				"<< 4 bytes (after the handshake failed: not decoded)",
			}
			if got := traceOutput(t, log); !slices.Equal(got[len(got)-len(want):], want) {
				t.Errorf("trace:\n%s\nwant it to end with:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestTraceInvalidFrame(t *testing.T) {
	log := &lockedBuffer{}
	tr := newTracer(&console{log: log})
	tr.received.feed(tr, []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
	// A 16-bit length of 5: not minimally encoded (RFC 6455 section 5.2).
	tr.received.feed(tr, []byte{0x81, 126, 0, 5, 'h', 'e', 'l', 'l', 'o'})
	tr.received.feed(tr, []byte("more"))
	got := traceOutput(t, log)
	want := []string{
		"<< invalid frame header (websocket: frame length not minimally encoded): the rest is not decoded",
		"<< 5 bytes (not decoded)",
		"<< 4 bytes (not decoded)",
	}
	if !slices.Equal(got[1:], want) {
		t.Errorf("trace:\n%s\nwant after the head:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzTraceStream feeds arbitrary bytes, in arbitrary pieces, to either
// direction, as frames or from the handshake on: the decoder must neither
// panic nor hold more than a frame header and a control payload.
func FuzzTraceStream(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, uint8(3))
	f.Add([]byte{0x88, 0x02, 0x03, 0xe8, 0x89, 0x7e, 0x00}, uint8(1))
	f.Add(bytes.Repeat([]byte{0x7f}, 40), uint8(7))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n\x82\x01x"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		for i := range 4 {
			tr := newTracer(&console{log: &lockedBuffer{}})
			s := &tr.received
			if i%2 == 1 {
				s = &tr.sent
			}
			if i < 2 {
				s.state = streamFrames
			}
			n := int(step%16) + 1
			for b := data; len(b) > 0; {
				k := min(n, len(b))
				s.feed(tr, b[:k])
				b = b[k:]
				if len(s.ctrl) > frame.MaxControlPayload || s.hdrLen > frame.MaxHeaderSize {
					t.Fatalf("holds %d bytes of control payload and %d of header", len(s.ctrl), s.hdrLen)
				}
			}
		}
	})
}
