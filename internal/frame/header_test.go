package frame

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// allOpcodes lists every 4-bit opcode, reserved ones included: the header
// codec carries them all and leaves judging them to Stream.
func allOpcodes() []Opcode {
	ops := make([]Opcode, 16)
	for i := range ops {
		ops[i] = Opcode(i)
	}
	return ops
}

// boundaryLengths are the edges of the 7-bit, 16-bit and 64-bit length forms.
var boundaryLengths = []int64{0, 1, 125, 126, 127, 0xfffe, 0xffff, 0x10000, 0x10001, 1 << 32, 1 << 40, 1<<63 - 1}

func encodedLengthSize(length int64) int {
	switch {
	case length > 0xffff:
		return 8
	case length > 125:
		return 2
	}
	return 0
}

func TestHeaderRoundTrip(t *testing.T) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for _, op := range allOpcodes() {
		for _, length := range boundaryLengths {
			for _, masked := range []bool{false, true} {
				for _, fin := range []bool{false, true} {
					for rsv := byte(0); rsv <= RSV1|RSV2|RSV3; rsv += RSV3 {
						h := Header{Fin: fin, RSV: rsv, Opcode: op, Masked: masked, Length: length}
						if masked {
							h.MaskKey = key
						}
						checkRoundTrip(t, h)
					}
				}
			}
		}
	}
}

func checkRoundTrip(t *testing.T, h Header) {
	t.Helper()
	enc := AppendHeader(nil, h)
	want := 2 + encodedLengthSize(h.Length)
	if h.Masked {
		want += 4
	}
	if len(enc) != want || h.Size() != want || want > MaxHeaderSize {
		t.Fatalf("%+v: encoded %d bytes, Size() = %d, want %d", h, len(enc), h.Size(), want)
	}
	// Trailing payload bytes must not be taken for header.
	got, n, err := ParseHeader(append(enc, 0xff, 0xff, 0xff))
	if err != nil || n != len(enc) {
		t.Fatalf("%+v: ParseHeader(% x) = n %d, err %v; want n %d", h, enc, n, err, len(enc))
	}
	if got != h {
		t.Fatalf("round trip: got %+v, want %+v", got, h)
	}
	for i := range enc {
		if _, n, err := ParseHeader(enc[:i]); n != 0 || err != nil {
			t.Fatalf("%+v: prefix of %d bytes: n %d, err %v; want 0, nil", h, i, n, err)
		}
	}
}

func TestAppendHeaderAppends(t *testing.T) {
	dst := []byte("prefix")
	out := AppendHeader(dst, Header{Fin: true, Opcode: OpText, Length: 5})
	if want := "prefix\x81\x05"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// Known encodings from RFC 6455 section 5.7.
func TestHeaderKnownEncodings(t *testing.T) {
	tests := []struct {
		name    string
		h       Header
		encoded []byte
	}{
		{
			name:    "unmasked text Hello",
			h:       Header{Fin: true, Opcode: OpText, Length: 5},
			encoded: []byte{0x81, 0x05},
		},
		{
			name:    "masked text Hello",
			h:       Header{Fin: true, Opcode: OpText, Masked: true, MaskKey: [4]byte{0x37, 0xfa, 0x21, 0x3d}, Length: 5},
			encoded: []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d},
		},
		{
			name:    "first fragment Hel",
			h:       Header{Opcode: OpText, Length: 3},
			encoded: []byte{0x01, 0x03},
		},
		{
			name:    "last fragment lo",
			h:       Header{Fin: true, Opcode: OpContinuation, Length: 2},
			encoded: []byte{0x80, 0x02},
		},
		{
			name:    "unmasked ping Hello",
			h:       Header{Fin: true, Opcode: OpPing, Length: 5},
			encoded: []byte{0x89, 0x05},
		},
		{
			name:    "masked pong Hello",
			h:       Header{Fin: true, Opcode: OpPong, Masked: true, MaskKey: [4]byte{0x37, 0xfa, 0x21, 0x3d}, Length: 5},
			encoded: []byte{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d},
		},
		{
			name:    "256 bytes binary",
			h:       Header{Fin: true, Opcode: OpBinary, Length: 256},
			encoded: []byte{0x82, 0x7e, 0x01, 0x00},
		},
		{
			name:    "64KiB binary",
			h:       Header{Fin: true, Opcode: OpBinary, Length: 65536},
			encoded: []byte{0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00},
		},
		{
			name:    "compressed text with RSV1",
			h:       Header{Fin: true, RSV: RSV1, Opcode: OpText, Length: 7},
			encoded: []byte{0xc1, 0x07},
		},
		{
			name:    "1<<40 masked binary",
			h:       Header{Opcode: OpBinary, Masked: true, MaskKey: [4]byte{1, 2, 3, 4}, Length: 1 << 40},
			encoded: []byte{0x02, 0xff, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AppendHeader(nil, tt.h); !bytes.Equal(got, tt.encoded) {
				t.Errorf("AppendHeader = % x, want % x", got, tt.encoded)
			}
			h, n, err := ParseHeader(tt.encoded)
			if err != nil || n != len(tt.encoded) || h != tt.h {
				t.Errorf("ParseHeader = %+v, %d, %v; want %+v, %d, nil", h, n, err, tt.h, len(tt.encoded))
			}
		})
	}
}

