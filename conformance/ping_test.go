package conformance

import (
	"bytes"
	"fmt"
	"testing"
)

// TestPingPong covers RFC 6455 sections 5.5.2 and 5.5.3 (Autobahn section
// 2): a ping is answered by a pong with the identical payload, unsolicited
// pongs are ignored, and a ping that breaks the control frame rules fails
// the connection.
func TestPingPong(t *testing.T) {
	pingEcho := func(payload []byte) func(p *rawPeer) {
		return func(p *rawPeer) {
			p.send(ping(payload))
			p.expectPong(payload)
		}
	}
	cases := []wireCase{
		{name: "2.1 ping without payload", run: func(p *rawPeer) {
			p.send(ping(nil))
			f := p.read(ioTimeout)
			if p.role == roleServer && !bytes.Equal(f.header, []byte{0x8a, 0x00}) {
				p.t.Errorf("pong % x, want 8a 00", f.header)
			}
			if f.op != opPong || len(f.payload) != 0 {
				p.t.Fatalf("got %v, want an empty pong", f)
			}
		}},
		{name: "2.2 ping with a small text payload", run: pingEcho([]byte("Hello, world!"))},
		{name: "2.3 ping with a small binary payload", run: pingEcho([]byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff})},
		{name: "2.4 ping with a 125-byte binary payload", run: pingEcho(bytesOf(125))},
		{name: "2.5 ping with a 126-byte payload", run: func(p *rawPeer) {
			p.send(ping(bytesOf(126)))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "2.6 ping with 125 bytes of invalid UTF-8", run: pingEcho(bytes.Repeat([]byte{0xff}, 125))},
		{name: "2.7 unsolicited pong without payload", run: func(p *rawPeer) {
			p.send(pong(nil), text("after"))
			p.expectText("after")
		}},
		{name: "2.8 unsolicited pong with payload", run: func(p *rawPeer) {
			p.send(pong([]byte("unsolicited pong payload")), text("after"))
			p.expectText("after")
		}},
		{name: "2.9 unsolicited pong, then ping", run: func(p *rawPeer) {
			p.send(pong([]byte("unsolicited")), ping([]byte("ping payload")))
			p.expectPong([]byte("ping payload"))
		}},
		{name: "2.10 ten pings back to back", run: func(p *rawPeer) {
			var frames []rawFrame
			for i := range 10 {
				frames = append(frames, ping(fmt.Appendf(nil, "ping %d", i)))
			}
			p.send(frames...)
			for _, f := range frames {
				p.expectPong(f.payload)
			}
		}},
		{name: "2.11 pings, pongs and messages interleaved", run: func(p *rawPeer) {
			p.send(text("one"), ping([]byte("a")), pong([]byte("x")), binaryMsg([]byte{2}), ping([]byte("b")), text("three"))
			p.expectText("one")
			p.expectPong([]byte("a"))
			p.expectEcho(opBinary, []byte{2})
			p.expectPong([]byte("b"))
			p.expectText("three")
		}},
		{name: "2.12 ping with FIN=0", run: func(p *rawPeer) {
			p.send(rawFrame{op: opPing, payload: []byte("fragmented"), more: true})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "2.13 pong with a 126-byte payload", run: func(p *rawPeer) {
			p.send(pong(bytesOf(126)))
			p.expectFail(1002, ioTimeout)
		}},
	}
	runWireCases(t, cases)
}
