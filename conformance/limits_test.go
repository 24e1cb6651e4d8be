package conformance

import (
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// TestLimits covers the read limit (RFC 6455 section 10.4): with the default
// limit, websocket.DefaultReadLimit, a message up to the limit is echoed and
// one over it fails the connection with 1009 as soon as the header of the
// frame that crosses the limit arrives. The cases send only that header,
// which proves the library buffers nothing first.
func TestLimits(t *testing.T) {
	const limit = websocket.DefaultReadLimit
	cases := []wireCase{
		{name: "8.1.1 text of exactly the limit", run: func(p *rawPeer) {
			msg := asciiOf(limit)
			p.send(text(string(msg)))
			p.expectEcho(opText, msg)
		}},
		{name: "8.1.2 binary of exactly the limit in 4 fragments", run: func(p *rawPeer) {
			msg := bytesOf(limit)
			p.send(fragments(opBinary, msg, limit/4, limit/4, limit/4)...)
			p.expectEcho(opBinary, msg)
		}},
		{name: "8.2.1 text header announcing the limit + 1", run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, length: limit + 1})
			p.expectFail(1009, failFast)
		}},
		{name: "8.2.2 binary header announcing the limit + 1", run: func(p *rawPeer) {
			p.send(rawFrame{op: opBinary, length: limit + 1})
			p.expectFail(1009, failFast)
		}},
		{name: "8.2.3 header announcing 2^63-1 bytes", run: func(p *rawPeer) {
			p.send(rawFrame{op: opBinary, length: 1<<63 - 1})
			p.expectFail(1009, failFast)
		}},
		{name: "8.2.4 echo, then a header over the limit", run: func(p *rawPeer) {
			p.send(text("before"), rawFrame{op: opBinary, length: limit + 1})
			p.expectText("before")
			p.expectFail(1009, failFast)
		}},
		{name: "8.3.1 fragments summing over the limit: fails at the crossing header", run: func(p *rawPeer) {
			p.send(fragment(opText, asciiOf(20000), true), rawFrame{op: opContinuation, length: limit - 20000 + 1, more: true})
			p.expectFail(1009, failFast)
		}},
		{name: "8.3.2 fragments reaching the limit, then a 1-byte fragment", run: func(p *rawPeer) {
			p.send(fragment(opBinary, bytesOf(limit/2), true), fragment(opContinuation, bytesOf(limit/2), true),
				rawFrame{op: opContinuation, length: 1})
			p.expectFail(1009, failFast)
		}},
		{name: "8.3.3 control frames between fragments do not count", run: func(p *rawPeer) {
			msg := bytesOf(limit)
			p.send(fragment(opBinary, msg[:limit/2], true), ping(bytesOf(125)), pong(bytesOf(125)),
				fragment(opContinuation, msg[limit/2:], false))
			p.expectPong(bytesOf(125))
			p.expectEcho(opBinary, msg)
		}},
	}
	for i := range cases {
		cases[i].defaultLimit = true
	}
	runWireCases(t, cases)
}