// The masked "Hello" of section 5.7, payload included: the header must end
// where the masked payload starts.
func TestParseHeaderRFCMaskedHello(t *testing.T) {
	frame := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	h, n, err := ParseHeader(frame)
	if err != nil || n != 6 {
		t.Fatalf("n %d, err %v; want 6, nil", n, err)
	}
	payload := frame[n : n+int(h.Length)]
	Mask(h.MaskKey, 0, payload)
	if string(payload) != "Hello" {
		t.Fatalf("payload %q, want Hello", payload)
	}
}

func TestParseHeaderBits(t *testing.T) {
	for b0 := 0; b0 < 256; b0++ {
		h, n, err := ParseHeader([]byte{byte(b0), 0})
		if err != nil || n != 2 {
			t.Fatalf("b0 %#x: n %d, err %v", b0, n, err)
		}
		if h.Fin != (b0&0x80 != 0) || h.RSV != byte(b0)&0x70 || h.Opcode != Opcode(b0&0x0f) {
			t.Fatalf("b0 %#x: got %+v", b0, h)
		}
	}
	for l := 0; l < 126; l++ {
		h, _, _ := ParseHeader([]byte{0x82, byte(l)})
		if h.Length != int64(l) || h.Masked {
			t.Fatalf("length byte %d: got %+v", l, h)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	tests := []struct {
		name    string
		encoded []byte
		want    error
	}{
		{"16-bit 0", []byte{0x82, 0x7e, 0x00, 0x00}, ErrNonMinimalLength},
		{"16-bit 125", []byte{0x82, 0x7e, 0x00, 0x7d}, ErrNonMinimalLength},
		{"16-bit 125 masked", []byte{0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4}, ErrNonMinimalLength},
		{"64-bit 0", []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0}, ErrNonMinimalLength},
		{"64-bit 125", []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x7d}, ErrNonMinimalLength},
		{"64-bit 126", []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x7e}, ErrNonMinimalLength},
		{"64-bit 65535", []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, ErrNonMinimalLength},
		{"64-bit top bit", []byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrLengthOverflow},
		{"64-bit all ones", []byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrLengthOverflow},
		{"64-bit top bit masked", []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, ErrLengthOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := ParseHeader(tt.encoded)
			if !errors.Is(err, tt.want) || n != 0 {
				t.Fatalf("ParseHeader(% x) = n %d, err %v; want 0, %v", tt.encoded, n, err, tt.want)
			}
			var perr *Error
			if !errors.As(err, &perr) || perr.Code != CodeProtocolError {
				t.Fatalf("err %v: want *Error with code %d", err, CodeProtocolError)
			}
		})
	}
}

// The smallest and largest lengths each extended form accepts.
func TestParseHeaderMinimalBoundaries(t *testing.T) {
	tests := []struct {
		encoded []byte
		length  int64
	}{
		{[]byte{0x82, 0x7e, 0x00, 0x7e}, 126},
		{[]byte{0x82, 0x7e, 0xff, 0xff}, 0xffff},
		{[]byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 0x10000},
		{[]byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1<<63 - 1},
	}
	for _, tt := range tests {
		h, n, err := ParseHeader(tt.encoded)
		if err != nil || n != len(tt.encoded) || h.Length != tt.length {
			t.Errorf("ParseHeader(% x) = length %d, n %d, err %v; want %d, %d, nil",
				tt.encoded, h.Length, n, err, tt.length, len(tt.encoded))
		}
	}
}

func TestOpcodeClassification(t *testing.T) {
	for _, op := range allOpcodes() {
		known := op == OpContinuation || op == OpText || op == OpBinary ||
			op == OpClose || op == OpPing || op == OpPong
		if op.Known() != known {
			t.Errorf("%v.Known() = %v, want %v", op, op.Known(), known)
		}
		if op.IsControl() != (op >= 8) {
			t.Errorf("%v.IsControl() = %v", op, op.IsControl())
		}
		want := fmt.Sprintf("reserved(%x)", byte(op))
		if known {
			want = map[Opcode]string{0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}[op]
		}
		if op.String() != want {
			t.Errorf("Opcode(%d).String() = %q, want %q", op, op.String(), want)
		}
	}
}

func BenchmarkParseHeader(b *testing.B) {
	enc := AppendHeader(nil, Header{Fin: true, Opcode: OpBinary, Masked: true, MaskKey: [4]byte{1, 2, 3, 4}, Length: 1 << 20})
	b.ReportAllocs()
	for b.Loop() {
		if _, n, err := ParseHeader(enc); n != len(enc) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkAppendHeader(b *testing.B) {
	h := Header{Fin: true, Opcode: OpBinary, Masked: true, MaskKey: [4]byte{1, 2, 3, 4}, Length: 1 << 20}
	buf := make([]byte, 0, MaxHeaderSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHeader(buf[:0], h)
	}
}
