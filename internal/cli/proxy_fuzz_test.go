package cli

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// FuzzProxyFrames feeds arbitrary bytes to what the proxy does with a
// stream: readRelayFrame splits it into frames, each is shown (inflated,
// with context takeover, when RSV1 says so), printed and recorded. The
// frames relayed must be exactly the bytes read, in order, and reading the
// stream one byte at a time must give the same frames as reading it whole.
// The seeds are in testdata/fuzz/FuzzProxyFrames.
func FuzzProxyFrames(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		whole := relayAll(t, bufio.NewReader(bytes.NewReader(data)), limit)
		bytewise := relayAll(t, bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 16), limit)
		if !bytes.HasPrefix(data, whole) {
			t.Fatalf("the frames relayed are not the stream's bytes: %x of %x", whole, data)
		}
		if !bytes.Equal(whole, bytewise) {
			t.Fatalf("read whole, %x relayed; read byte by byte, %x", whole, bytewise)
		}
	})
}

// relayAll reads frames from br until it fails, shows, prints and records
// each, and returns the bytes that would be relayed.
func relayAll(t *testing.T, br *bufio.Reader, limit int64) []byte {
	pmd := &deflateParams{serverWindowBits: 9, clientWindowBits: 15}
	views := [2]*dirView{newDirView(1, "in", pmd, false, limit), newDirView(1, "out", pmd, true, limit)}
	printer := newFramePrinter(io.Discard, true, 64, false, frameFilter{has: []string{"a"}})
	rec := newRecorder(io.Discard)
	var relayed []byte
	at := time.Unix(0, 0)
	for {
		f, err := readRelayFrame(br, limit)
		if err != nil {
			break
		}
		if int64(len(f.wire)) != int64(f.h.Size())+f.h.Length {
			t.Fatalf("a frame of %d bytes for header %+v", len(f.wire), f.h)
		}
		relayed = append(relayed, f.wire...)
		v := views[0]
		if !f.h.Masked {
			v = views[1]
		}
		wire := f.wire[len(f.wire)-int(f.h.Length):]
		ev := v.observe(at, f.h, wire, false)
		// A key with a byte other than 0 changes every payload of 4 bytes
		// or more: the payload shown must be unmasked.
		if f.h.Masked && f.h.MaskKey != [4]byte{} && f.h.Length >= 4 && bytes.Equal(ev.payload, wire) {
			t.Fatalf("a masked payload shown as it is on the wire")
		}
		printer.frame(ev)
		rec.frame(ev)
	}
	rec.handshake(at, 1, "127.0.0.1:1", &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: http.Header{"Cookie": {"x"}}}, &http.Response{StatusCode: 101, Status: "101 Switching Protocols", Header: http.Header{}})
	if err := rec.err(); err != nil {
		t.Fatalf("recording: %v", err)
	}
	return relayed
}

// deflateMessages compresses msgs as one permessage-deflate sender does,
// with internal/deflate: keeping its window between messages (context
// takeover) or not. The proxy inflates them with compress/flate.
func deflateMessages(t *testing.T, contextTakeover bool, msgs ...string) [][]byte {
	t.Helper()
	c := deflate.NewCompressor(deflate.CompressorConfig{WindowBits: 15, NoContextTakeover: !contextTakeover})
	var out [][]byte
	for _, m := range msgs {
		out = append(out, c.Compress(nil, []byte(m)))
	}
	return out
}

