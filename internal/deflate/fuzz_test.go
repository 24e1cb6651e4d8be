package deflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseExtensions: no panic; what parses formats and parses again to
// the same; the server's answer to it is valid.
func FuzzParseExtensions(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_max_window_bits=\"10\", x-webkit-deflate-frame",
		"a;b=c\nd",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		values := strings.Split(string(data), "\n")
		exts, err := ParseExtensions(values)
		if err != nil {
			if !errors.Is(err, ErrMalformedExtensions) {
				t.Fatalf("error %v", err)
			}
			return
		}
		formatted := FormatExtensions(exts)
		again, err := ParseExtensions([]string{formatted})
		if err != nil || !reflect.DeepEqual(again, exts) {
			t.Fatalf("%q: formatted as %q, parsed again as %#v, %v; first %#v", values, formatted, again, err, exts)
		}
		if _, resp, ok := NegotiateServer(exts, ServerConfig{}); ok {
			if _, err := ParseExtensions([]string{resp}); err != nil {
				t.Fatalf("response %q does not parse", resp)
			}
		}
	})
}

// FuzzNegotiate: the server answers only with what the chosen offer
// allows, and a client that made that offer accepts the answer and agrees
// on the parameters.
func FuzzNegotiate(f *testing.F) {
	f.Add([]byte("permessage-deflate; client_max_window_bits"), uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, offer []byte, flags, serverBits, clientBits uint8) {
		exts, err := ParseExtensions([]string{string(offer)})
		if err != nil {
			return
		}
		cfg := ServerConfig{
			NoContextTakeover:       flags&1 != 0,
			ClientNoContextTakeover: flags&2 != 0,
			ServerMaxWindowBits:     int(serverBits % 17),
			ClientMaxWindowBits:     int(clientBits % 17),
		}
		p, resp, ok := NegotiateServer(exts, cfg)
		// The offer the server must have taken: the first valid one.
		var chosen *agreement
		for _, e := range exts {
			if strings.EqualFold(e.Name, ExtensionName) {
				if a, err := parseAgreement(e, false); err == nil {
					chosen = &a
					break
				}
			}
		}
		if ok != (chosen != nil) {
			t.Fatalf("ok %v, but valid offer %v", ok, chosen != nil)
		}
		if !ok {
			return
		}
		respExts, err := ParseExtensions([]string{resp})
		if err != nil || len(respExts) != 1 {
			t.Fatalf("response %q: %v", resp, err)
		}
		r, err := parseAgreement(respExts[0], true)
		if err != nil {
			t.Fatalf("response %q: %v", resp, err)
		}
		if r.clientMaxSet && !chosen.clientMaxSet {
			t.Fatalf("response %q has client_max_window_bits, not offered", resp)
		}
		if chosen.clientMaxHasBits && r.ClientMaxWindowBits > chosen.ClientMaxWindowBits {
			t.Fatalf("response %q: client window above the offer's", resp)
		}
		if chosen.serverMaxSet && (!r.serverMaxSet || r.ServerMaxWindowBits > chosen.ServerMaxWindowBits) {
			t.Fatalf("response %q does not honour server_max_window_bits=%d", resp, chosen.ServerMaxWindowBits)
		}
		if chosen.ServerNoContextTakeover && !r.ServerNoContextTakeover {
			t.Fatalf("response %q drops server_no_context_takeover", resp)
		}
		cc := ClientConfig{
			NoContextTakeover:       chosen.ClientNoContextTakeover,
			ServerNoContextTakeover: chosen.ServerNoContextTakeover,
		}
		if chosen.serverMaxSet {
			cc.ServerMaxWindowBits = chosen.ServerMaxWindowBits
		}
		if chosen.clientMaxHasBits {
			cc.ClientMaxWindowBits = chosen.ClientMaxWindowBits
		}
		cp, ok, err := AcceptResponse(respExts, cc)
		if err != nil || !ok {
			t.Fatalf("client %+v rejects %q: %v", cc, resp, err)
		}
		if cp != p {
			t.Fatalf("server %+v, client %+v", p, cp)
		}
	})
}

// fuzzDict is the window some FuzzInflate inputs start with.
var fuzzDict = []byte("Hello, permessage-deflate! The quick brown fox jumps over the lazy dog.")

