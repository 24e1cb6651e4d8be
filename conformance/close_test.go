package conformance

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestClose covers the closing handshake, RFC 6455 sections 5.5.1, 7.1 and
// 7.4 (Autobahn section 7): the library answers a close frame with the same
// code, ignores data after it, fails on close frames that break the rules,
// and the server closes TCP first.
func TestClose(t *testing.T) {
	cases := []wireCase{
		{name: "7.1.1 close without payload", run: func(p *rawPeer) {
			p.send(closeEmpty())
			p.expectCloseReply(1005)
		}},
		{name: "7.1.2 close 1000 with a reason", run: func(p *rawPeer) {
			p.send(closeFrame(1000, "bye"))
			p.expectCloseReply(1000)
		}},
		{name: "7.1.3 text after the close frame is ignored", run: func(p *rawPeer) {
			p.send(closeFrame(1000, ""), text("ignored"))
			p.expectCloseReply(1000) // and nothing after it
		}},
		{name: "7.1.4 text, then close", run: func(p *rawPeer) {
			p.send(text("before"), closeFrame(1000, ""))
			p.expectText("before")
			p.expectCloseReply(1000)
		}},
		{name: "7.1.5 ping after the close frame is not answered", run: func(p *rawPeer) {
			p.send(closeFrame(1000, ""), ping([]byte("after")))
			p.expectCloseReply(1000)
		}},
		{name: "7.1.6 two close frames get one answer", run: func(p *rawPeer) {
			p.send(closeFrame(1000, ""), closeFrame(1001, ""))
			p.expectCloseReply(1000)
		}},
		{name: "7.1.7 large message, close, ping", run: func(p *rawPeer) {
			msg := bytesOf(256 << 10)
			p.send(binaryMsg(msg), closeFrame(1000, ""), ping([]byte("after")))
			p.expectEcho(opBinary, msg)
			p.expectCloseReply(1000)
		}},
		{name: "7.1.8 the server closes TCP first", run: func(p *rawPeer) {
			p.send(closeFrame(1000, ""))
			if p.role == roleServer {
				// expectCloseReply waits for our server's FIN before
				// the raw client closes anything.
				p.expectCloseReply(1000)
				return
			}
			f := p.read(ioTimeout)
			p.checkClose(f, 1000)
			// Section 7.1.1: the client waits for the server to close.
			p.expectOpen(100 * time.Millisecond)
			select {
			case <-p.ep.done:
				p.t.Fatal("our client ended its connection before the server closed TCP")
			default:
			}
			p.closeFirst()
			if err := p.ep.wait(p.t); websocket.CloseStatus(err) != 1000 {
				p.t.Errorf("our client ended with %v, want a *websocket.CloseError with code 1000", err)
			}
		}},
		{name: "7.1.9 close between the fragments of a message", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte("unfinished"), true), closeFrame(1000, ""))
			p.expectCloseReply(1000)
		}},
		{name: "7.2.1 the library closes with 1000 and a reason", run: func(p *rawPeer) {
			closed := make(chan error, 1)
			go func() { closed <- p.ep.conn.Close(websocket.StatusNormalClosure, "bye") }()
			f := p.read(ioTimeout)
			want := []byte{0x88, 0x05, 0x03, 0xe8, 'b', 'y', 'e'}
			got := append(bytes.Clone(f.header), f.payload...)
			if f.masked {
				want = append(append([]byte{0x88, 0x85}, f.key[:]...), want[2:]...)
			}
			if !bytes.Equal(got, want) {
				p.t.Fatalf("close frame % x (unmasked), want % x", got, want)
			}
			// Data may still come before the peer's close frame: the
			// library discards it (section 1.4) and sends nothing after
			// its close frame, not even a pong (Autobahn 7.1.3).
			p.send(text("late"), ping([]byte("late")), closeFrame(1000, ""))
			if p.role == roleServer {
				p.expectEOF() // our server closes TCP first
				p.conn.Close()
			} else {
				p.expectOpen(100 * time.Millisecond)
				p.closeFirst()
			}
			select {
			case err := <-closed:
				if err != nil {
					p.t.Errorf("Close: %v, want nil", err)
				}
			case <-time.After(ioTimeout):
				p.t.Fatal("Close did not return")
			}
		}},
		{name: "7.2.2 the library closes and the peer does not answer", run: func(p *rawPeer) {
			closed := make(chan error, 1)
			go func() { closed <- p.ep.conn.Close(websocket.StatusGoingAway, "") }()
			f := p.read(ioTimeout)
			p.checkClose(f, 1001)
			p.conn.Close() // no close frame back: Close must still return
			select {
			case err := <-closed:
				if err == nil {
					p.t.Error("Close returned nil, but the peer never answered")
				}
			case <-time.After(2 * ioTimeout):
				p.t.Fatal("Close did not return")
			}
		}},
		{name: "7.3.1 close payload of 1 byte", run: func(p *rawPeer) {
			p.send(rawFrame{op: opClose, payload: []byte{0x03}})
			p.expectFail(1002, ioTimeout)
		}},
		{name: "7.3.2 close 1000 with a 123-byte reason", run: func(p *rawPeer) {
			p.send(closeFrame(1000, strings.Repeat("*", 123)))
			p.expectCloseReply(1000)
		}},
		{name: "7.3.3 close payload of 126 bytes", run: func(p *rawPeer) {
			p.send(closeFrame(1000, strings.Repeat("*", 124)))
			p.expectFail(1002, ioTimeout)
		}},
		{name: "7.5.1 close reason of invalid UTF-8", run: func(p *rawPeer) {
			p.send(closeFrame(1000, kosme+"\xed\xa0\x80edited"))
			p.expectFail(1007, ioTimeout)
		}},
		{name: "7.5.2 close reason of valid multi-byte UTF-8", run: func(p *rawPeer) {
			p.send(closeFrame(1000, kosme))
			p.expectCloseReply(1000)
		}},
	}
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, wireCase{
			name: fmt.Sprintf("7.7.%d valid close code %d", i+1, code),
			run: func(p *rawPeer) {
				p.send(closeFrame(code, "reason"))
				p.expectCloseReply(code)
			},
		})
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, wireCase{
			name: fmt.Sprintf("7.9.%d invalid close code %d", i+1, code),
			run: func(p *rawPeer) {
				p.send(closeFrame(code, ""))
				p.expectFail(1002, ioTimeout)
			},
		})
	}
	runWireCases(t, cases)
}
