package frame

import (
	"errors"
	"testing"
)

// roles are the values of Check's wantMasked: true on a server, false on a
// client.
var roles = []struct {
	name       string
	wantMasked bool
}{{"server", true}, {"client", false}}

// hdr builds a header for role: masked when the role expects masking.
func hdr(wantMasked, fin bool, rsv byte, op Opcode, length int64) Header {
	h := Header{Fin: fin, RSV: rsv, Opcode: op, Masked: wantMasked, Length: length}
	if wantMasked {
		h.MaskKey = [4]byte{0xde, 0xad, 0xbe, 0xef}
	}
	return h
}

// streamStep is one frame fed to a Stream and what Check must say about it.
type streamStep struct {
	fin     bool
	rsv     byte
	op      Opcode
	length  int64
	wantOp  Opcode
	wantErr error
}

func TestStreamSequences(t *testing.T) {
	tests := []struct {
		name       string
		allowedRSV byte
		steps      []streamStep
	}{
		{"single text", 0, []streamStep{
			{fin: true, op: OpText, length: 5, wantOp: OpText},
		}},
		{"single binary", 0, []streamStep{
			{fin: true, op: OpBinary, length: 1 << 40, wantOp: OpBinary},
		}},
		{"fragmented text", 0, []streamStep{
			{op: OpText, length: 3, wantOp: OpText},
			{op: OpContinuation, length: 1, wantOp: OpText},
			{fin: true, op: OpContinuation, length: 2, wantOp: OpText},
			{fin: true, op: OpBinary, length: 2, wantOp: OpBinary},
		}},
		{"fragmented binary", 0, []streamStep{
			{op: OpBinary, wantOp: OpBinary},
			{fin: true, op: OpContinuation, wantOp: OpBinary},
		}},
		{"control frames interleaved", 0, []streamStep{
			{op: OpBinary, length: 3, wantOp: OpBinary},
			{fin: true, op: OpPing, length: 125, wantOp: OpPing},
			{op: OpContinuation, length: 3, wantOp: OpBinary},
			{fin: true, op: OpPong, wantOp: OpPong},
			{fin: true, op: OpClose, length: 2, wantOp: OpClose},
			{fin: true, op: OpContinuation, length: 3, wantOp: OpBinary},
			{fin: true, op: OpContinuation, wantErr: ErrContinuation},
		}},
		{"continuation without start", 0, []streamStep{
			{fin: true, op: OpContinuation, wantErr: ErrContinuation},
		}},
		{"unfinished continuation without start", 0, []streamStep{
			{op: OpContinuation, wantErr: ErrContinuation},
		}},
		{"continuation after finished message", 0, []streamStep{
			{fin: true, op: OpText, wantOp: OpText},
			{fin: true, op: OpContinuation, wantErr: ErrContinuation},
		}},
		{"text inside unfinished message", 0, []streamStep{
			{op: OpText, wantOp: OpText},
			{fin: true, op: OpText, wantErr: ErrUnfinishedMessage},
		}},
		{"binary inside unfinished message", 0, []streamStep{
			{op: OpText, wantOp: OpText},
			{op: OpContinuation, wantOp: OpText},
			{fin: true, op: OpBinary, wantErr: ErrUnfinishedMessage},
		}},
		{"rejected frame leaves state alone", 0, []streamStep{
			{op: OpText, wantOp: OpText},
			{fin: true, op: OpBinary, wantErr: ErrUnfinishedMessage},
			{fin: true, op: OpContinuation, wantOp: OpText},
			{fin: true, op: OpContinuation, wantErr: ErrContinuation},
			{fin: true, op: OpBinary, wantOp: OpBinary},
		}},
		{"RSV1 allowed on first frame", RSV1, []streamStep{
			{rsv: RSV1, op: OpText, wantOp: OpText},
			{fin: true, op: OpContinuation, wantOp: OpText},
			{fin: true, rsv: RSV1, op: OpBinary, wantOp: OpBinary},
		}},
		{"RSV1 not allowed on continuation", RSV1, []streamStep{
			{rsv: RSV1, op: OpText, wantOp: OpText},
			{fin: true, rsv: RSV1, op: OpContinuation, wantErr: ErrReservedBits},
		}},
		{"RSV1 without extension", 0, []streamStep{
			{fin: true, rsv: RSV1, op: OpText, wantErr: ErrReservedBits},
		}},
		{"RSV2 with only RSV1 allowed", RSV1, []streamStep{
			{fin: true, rsv: RSV2, op: OpBinary, wantErr: ErrReservedBits},
			{fin: true, rsv: RSV1 | RSV2, op: OpBinary, wantErr: ErrReservedBits},
		}},
		{"all RSV allowed", RSV1 | RSV2 | RSV3, []streamStep{
			{fin: true, rsv: RSV1 | RSV2 | RSV3, op: OpBinary, wantOp: OpBinary},
			{rsv: RSV3, op: OpText, wantOp: OpText},
			{fin: true, rsv: RSV3, op: OpContinuation, wantErr: ErrReservedBits},
		}},
		{"RSV on control frame even when allowed", RSV1 | RSV2 | RSV3, []streamStep{
			{fin: true, rsv: RSV1, op: OpPing, wantErr: ErrReservedBits},
			{fin: true, rsv: RSV2, op: OpPong, wantErr: ErrReservedBits},
			{fin: true, rsv: RSV3, op: OpClose, wantErr: ErrReservedBits},
		}},
		{"fragmented control", 0, []streamStep{
			{op: OpPing, wantErr: ErrFragmentedControl},
			{op: OpPong, wantErr: ErrFragmentedControl},
			{op: OpClose, wantErr: ErrFragmentedControl},
		}},
		{"control payload too long", 0, []streamStep{
			{fin: true, op: OpPing, length: 126, wantErr: ErrControlTooLong},
			{fin: true, op: OpPong, length: 126, wantErr: ErrControlTooLong},
			{fin: true, op: OpClose, length: 126, wantErr: ErrControlTooLong},
			{fin: true, op: OpClose, length: 1 << 40, wantErr: ErrControlTooLong},
			{fin: true, op: OpClose, length: 125, wantOp: OpClose},
		}},
	}
	for _, tt := range tests {
		for _, role := range roles {
			t.Run(tt.name+"/"+role.name, func(t *testing.T) {
				var s Stream
				for i, st := range tt.steps {
					h := hdr(role.wantMasked, st.fin, st.rsv, st.op, st.length)
					before := s
					op, err := s.Check(&h, role.wantMasked, tt.allowedRSV)
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d (%+v): err %v, want %v", i, h, err, st.wantErr)
					}
					if err != nil {
						if s != before {
							t.Fatalf("step %d: failed Check changed the stream from %+v to %+v", i, before, s)
						}
						continue
					}
					if op != st.wantOp {
						t.Fatalf("step %d (%+v): opcode %v, want %v", i, h, op, st.wantOp)
					}
				}
			})
		}
	}
}

