package conformance

import (
	"fmt"
	"testing"
)

// TestMasking covers RFC 6455 section 5.1 and 5.3: a server fails the
// connection on an unmasked frame and a client on a masked one, both with
// 1002 (section 5.1 leaves the code open; 1002 is the protocol error), and
// the client masks every frame with a fresh, unpredictable key.
func TestMasking(t *testing.T) {
	zero := [4]byte{}
	cases := []wireCase{
		{name: "9.1.1 unmasked text to the server", roles: serverOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, payload: []byte("unmasked"), mask: maskOff})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.1.2 unmasked ping to the server", roles: serverOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opPing, payload: []byte("unmasked"), mask: maskOff})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.1.3 unmasked close to the server", roles: serverOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opClose, payload: closePayload(1000, ""), mask: maskOff})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.1.4 unmasked continuation to the server", roles: serverOnly, run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("masked"), true), rawFrame{op: opContinuation, payload: []byte("unmasked"), mask: maskOff})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.1.5 unmasked text after a message", roles: serverOnly, run: func(p *rawPeer) {
			p.send(text("before"), rawFrame{op: opText, payload: []byte("unmasked"), mask: maskOff})
			p.expectText("before")
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.1.6 all-zero masking key", roles: serverOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, payload: []byte("zero key"), key: &zero})
			p.expectText("zero key")
		}},
		{name: "9.2.1 masked text to the client", roles: clientOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, payload: []byte("masked"), mask: maskOn})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.2.2 masked ping to the client", roles: clientOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opPing, payload: []byte("masked"), mask: maskOn})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.2.3 masked close to the client", roles: clientOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opClose, payload: closePayload(1000, ""), mask: maskOn})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.2.4 masked continuation to the client", roles: clientOnly, run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("unmasked"), true), rawFrame{op: opContinuation, payload: []byte("masked"), mask: maskOn})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.2.5 masked frame with an all-zero key to the client", roles: clientOnly, run: func(p *rawPeer) {
			p.send(rawFrame{op: opBinary, payload: []byte("masked"), mask: maskOn, key: &zero})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "9.3.1 the client's masking keys differ from frame to frame", roles: clientOnly, run: func(p *rawPeer) {
			// Section 5.3: the key must be unpredictable, so fresh for
			// each frame. 100 random 32-bit keys collide with a
			// probability near 1e-6; allow a few repeats all the same.
			var frames []rawFrame
			for i := range 100 {
				frames = append(frames, text(fmt.Sprintf("message %d", i)))
			}
			p.send(frames...)
			keys := map[[4]byte]bool{}
			for _, f := range frames {
				keys[p.expectFrame(opText, f.payload).key] = true
			}
			if len(keys) < 95 {
				p.t.Errorf("100 frames used %d distinct masking keys, want at least 95", len(keys))
			}
		}},
	}
	runWireCases(t, cases)
}
