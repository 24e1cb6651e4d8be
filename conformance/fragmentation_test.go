package conformance

import (
	"bytes"
	"testing"
)

// fragments cuts payload into a message of fragments of the given sizes
// (the last takes the rest).
func fragments(op byte, payload []byte, sizes ...int) []rawFrame {
	var frames []rawFrame
	for _, n := range sizes {
		n = min(n, len(payload))
		frames = append(frames, fragment(op, payload[:n], true))
		payload, op = payload[n:], opContinuation
	}
	return append(frames, fragment(op, payload, false))
}

// TestFragmentation covers RFC 6455 section 5.4 (Autobahn section 5): a
// fragmented message is delivered as one, control frames may come between
// its fragments and are answered at once, control frames may not be
// fragmented, and a broken sequence of fragments fails the connection.
func TestFragmentation(t *testing.T) {
	cases := []wireCase{
		{name: "5.1 ping in 2 fragments", run: func(p *rawPeer) {
			p.send(rawFrame{op: opPing, payload: []byte("frag"), more: true}, fragment(opContinuation, []byte("ment"), false))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.2 pong in 2 fragments", run: func(p *rawPeer) {
			p.send(rawFrame{op: opPong, payload: []byte("frag"), more: true}, fragment(opContinuation, []byte("ment"), false))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.3 close with FIN=0", run: func(p *rawPeer) {
			p.send(rawFrame{op: opClose, payload: closePayload(1000, ""), more: true})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.4 text in 2 fragments", run: func(p *rawPeer) {
			p.send(fragments(opText, []byte("fragment1fragment2"), 9)...)
			p.expectText("fragment1fragment2")
		}},
		{name: "5.5 binary in 2 fragments", run: func(p *rawPeer) {
			p.send(fragments(opBinary, bytesOf(300), 130)...)
			p.expectEcho(opBinary, bytesOf(300))
		}},
		{name: "5.6 text in 10 fragments of every length form", run: func(p *rawPeer) {
			msg := asciiOf(70000)
			p.send(fragments(opText, msg, 1, 0, 125, 126, 3, 65536, 7, 0, 10)...)
			p.expectEcho(opText, msg)
		}},
		{name: "5.7 binary in 64 fragments", run: func(p *rawPeer) {
			msg := bytesOf(64 * 65 / 2)
			sizes := make([]int, 63)
			for i := range sizes {
				sizes[i] = i + 1
			}
			p.send(fragments(opBinary, msg, sizes...)...)
			p.expectEcho(opBinary, msg)
		}},
		{name: "5.8 text in 3 empty fragments", run: func(p *rawPeer) {
			p.send(fragments(opText, nil, 0, 0)...)
			p.expectText("")
		}},
		{name: "5.9 empty first and last fragments", run: func(p *rawPeer) {
			p.send(fragments(opBinary, []byte("middle"), 0, 6)...)
			p.expectEcho(opBinary, []byte("middle"))
		}},
		{name: "5.10 ping between fragments answered before the message", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("fragment1"), true), ping([]byte("between")), fragment(opContinuation, []byte("fragment2"), false))
			p.expectPong([]byte("between"))
			p.expectText("fragment1fragment2")
		}},
		{name: "5.11 ping after the first fragment answered before the rest is sent", run: func(p *rawPeer) {
			// The pong must come while the message is unfinished: the
			// last fragment is sent only after the pong has arrived.
			p.send(fragment(opText, []byte("fragment1"), true), ping([]byte("first")))
			p.expectPong([]byte("first"))
			p.send(fragment(opContinuation, []byte("fragment2"), true), pong([]byte("unsolicited")), ping([]byte("second")))
			p.expectPong([]byte("second"))
			p.send(fragment(opContinuation, []byte("fragment3"), false))
			p.expectText("fragment1fragment2fragment3")
		}},
		{name: "5.12 pings between 1 KiB fragments of a binary message", run: func(p *rawPeer) {
			msg := bytesOf(4 << 10)
			frames := fragments(opBinary, msg, 1024, 1024, 1024)
			var interleaved []rawFrame
			for i, f := range frames {
				interleaved = append(interleaved, f)
				if i < len(frames)-1 {
					interleaved = append(interleaved, ping([]byte{byte(i)}))
				}
			}
			p.send(interleaved...)
			for i := range len(frames) - 1 {
				p.expectPong([]byte{byte(i)})
			}
			p.expectEcho(opBinary, msg)
		}},
		{name: "5.13 continuation with no message started", run: func(p *rawPeer) {
			p.send(fragment(opContinuation, []byte("orphan"), false))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.14 continuation with FIN=0 and no message started", run: func(p *rawPeer) {
			p.send(fragment(opContinuation, []byte("orphan"), true))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.15 continuation after a finished message", run: func(p *rawPeer) {
			p.send(append(fragments(opText, []byte("fragment1fragment2"), 9),
				fragment(opContinuation, []byte("fragment3"), true), fragment(opText, []byte("fragment4"), false))...)
			p.expectText("fragment1fragment2")
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.16 text frame inside an unfinished text message", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("first"), true), text("intruder"))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.17 binary frame inside an unfinished text message", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("first"), true), binaryMsg([]byte("intruder")))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.18 text fragment inside an unfinished binary message", run: func(p *rawPeer) {
			p.send(fragment(opBinary, []byte("first"), true), fragment(opText, []byte("intruder"), true))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "5.19 control frames between fragments, then a new message", run: func(p *rawPeer) {
			p.send(fragment(opBinary, []byte{1}, true), ping(nil), fragment(opContinuation, []byte{2}, true),
				pong(nil), fragment(opContinuation, []byte{3}, false), text("next"))
			p.expectPong(nil)
			p.expectEcho(opBinary, []byte{1, 2, 3})
			p.expectText("next")
		}},
		{name: "5.20 large message split into 1-byte fragments", run: func(p *rawPeer) {
			msg := bytes.Repeat([]byte("0123456789"), 20)
			sizes := make([]int, len(msg)-1)
			for i := range sizes {
				sizes[i] = 1
			}
			p.send(fragments(opText, msg, sizes...)...)
			p.expectEcho(opText, msg)
		}},
	}
	runWireCases(t, cases)
}