// FuzzInflate: arbitrary payloads never give more than the limit, never
// panic, and inflate as compress/flate does.
func FuzzInflate(f *testing.F) {
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, uint16(100), false)
	f.Fuzz(func(t *testing.T, payload []byte, limit uint16, withDict bool) {
		var dict []byte
		if withDict {
			dict = fuzzDict
		}
		d := NewDecompressor(DecompressorConfig{})
		if withDict {
			d.hist = append([]byte(nil), dict...)
		}
		lim := int64(limit) + 1
		got, err := d.Decompress(nil, payload, lim)
		if int64(len(got)) > lim {
			t.Fatalf("%d bytes out, limit %d", len(got), lim)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooBig) {
			t.Fatalf("unexpected error %v", err)
		}
		// The same from a source that gives one byte at a time, as a
		// network may: the inflater stops to hand out its output before
		// most of its requests for input, and must resume where it stopped.
		d1 := NewDecompressor(DecompressorConfig{})
		if withDict {
			d1.hist = append([]byte(nil), dict...)
		}
		m := d1.BeginMessage(iotest.OneByteReader(bytes.NewReader(payload)), lim)
		got1, err1 := io.ReadAll(m)
		if !bytes.Equal(got1, got) || err1 != err {
			t.Fatalf("byte by byte: %d bytes, %v; whole: %d bytes, %v", len(got1), err1, len(got), err)
		}
		if len(payload) == 0 {
			return // the empty message, which compress/flate calls an error
		}
		// compress/flate on the same stream.
		fr := flate.NewReaderDict(bytes.NewReader(append(payload[:len(payload):len(payload)], deflateTail...)), dict)
		want, stdErr := io.ReadAll(io.LimitReader(fr, lim+1))
		if stdErr == nil && int64(len(want)) <= lim {
			// All of it, or more than the limit: read on to learn which.
			var one [1]byte
			if _, e := fr.Read(one[:]); e != io.EOF {
				stdErr = e
			}
		}
		switch {
		case err == nil:
			if stdErr != nil || !bytes.Equal(got, want) {
				t.Fatalf("ok with %d bytes; compress/flate: %d bytes, %v", len(got), len(want), stdErr)
			}
		case errors.Is(err, ErrTooBig):
			if int64(len(want)) <= lim || !bytes.Equal(got, want[:lim]) {
				t.Fatalf("ErrTooBig; compress/flate: %d bytes, %v", len(want), stdErr)
			}
		default:
			if stdErr == nil && int64(len(want)) <= lim {
				t.Fatalf("%v; compress/flate inflates %d bytes", err, len(want))
			}
			if !bytes.Equal(got, want[:min(len(got), len(want))]) {
				t.Fatalf("output differs from compress/flate's before the error")
			}
		}
	})
}

// FuzzRoundTrip: any data, window and mode compresses to what inflates
// back, with no distance beyond the window, whole or written in pieces.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("Hello, Hello, Hello"), uint8(7), uint8(0), uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, bits, flags uint8, split uint16) {
		cfg := CompressorConfig{
			WindowBits:        MinWindowBits + int(bits%8),
			NoContextTakeover: flags&1 != 0,
			Level:             int(flags>>1) % 10,
		}
		if flags&0x80 != 0 {
			cfg.Level = HuffmanOnly
		}
		window := 1 << cfg.WindowBits
		c := NewCompressor(cfg)
		d := NewDecompressor(DecompressorConfig{WindowBits: cfg.WindowBits, NoContextTakeover: cfg.NoContextTakeover})
		var stream, hist []byte
		cut := int(split) % (len(data) + 1)
		for i, msg := range [][]byte{data, data[cut:], data[:cut]} {
			var p []byte
			if i == 1 { // in two writes
				m := c.BeginMessage()
				p = m.Write(p, msg[:len(msg)/2])
				p = m.Write(p, msg[len(msg)/2:])
				p = m.Finish(p)
			} else {
				p = c.Compress(nil, msg)
			}
			got, err := d.Decompress(nil, p, 0)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("message %d: %v", i, err)
			}
			full := append(p, syncTail...)
			if cfg.NoContextTakeover {
				hist = nil
			}
			got, maxDist, err := refInflate(hist, full)
			if err != nil || !bytes.Equal(got, msg) || maxDist > window {
				t.Fatalf("message %d: reference inflater: %v, distance %d, window %d", i, err, maxDist, window)
			}
			hist = append(hist, msg...)
			stream = append(stream, full...)
		}
		if !cfg.NoContextTakeover {
			want := append(append(append([]byte(nil), data...), data[cut:]...), data[:cut]...)
			got, _ := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
			if !bytes.Equal(got, want) {
				t.Fatalf("compress/flate across messages differs")
			}
		}
	})
}
