package conformance

import (
	"fmt"
	"testing"
)

// asciiOf returns n bytes of printable ASCII text.
func asciiOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// bytesOf returns n bytes running through every byte value.
func bytesOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// TestFraming covers RFC 6455 section 5.2 (Autobahn section 1): messages of
// every length encoding are echoed exactly, in single frames whose headers
// use the minimal length encoding, and lengths not minimally encoded fail.
func TestFraming(t *testing.T) {
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536, 1 << 20}
	var cases []wireCase
	for i, size := range sizes {
		cases = append(cases, wireCase{
			name: fmt.Sprintf("1.1.%d text %d bytes", i+1, size),
			run: func(p *rawPeer) {
				payload := asciiOf(size)
				p.send(rawFrame{op: opText, payload: payload})
				p.expectEcho(opText, payload)
			},
		})
	}
	for i, size := range sizes {
		cases = append(cases, wireCase{
			name: fmt.Sprintf("1.2.%d binary %d bytes", i+1, size),
			run: func(p *rawPeer) {
				payload := bytesOf(size)
				p.send(binaryMsg(payload))
				p.expectEcho(opBinary, payload)
			},
		})
	}
	cases = append(cases,
		wireCase{
			name: "1.3.1 messages of every length form back to back",
			run: func(p *rawPeer) {
				var frames []rawFrame
				for _, size := range []int{0, 1, 125, 126, 65535, 65536, 3} {
					frames = append(frames, text(string(asciiOf(size))), binaryMsg(bytesOf(size)))
				}
				p.send(frames...)
				for _, f := range frames {
					p.expectEcho(f.op, f.payload)
				}
			},
		},
		// Section 5.2: "the minimal number of bytes MUST be used to
		// encode the length"; our endpoint treats anything else as a
		// protocol error.
		wireCase{
			name: "1.4.1 length 0 in the 16-bit form",
			run: func(p *rawPeer) {
				p.send(rawFrame{op: opText, lengthBytes: 2})
				p.expectFail(1002, ioTimeout)
			},
		},
		wireCase{
			name: "1.4.2 length 125 in the 16-bit form",
			run: func(p *rawPeer) {
				p.send(rawFrame{op: opBinary, payload: bytesOf(125), lengthBytes: 2})
				p.expectFail(1002, ioTimeout)
			},
		},
		wireCase{
			name: "1.4.3 length 126 in the 64-bit form",
			run: func(p *rawPeer) {
				p.send(rawFrame{op: opBinary, payload: bytesOf(126), lengthBytes: 8})
				p.expectFail(1002, ioTimeout)
			},
		},
		wireCase{
			name: "1.4.4 length 65535 in the 64-bit form, header only",
			run: func(p *rawPeer) {
				p.send(rawFrame{op: opBinary, length: 65535, lengthBytes: 8})
				p.expectFail(1002, ioTimeout)
			},
		},
		wireCase{
			name: "1.4.5 64-bit length with its most significant bit set, header only",
			run: func(p *rawPeer) {
				p.send(rawFrame{op: opBinary, length: 1, topBit: true})
				p.expectFail(1002, ioTimeout)
			},
		},
		wireCase{
			name: "1.4.6 echo, then a non-minimal length",
			run: func(p *rawPeer) {
				p.send(text("before"), rawFrame{op: opText, payload: asciiOf(5), lengthBytes: 2})
				p.expectText("before")
				p.expectFail(1002, ioTimeout)
			},
		},
	)
	runWireCases(t, cases)
}