// TestDirView checks how one direction's messages are shown: compressed
// ones inflated on their last frame with and without context takeover, a
// message that does not inflate reported with the ones that depend on it,
// one over the limit left alone, and masked payloads unmasked.
func TestDirView(t *testing.T) {
	at := time.Unix(0, 0)
	text := "a message that repeats, a message that repeats"
	data := func(op frame.Opcode, fin bool, rsv1 bool) frame.Header {
		h := frame.Header{Opcode: op, Fin: fin}
		if rsv1 {
			h.RSV = frame.RSV1
		}
		return h
	}
	show := func(v *dirView, h frame.Header, p []byte) *frameEvent {
		h.Length = int64(len(p))
		return v.observe(at, h, p, false)
	}

	t.Run("context-takeover", func(t *testing.T) {
		v := newDirView(1, "out", &deflateParams{serverWindowBits: 15, clientWindowBits: 15}, true, 1<<20)
		msgs := deflateMessages(t, true, text, text, text)
		if len(msgs[1]) >= len(msgs[0]) {
			t.Fatalf("the second message (%d bytes) does not refer to the first (%d)", len(msgs[1]), len(msgs[0]))
		}
		for i, m := range msgs {
			ev := show(v, data(frame.OpText, true, true), m)
			if !ev.compressed || string(ev.inflated) != text || ev.inflateErr != "" {
				t.Errorf("message %d: compressed %v, inflated %q, %s", i+1, ev.compressed, ev.inflated, ev.inflateErr)
			}
		}
	})

	t.Run("no-context-takeover", func(t *testing.T) {
		v := newDirView(1, "in", &deflateParams{clientNoContext: true, serverWindowBits: 15, clientWindowBits: 15}, false, 1<<20)
		for i, m := range deflateMessages(t, false, text, "other", text) {
			if ev := show(v, data(frame.OpText, true, true), m); ev.inflateErr != "" || len(ev.inflated) == 0 {
				t.Errorf("message %d: %q, %s", i+1, ev.inflated, ev.inflateErr)
			}
		}
	})

	t.Run("fragmented-and-control-between", func(t *testing.T) {
		v := newDirView(1, "out", &deflateParams{serverWindowBits: 15, clientWindowBits: 15}, true, 1<<20)
		m := deflateMessages(t, true, text)[0]
		first := show(v, data(frame.OpBinary, false, true), m[:2])
		ping := show(v, data(frame.OpPing, true, false), []byte("p"))
		last := show(v, data(frame.OpContinuation, true, false), m[2:])
		if !first.compressed || first.inflated != nil || ping.compressed || !last.compressed || string(last.inflated) != text || last.msgOp != frame.OpBinary {
			t.Errorf("first %+v\nping %+v\nlast %+v", first, ping, last)
		}
	})

	t.Run("failure-loses-the-window", func(t *testing.T) {
		v := newDirView(1, "out", &deflateParams{serverWindowBits: 15, clientWindowBits: 15}, true, 1<<20)
		if ev := show(v, data(frame.OpText, true, true), []byte{0xff, 0xff, 0xff}); !strings.HasPrefix(ev.inflateErr, "inflate failed: ") {
			t.Errorf("garbage: %q, %q", ev.inflated, ev.inflateErr)
		}
		m := deflateMessages(t, true, text)[0]
		if ev := show(v, data(frame.OpText, true, true), m); !strings.Contains(ev.inflateErr, "window it refers to is unknown") {
			t.Errorf("after a failure with context takeover: %q, %q", ev.inflated, ev.inflateErr)
		}
		if ev := show(v, data(frame.OpText, true, false), []byte("plain")); ev.compressed || string(ev.payload) != "plain" {
			t.Errorf("an uncompressed message after the failure: %+v", ev)
		}
	})

	t.Run("over-the-limit", func(t *testing.T) {
		v := newDirView(1, "out", &deflateParams{serverNoContext: true, serverWindowBits: 15, clientWindowBits: 15}, true, 10)
		m := deflateMessages(t, false, strings.Repeat("x", 100))[0]
		if ev := show(v, data(frame.OpText, true, true), m); !strings.Contains(ev.inflateErr, "over --read-limit 10") {
			t.Errorf("a message inflating to 100 bytes, limit 10: %q, %q", ev.inflated, ev.inflateErr)
		}
	})

	t.Run("masked", func(t *testing.T) {
		v := newDirView(1, "in", nil, false, 1<<20)
		key := [4]byte{1, 2, 3, 4}
		wire := []byte("masked")
		frame.Mask(key, 0, wire)
		sent := bytes.Clone(wire)
		ev := v.observe(at, frame.Header{Opcode: frame.OpText, Fin: true, Masked: true, MaskKey: key, Length: int64(len(wire))}, wire, false)
		if string(ev.payload) != "masked" || !bytes.Equal(wire, sent) {
			t.Errorf("shown %q; the wire bytes %x changed to %x", ev.payload, sent, wire)
		}
	})
}
