package conformance

import (
	"fmt"
	"testing"
)

// TestReservedBits covers the reserved bits of RFC 6455 section 5.2
// (Autobahn section 3): with no extension negotiated, a frame of any kind
// with RSV1, RSV2 or RSV3 set fails the connection with 1002. A message
// before the bad frame, in the same write, is echoed first, and a ping after
// it is not answered.
func TestReservedBits(t *testing.T) {
	kinds := []struct {
		name   string
		before []rawFrame // frames that make the bad frame possible
		bad    rawFrame
	}{
		{"text", nil, text("reserved bits")},
		{"binary", nil, binaryMsg(bytesOf(10))},
		{"ping", nil, ping([]byte("reserved bits"))},
		{"pong", nil, pong([]byte("reserved bits"))},
		{"close", nil, closeFrame(1000, "")},
		{"continuation", []rawFrame{fragment(opText, []byte("first "), true)}, fragment(opContinuation, []byte("last"), false)},
		{"first fragment", nil, fragment(opBinary, bytesOf(3), true)},
	}
	bits := []struct {
		name string
		rsv  byte
	}{
		{"RSV1", rsv1},
		{"RSV2", rsv2},
		{"RSV3", rsv3},
		{"RSV1+RSV2+RSV3", rsv1 | rsv2 | rsv3},
	}
	var cases []wireCase
	for i, k := range kinds {
		for j, b := range bits {
			cases = append(cases, wireCase{
				name: fmt.Sprintf("3.%d.%d %s with %s", i+1, j+1, k.name, b.name),
				run: func(p *rawPeer) {
					bad := k.bad
					bad.rsv = b.rsv
					frames := append([]rawFrame{text("before")}, k.before...)
					frames = append(frames, bad, ping([]byte("after")))
					p.send(frames...)
					p.expectText("before")
					p.expectFail(1002, ioTimeout)
				},
			})
		}
	}
	runWireCases(t, cases)
}

// TestOpcodes covers the reserved opcodes of RFC 6455 section 5.2 (Autobahn
// section 4): a frame with one fails the connection with 1002, alone, after
// a valid message in the same write, or inside a fragmented message.
func TestOpcodes(t *testing.T) {
	var cases []wireCase
	for i, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		kind := "non-control"
		if op >= 0x8 {
			kind = "control"
		}
		n := fmt.Sprintf("4.%d", i+1)
		cases = append(cases,
			wireCase{
				name: fmt.Sprintf("%s.1 %s opcode %#x alone", n, kind, op),
				run: func(p *rawPeer) {
					p.send(rawFrame{op: op})
					p.expectFail(1002, ioTimeout)
				},
			},
			wireCase{
				name: fmt.Sprintf("%s.2 %s opcode %#x with payload after a message", n, kind, op),
				run: func(p *rawPeer) {
					p.send(text("before"), rawFrame{op: op, payload: []byte("reserved opcode")}, ping([]byte("after")))
					p.expectText("before")
					p.expectFail(1002, ioTimeout)
				},
			},
			wireCase{
				name: fmt.Sprintf("%s.3 %s opcode %#x inside a fragmented message", n, kind, op),
				run: func(p *rawPeer) {
					p.send(fragment(opText, []byte("first"), true), rawFrame{op: op, payload: []byte("x")},
						fragment(opContinuation, []byte("last"), false))
					p.expectFail(1002, ioTimeout)
				},
			},
		)
	}
	runWireCases(t, cases)
}
