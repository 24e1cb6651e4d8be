package conformance

import (
	"fmt"
	"testing"
	"time"
)

// kosme is "κόσμε", the Greek word of Markus Kuhn's UTF-8 test file that
// Autobahn uses.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

// failFast is how soon the library must fail the connection once an invalid
// sequence has arrived, while the rest of the message has not.
const failFast = 2 * time.Second

// ones returns n sizes of 1, to cut a message into 1-byte fragments.
func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// TestUTF8 covers RFC 6455 section 8.1 (Autobahn section 6): valid text is
// echoed however it is fragmented, invalid text fails the connection with
// 1007, and it fails as soon as the invalid byte arrives, inside an
// unfinished message and inside an unfinished frame.
func TestUTF8(t *testing.T) {
	valid := []struct{ name, s string }{
		{"mixed text", "Hello-µ@ßöäüàá-UTF-8!!"},
		{"κόσμε", kosme},
		{"U+0000", "a\x00b"},
		{"U+007F", "a\x7fb"},
		{"U+0080", "a\u0080b"},
		{"U+07FF", "a\u07ffb"},
		{"U+0800", "a\u0800b"},
		{"U+D7FF", "a\ud7ffb"},
		{"U+E000", "a\ue000b"},
		{"U+FFFD", "a\ufffdb"},
		{"U+FFFF", "a\uffffb"},
		{"U+FFFE, a noncharacter", "a\ufffeb"},
		{"U+FDD0, a noncharacter", "a\ufdd0b"},
		{"U+10000", "a\U00010000b"},
		{"U+1D11E 𝄞", "a\U0001d11eb"},
		{"U+10FFFF, the largest code point", "a\U0010ffffb"},
	}
	var cases []wireCase
	for i, v := range valid {
		cases = append(cases, wireCase{
			name: fmt.Sprintf("6.1.%d valid %s, whole and split at every byte", i+1, v.name),
			run: func(p *rawPeer) {
				msg := []byte(v.s)
				p.send(text(v.s))
				p.expectText(v.s)
				for cut := 1; cut < len(msg); cut++ {
					p.send(fragments(opText, msg, cut)...)
					p.expectText(v.s)
				}
				p.send(fragments(opText, msg, ones(len(msg)-1)...)...)
				p.expectText(v.s)
			},
		})
	}

	invalid := []struct {
		name string
		seq  string
		end  bool // invalid only because the message ends there
	}{
		{name: "overlong 2-byte slash C0 AF", seq: "\xc0\xaf"},
		{name: "overlong 3-byte slash E0 80 AF", seq: "\xe0\x80\xaf"},
		{name: "overlong 4-byte slash F0 80 80 AF", seq: "\xf0\x80\x80\xaf"},
		{name: "largest overlong 2-byte C1 BF", seq: "\xc1\xbf"},
		{name: "largest overlong 3-byte E0 9F BF", seq: "\xe0\x9f\xbf"},
		{name: "largest overlong 4-byte F0 8F BF BF", seq: "\xf0\x8f\xbf\xbf"},
		{name: "surrogate ED A0 80", seq: "\xed\xa0\x80"},
		{name: "surrogate ED BF BF", seq: "\xed\xbf\xbf"},
		{name: "surrogate pair ED A0 80 ED B0 80", seq: "\xed\xa0\x80\xed\xb0\x80"},
		{name: "above U+10FFFF F4 90 80 80", seq: "\xf4\x90\x80\x80"},
		{name: "lead byte F5", seq: "\xf5\x80\x80\x80"},
		{name: "5-byte form F8 88 80 80 80", seq: "\xf8\x88\x80\x80\x80"},
		{name: "6-byte form FC 84 80 80 80 80", seq: "\xfc\x84\x80\x80\x80\x80"},
		{name: "byte FE", seq: "\xfe"},
		{name: "byte FF", seq: "\xff"},
		{name: "lone continuation 80", seq: "\x80"},
		{name: "lone continuation BF", seq: "\xbf"},
		{name: "2-byte lead then ASCII C2 41", seq: "\xc2\x41"},
		{name: "3-byte sequence cut by ASCII E2 82 41", seq: "\xe2\x82\x41"},
		{name: "truncated 2-byte CE at the end", seq: "\xce", end: true},
		{name: "truncated 3-byte E2 82 at the end", seq: "\xe2\x82", end: true},
		{name: "truncated 4-byte F0 9F 98 at the end", seq: "\xf0\x9f\x98", end: true},
	}
	for i, v := range invalid {
		msg := kosme + v.seq
		if !v.end {
			msg += "edited"
		}
		cases = append(cases,
			wireCase{
				name: fmt.Sprintf("6.2.%d invalid: %s", i+1, v.name),
				run: func(p *rawPeer) {
					p.send(text(msg))
					p.expectFail(1007, ioTimeout)
				},
			},
			wireCase{
				name: fmt.Sprintf("6.3.%d invalid across fragments: %s", i+1, v.name),
				run: func(p *rawPeer) {
					// Cut inside the sequence, after its first byte.
					p.send(fragments(opText, []byte(msg), len(kosme)+1)...)
					p.expectFail(1007, ioTimeout)
				},
			},
		)
	}

	// Fail fast (Autobahn 6.4): the rest of the message is never sent.
	cases = append(cases,
		wireCase{name: "6.4.1 fail fast: invalid second fragment, message unfinished", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte(kosme), true), fragment(opContinuation, []byte("\xf4\x90\x80\x80"), true))
			p.expectFail(1007, failFast)
		}},
		wireCase{name: "6.4.2 fail fast: invalid first fragment, message unfinished", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte(kosme+"\xed\xa0\x80edited"), true))
			p.expectFail(1007, failFast)
		}},
		wireCase{name: "6.4.3 fail fast: sequence completed invalid by the next fragment", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte(kosme+"\xf4"), true), fragment(opContinuation, []byte("\x90"), true))
			p.expectFail(1007, failFast)
		}},
		wireCase{name: "6.4.4 fail fast: 10 of 100 announced bytes, invalid", run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, length: 100, payload: []byte("hello\xf4\x90\x80\x80x")})
			p.expectFail(1007, failFast)
		}},
		wireCase{name: "6.4.5 fail fast: unfinished frame ending inside an invalid sequence", run: func(p *rawPeer) {
			// ED A0 is already a surrogate: no third byte is needed to know.
			p.send(rawFrame{op: opText, length: 100, payload: []byte(kosme + "\xed\xa0")})
			p.expectFail(1007, failFast)
		}},
		wireCase{name: "6.4.6 fail fast: 1 of 50 announced bytes of a continuation, invalid", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte(kosme), true), rawFrame{op: opContinuation, length: 50, payload: []byte{0xc0}})
			p.expectFail(1007, failFast)
		}},
		// Control frames carry bytes, not text: they neither are checked
		// as UTF-8 nor disturb the check of the message around them.
		wireCase{name: "6.5.1 a character split by a ping with invalid UTF-8", run: func(p *rawPeer) {
			p.send(fragment(opText, []byte(kosme[:1]), true), ping([]byte{0xed, 0xa0, 0x80, 0xff}),
				fragment(opContinuation, []byte(kosme[1:]), false))
			p.expectPong([]byte{0xed, 0xa0, 0x80, 0xff})
			p.expectText(kosme)
		}},
		wireCase{name: "6.5.2 a 4-byte character split by a pong and a ping", run: func(p *rawPeer) {
			const clef = "\U0001d11e"
			p.send(fragment(opText, []byte(clef[:2]), true), pong([]byte{0xf0}), fragment(opContinuation, []byte(clef[2:3]), true),
				ping([]byte{0x9d}), fragment(opContinuation, []byte(clef[3:]), false))
			p.expectPong([]byte{0x9d})
			p.expectText(clef)
		}},
	)
	runWireCases(t, cases)
}