func TestStreamReservedOpcodes(t *testing.T) {
	reserved := []Opcode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}
	for _, role := range roles {
		for _, op := range reserved {
			for _, inMessage := range []bool{false, true} {
				var s Stream
				if inMessage {
					start := hdr(role.wantMasked, false, 0, OpText, 1)
					if _, err := s.Check(&start, role.wantMasked, 0); err != nil {
						t.Fatal(err)
					}
				}
				h := hdr(role.wantMasked, true, 0, op, 0)
				if _, err := s.Check(&h, role.wantMasked, RSV1|RSV2|RSV3); err != ErrReservedOpcode {
					t.Errorf("%s: opcode %v: err %v, want %v", role.name, op, err, ErrReservedOpcode)
				}
				if s.InMessage() != inMessage {
					t.Errorf("%s: opcode %v changed InMessage to %v", role.name, op, s.InMessage())
				}
			}
		}
	}
}

// A server accepts only masked frames and a client only unmasked ones
// (section 5.1), whatever the opcode.
func TestStreamMasking(t *testing.T) {
	for _, op := range []Opcode{OpText, OpBinary, OpClose, OpPing, OpPong} {
		var server, client Stream
		unmasked := hdr(false, true, 0, op, 0)
		masked := hdr(true, true, 0, op, 0)
		if _, err := server.Check(&unmasked, true, 0); err != ErrUnmasked {
			t.Errorf("server, unmasked %v: err %v, want %v", op, err, ErrUnmasked)
		}
		if _, err := client.Check(&masked, false, 0); err != ErrMasked {
			t.Errorf("client, masked %v: err %v, want %v", op, err, ErrMasked)
		}
		if _, err := server.Check(&masked, true, 0); err != nil {
			t.Errorf("server, masked %v: %v", op, err)
		}
		if _, err := client.Check(&unmasked, false, 0); err != nil {
			t.Errorf("client, unmasked %v: %v", op, err)
		}
	}
	// Masking is checked on continuations too.
	var s Stream
	start := hdr(true, false, 0, OpBinary, 1)
	if _, err := s.Check(&start, true, 0); err != nil {
		t.Fatal(err)
	}
	cont := hdr(false, true, 0, OpContinuation, 1)
	if _, err := s.Check(&cont, true, 0); err != ErrUnmasked {
		t.Errorf("unmasked continuation on server: err %v, want %v", err, ErrUnmasked)
	}
}

func TestStreamInMessage(t *testing.T) {
	var s Stream
	check := func(h Header, want bool) {
		t.Helper()
		if _, err := s.Check(&h, false, 0); err != nil {
			t.Fatal(err)
		}
		if s.InMessage() != want {
			t.Fatalf("after %+v: InMessage %v, want %v", h, s.InMessage(), want)
		}
	}
	if s.InMessage() {
		t.Fatal("zero Stream is in a message")
	}
	check(hdr(false, false, 0, OpText, 1), true)
	check(hdr(false, true, 0, OpPing, 0), true)
	check(hdr(false, false, 0, OpContinuation, 1), true)
	check(hdr(false, true, 0, OpContinuation, 1), false)
	check(hdr(false, true, 0, OpBinary, 1), false)
}

// Every error Check returns fails the connection with 1002 (section 7.4.1).
func TestStreamErrorCodes(t *testing.T) {
	for _, err := range []*Error{ErrReservedBits, ErrReservedOpcode, ErrFragmentedControl,
		ErrControlTooLong, ErrUnmasked, ErrMasked, ErrContinuation, ErrUnfinishedMessage} {
		if err.Code != CodeProtocolError {
			t.Errorf("%v: code %d, want %d", err, err.Code, CodeProtocolError)
		}
		if err.Error() != "websocket: "+err.Reason {
			t.Errorf("Error() = %q", err.Error())
		}
	}
}

func BenchmarkStreamCheck(b *testing.B) {
	frames := []Header{
		hdr(true, false, RSV1, OpText, 100),
		hdr(true, true, 0, OpPing, 4),
		hdr(true, true, 0, OpContinuation, 100),
	}
	var s Stream
	b.ReportAllocs()
	for b.Loop() {
		for i := range frames {
			if _, err := s.Check(&frames[i], true, RSV1); err != nil {
				b.Fatal(err)
			}
		}
	}
}
