package conformance

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The cases of RFC 7692, permessage-deflate (Autobahn sections 12 and 13):
// compressed messages echoed in both directions, the negotiation of every
// parameter, and the failures.

// deflateSetup is how a compression run negotiates. The client offers offer
// and the server answers response. Against our server, the raw client sends
// offer (one header line each) and our server, with the options server, must
// answer exactly response ("": no extension). Against our client, Dial with
// the options client must send exactly offer (one line, or none) and the raw
// server answers response.
type deflateSetup struct {
	offer    []string
	response string
	server   websocket.CompressionOptions
	client   websocket.CompressionOptions

	defaultLimit bool // the endpoint keeps websocket.DefaultReadLimit
	writeBuffer  int  // the endpoint's WriteBufferSize; 0: the default
	writerChunk  int  // > 0: the endpoint echoes through a Writer
	prepared     bool // the endpoint echoes with WritePrepared
}

const plainOffer = "permessage-deflate; client_max_window_bits" // our client's default offer

// compressAll is context takeover, with every message compressed, however
// short: the cases decide what is small.
var compressAll = websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Threshold: -1}

// defaultDeflate is the setup of the message cases: the defaults of RFC 7692,
// context takeover and 32 KiB windows both ways.
func defaultDeflate() deflateSetup {
	return deflateSetup{offer: []string{plainOffer}, response: "permessage-deflate", server: compressAll, client: compressAll}
}

// deflateCase is one case of a compression table.
type deflateCase struct {
	name  string
	roles roles
	setup deflateSetup
	run   func(p *rawPeer)
}

// runDeflateCases runs cases × roles × serving modes × transports ×
// delivery modes, as runWireCases does, each run on a connection
// negotiated as its setup says.
func runDeflateCases(t *testing.T, cases []deflateCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachRun(t, c.roles, func(t *testing.T, r role, m serveMode, tr transport, d delivery) {
				c.run(connectDeflate(t, tr, r, m, d, c.setup))
			})
		})
	}
}

// connectDeflate opens a connection between a raw peer and the library in
// role r, serving in mode m, negotiating as s says, and sets the raw peer up
// for the agreement.
func connectDeflate(t *testing.T, tr transport, r role, m serveMode, d delivery, s deflateSetup) *rawPeer {
	t.Helper()
	cfg := endpointConfig{defaultLimit: s.defaultLimit, writeBuffer: s.writeBuffer, writerChunk: s.writerChunk, prepared: s.prepared, mode: m}
	var p *rawPeer
	offer := ""
	switch {
	case tr == overHTTP2 && r == roleServer:
		cfg.compression = s.server
		p = connectH2(t, r, d, cfg, h2Handshake{offer: s.offer})
		got := p.h2resp.Header.Values("Sec-Websocket-Extensions")
		if want := s.response; (want == "" && len(got) > 0) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Fatalf("our server answered Sec-WebSocket-Extensions %q, want %q", got, want)
		}
	case tr == overHTTP2:
		cfg.compression = s.client
		p = connectH2(t, r, d, cfg, h2Handshake{response: s.response})
		if got := p.h2req.Header.Values("Sec-Websocket-Extensions"); !slices.Equal(got, s.offer) {
			t.Fatalf("Dial offered Sec-WebSocket-Extensions %q, want %q", got, s.offer)
		}
		if s.response != "" {
			offer = strings.Join(s.offer, ", ")
		}
	case r == roleServer:
		cfg.compression = s.server
		srv := startServerConfig(t, cfg)
		p = srv.dial(t, d)
		req := validRequest(srv.addr())
		for _, o := range s.offer {
			req.add("Sec-WebSocket-Extensions", o)
		}
		resp := p.sendRequest(req)
		checkSwitchingExtensions(t, resp, rfcAccept, s.response)
		p.ep = srv.endpoint(t)
	default:
		cfg.compression = s.client
		cl := startClientConfig(t, "/", cfg, nil)
		p = cl.accept(t, d)
		got := p.hs.Header.Values("Sec-WebSocket-Extensions")
		if !slices.Equal(got, s.offer) {
			t.Fatalf("Dial offered Sec-WebSocket-Extensions %q, want %q", got, s.offer)
		}
		var extra []string
		if s.response != "" {
			extra = []string{"Sec-WebSocket-Extensions: " + s.response}
			offer = strings.Join(s.offer, ", ")
		}
		p.serverHandshake(acceptResponse(p.hs, extra))
		res := cl.result(t)
		if res.err != nil {
			t.Fatalf("Dial: %v", res.err)
		}
		p.ep = res.ep
	}
	if s.response != "" {
		params, err := agreedDeflate(offer, s.response)
		if err != nil {
			t.Fatalf("the raw peer cannot read the agreement %q: %v", s.response, err)
		}
		p.deflate = newRawDeflate(params, r)
		t.Cleanup(p.deflate.out.release)
	}
	// One-byte delivery of the large compressed sends: their first and last
	// 1 KiB a byte at a time.
	p.byteEdge = 1 << 10
	return p
}

// compressed returns msg as the raw peer sends it compressed: RSV1 on the
// first frame only (RFC 7692 section 6.1), the compressed payload cut into
// frames of fragSize bytes (0: one frame).
func (p *rawPeer) compressed(op byte, msg []byte, fragSize int) []rawFrame {
	p.t.Helper()
	if p.deflate == nil {
		p.t.Fatal("compressing with no permessage-deflate agreed")
	}
	return rsv1First(fragmentEvery(op, p.deflate.out.compress(msg), fragSize))
}

// fragmentEvery cuts payload into frames of size bytes, the last taking the
// rest; size 0 is one frame.
func fragmentEvery(op byte, payload []byte, size int) []rawFrame {
	var sizes []int
	if size > 0 {
		for n := len(payload) - size; n > 0; n -= size {
			sizes = append(sizes, size)
		}
	}
	return fragments(op, payload, sizes...)
}

func rsv1First(frames []rawFrame) []rawFrame {
	frames[0].rsv |= rsv1
	return frames
}

// expectCompressed reads a message our endpoint must send compressed: RSV1
// on its first frame and on no other, no frame between its fragments, and a
// payload that inflates to want within the agreed window. It returns the
// frames.
func (p *rawPeer) expectCompressed(op byte, want []byte) []*wireFrame {
	p.t.Helper()
	var frames []*wireFrame
	var payload []byte
	for {
		f := p.read(ioTimeout) // RSV1 only on a first frame: read checks it
		switch {
		case len(frames) == 0 && (f.op != op || f.rsv != rsv1):
			p.t.Fatalf("got %v, want the first frame of a compressed message of opcode %#x, with RSV1", f, op)
		case len(frames) > 0 && f.op != opContinuation:
			p.t.Fatalf("got %v inside a compressed message", f)
		}
		frames = append(frames, f)
		payload = append(payload, f.payload...)
		if f.fin {
			break
		}
	}
	msg, err := p.deflate.in.inflate(payload)
	if err != nil {
		p.t.Fatalf("our %s's compressed message of %d bytes in %d frames: %v", p.role, len(payload), len(frames), err)
	}
	if !bytes.Equal(msg, want) {
		p.t.Fatalf("our %s's message inflates to %d bytes % .32x, want %d bytes % .32x", p.role, len(msg), msg, len(want), want)
	}
	return frames
}

// echoCompressed sends msg compressed and checks its compressed echo.
func (p *rawPeer) echoCompressed(op byte, msg []byte) {
	p.t.Helper()
	p.send(p.compressed(op, msg, 0)...)
	p.expectCompressed(op, msg)
}

// jsonText returns n bytes of JSON-like text drawn from seed: records with
// the same keys and varying values, which compress well. The caller must not
// change them: they are kept for the next call, since formatting them is
// slow under -race.
func jsonText(n int, seed uint64) []byte {
	key := [2]uint64{uint64(n), seed}
	if b, ok := jsonTexts.Load(key); ok {
		return b.([]byte)
	}
	b := makeJSONText(n, seed)
	jsonTexts.Store(key, b)
	return b
}

var jsonTexts sync.Map

func makeJSONText(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	events := []string{"login", "update", "message", "logout", "presence"}
	var b []byte
	for len(b) < n {
		b = fmt.Appendf(b, `{"id":%d,"user":%q,"event":%q,"value":%.3f,"ok":%t},`,
			rng.IntN(1e6), users[rng.IntN(len(users))], events[rng.IntN(len(events))], rng.Float64()*1000, rng.IntN(2) == 0)
	}
	return b[:n:n]
}

// randomBytes returns n incompressible bytes drawn from seed.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// randomLetters returns n random lowercase letters: text in which repeats
// longer than a few bytes happen only where a case puts them.
func randomLetters(n int, seed uint64) []byte {
	b := randomBytes(n, seed^0x5eed)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return b
}

func messages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}

// TestCompressionMessages covers compressed messages (RFC 7692 section 6,
// Autobahn section 12) with context takeover and 32 KiB windows both ways:
// text and binary of 16 bytes to 128 KiB, compressible and not, several in
// a row, in one frame or with their compressed payload fragmented, echoed
// compressed by our endpoint in one frame or through a Writer in many.
// Every echo must carry RSV1 on its first frame only and inflate with
// compress/flate, primed with the messages before it.
func TestCompressionMessages(t *testing.T) {
	sizes := []int{16, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 128 << 10}
	// count is how many messages a run sends: the same content comes back
	// in some, so that context takeover has something to refer to. A
	// message of 64 KiB or more fills the 32 KiB window alone.
	count := func(size int) int {
		switch {
		case size >= 64<<10:
			return 1
		case size >= 16<<10:
			return 2
		}
		return 3
	}
	texts := func(size, i int) []byte { return jsonText(size, uint64(size+i)) }
	binaries := func(size, i int) []byte { return randomBytes(size, uint64(size+i%2)) } // A, B, A
	// fragSize cuts small compressed payloads into 7-byte frames, large
	// ones into 1 KiB frames.
	fragSize := func(n int) int {
		if n < 2<<10 {
			return 7
		}
		return 1 << 10
	}
	families := []struct {
		n          int
		desc       string
		op         byte
		gen        func(size, i int) []byte
		fragmented bool
		writer     bool
	}{
		{1, "text", opText, texts, false, false}, // compressed at level 9 up to 16 KiB
		{2, "binary, incompressible,", opBinary, binaries, false, false},
		{3, "text, fragmented,", opText, texts, true, false},
		{4, "binary, incompressible, fragmented,", opBinary, binaries, true, false},
		{5, "text echoed through a Writer,", opText, texts, false, true},
	}
	var cases []deflateCase
	for _, fam := range families {
		for i, size := range sizes {
			if size > 64<<10 && (fam.fragmented || fam.writer) {
				continue // 128 KiB in one frame only: compression is slow under -race
			}
			setup := defaultDeflate()
			if fam.writer {
				setup.writeBuffer, setup.writerChunk = 256, 1000
			}
			cases = append(cases, deflateCase{
				name:  fmt.Sprintf("12.%d.%d %s %s of %d bytes", fam.n, i+1, fam.desc, messages(count(size)), size),
				setup: setup,
				run: func(p *rawPeer) {
					if fam.n == 1 && size <= 16<<10 {
						p.deflate.out.level = flate.BestCompression // lazy matching, long chains
					}
					var frames []rawFrame
					var msgs [][]byte
					for i := range count(size) {
						msg := fam.gen(size, i)
						payload := p.deflate.out.compress(msg)
						n := 0
						if fam.fragmented {
							n = fragSize(len(payload))
						}
						frames = append(frames, rsv1First(fragmentEvery(fam.op, payload, n))...)
						msgs = append(msgs, msg)
					}
					p.send(frames...)
					for _, msg := range msgs {
						got := p.expectCompressed(fam.op, msg)
						if fam.writer && size >= 4<<10 && len(got) < 2 {
							p.t.Errorf("our %s sent %d bytes through a Writer with 256-byte buffers in one frame", p.role, size)
						}
					}
					p.send(closeFrame(1000, ""))
					p.expectCloseReply(1000)
				},
			})
		}
	}
	cases = append(cases, []deflateCase{
		{name: "12.6.1 context takeover: an identical message refers to the one before", setup: defaultDeflate(), run: func(p *rawPeer) {
			msg := jsonText(4<<10, 1)
			p.send(p.compressed(opText, msg, 0)...)
			first := p.expectCompressed(opText, msg)
			p.send(p.compressed(opText, msg, 0)...)
			second := p.expectCompressed(opText, msg)
			if a, b := len(first[0].payload), len(second[0].payload); b*4 > a {
				p.t.Errorf("our %s compressed the same 4 KiB message to %d bytes after %d: no context takeover", p.role, b, a)
			}
		}},
		{name: "12.6.2 empty compressed messages: no payload, and the single byte 0x00", setup: defaultDeflate(), run: func(p *rawPeer) {
			// An empty payload inflates to nothing; so does 0x00, the
			// start of an empty stored block whose LEN and NLEN are the
			// removed 00 00 FF FF.
			p.send(rawFrame{op: opText, rsv: rsv1}, rawFrame{op: opBinary, rsv: rsv1, payload: []byte{0x00}})
			p.expectCompressed(opText, []byte{})
			p.expectCompressed(opBinary, []byte{})
			p.echoCompressed(opText, jsonText(300, 2))
		}},
		{name: "12.6.3 compressed message in 3 fragments, the last empty, pings between", setup: defaultDeflate(), run: func(p *rawPeer) {
			msg := jsonText(3000, 3)
			frames := p.compressed(opText, msg, 0)
			payload := frames[0].payload
			half := len(payload) / 2
			p.send(rawFrame{op: opText, rsv: rsv1, payload: payload[:half], more: true}, ping([]byte("one")),
				fragment(opContinuation, payload[half:], true), ping([]byte("two")), fragment(opContinuation, nil, false))
			p.expectPong([]byte("one"))
			p.expectPong([]byte("two"))
			p.expectCompressed(opText, msg)
		}},
		{name: "12.6.4 compressed message whose first fragment is empty", setup: defaultDeflate(), run: func(p *rawPeer) {
			msg := randomBytes(1000, 14)
			frames := p.compressed(opBinary, msg, 0)
			p.send(rawFrame{op: opBinary, rsv: rsv1, more: true}, fragment(opContinuation, frames[0].payload, false))
			p.expectCompressed(opBinary, msg)
		}},
		{name: "12.6.5 a sync flush at the end of every fragment but the last", setup: defaultDeflate(), run: func(p *rawPeer) {
			// A sender that streams flushes each fragment; only the
			// message's last 00 00 FF FF is removed (section 7.2.1).
			var b bytes.Buffer
			w, _ := flate.NewWriter(&b, flate.BestSpeed)
			msg := jsonText(5000, 15)
			var frames []rawFrame
			for i, piece := range [][]byte{msg[:1], msg[1:2000], msg[2000:2000], msg[2000:]} {
				b.Reset()
				w.Write(piece)
				w.Flush()
				op := opText
				if i > 0 {
					op = opContinuation
				}
				payload := bytes.Clone(b.Bytes())
				if i == 3 {
					payload = bytes.TrimSuffix(payload, syncTail)
				}
				frames = append(frames, fragment(op, payload, i < 3))
			}
			frames[0].rsv = rsv1
			// The case ends here: msg is in our endpoint's window now,
			// and not in the raw compressor's.
			p.send(frames...)
			p.expectCompressed(opText, msg)
		}},
		{name: "12.6.6 multi-byte UTF-8 text of 64 KiB, compressed payload in 7-byte frames", setup: defaultDeflate(), run: func(p *rawPeer) {
			var msg []byte
			for len(msg) < 64<<10 {
				msg = fmt.Appendf(msg, "héllo wörld, ünïcödé %d — 日本語のテキスト 🎉🚀 ", len(msg))
			}
			p.send(p.compressed(opText, msg, 7)...)
			p.expectCompressed(opText, msg)
		}},
		{name: "12.6.7 echoed with WritePrepared", setup: func() deflateSetup {
			s := defaultDeflate()
			s.prepared = true
			return s
		}(), run: func(p *rawPeer) {
			for i := range 3 {
				p.echoCompressed(opText, jsonText(2000, uint64(16+i%2)))
			}
		}},
		{name: "12.6.8 echoed with WritePrepared without context takeover", setup: deflateSetup{
			offer:    []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"},
			response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			server:   compressAll,
			client:   websocket.CompressionOptions{Mode: websocket.CompressionNoContextTakeover, Threshold: -1},
			prepared: true,
		}, run: func(p *rawPeer) {
			for i := range 3 {
				p.echoCompressed(opBinary, jsonText(2000, uint64(16+i%2)))
			}
		}},
		{
			// RFC 7692 section 6: RSV1 clear is a message sent as it is.
			// Our endpoint sends messages under the threshold uncompressed,
			// and neither side's window takes in an uncompressed message.
			name: "12.7.1 uncompressed messages between compressed ones, both ways",
			setup: func() deflateSetup {
				s := defaultDeflate()
				s.server.Threshold, s.client.Threshold = 0, 0 // the default: 128 bytes
				return s
			}(),
			run: func(p *rawPeer) {
				a, b := jsonText(1000, 4), jsonText(1000, 5)
				// c repeats the short messages, which went uncompressed: a
				// window that took them in would refer to them.
				c := append([]byte("short, plain short, compressed "), a[:500]...)
				p.send(p.compressed(opText, a, 0)...)
				p.send(text("short, plain"), rawFrame{op: opText, payload: b})
				p.send(p.compressed(opText, b, 0)...)
				p.send(p.compressed(opBinary, []byte("short, compressed"), 0)...)
				p.send(binaryMsg(bytesOf(10)), rawFrame{op: opText, payload: c})
				p.send(p.compressed(opText, c, 0)...)
				p.expectCompressed(opText, a)
				p.expectText("short, plain")
				p.expectCompressed(opText, b)
				p.expectCompressed(opText, b)
				p.expectEcho(opBinary, []byte("short, compressed"))
				p.expectEcho(opBinary, bytesOf(10))
				p.expectCompressed(opText, c)
				p.expectCompressed(opText, c)
			},
		},
	}...)
	runDeflateCases(t, cases)
}

// TestCompressionErrors covers the failures of permessage-deflate: reserved
// bits where RFC 7692 gives them no meaning (sections 6 and 6.1) fail with
// 1002, data that does not inflate or inflates to invalid UTF-8 with 1007,
// a message that inflates past the read limit with 1009 (a decompression
// bomb stops there); and a final DEFLATE block ending a message early
// (section 7.2.3.3) is accepted.
func TestCompressionErrors(t *testing.T) {
	notNegotiated := func(edit func(*deflateSetup)) deflateSetup {
		s := defaultDeflate()
		edit(&s)
		return s
	}
	rsvCase := func(name string, frames func(p *rawPeer) []rawFrame) deflateCase {
		return deflateCase{name: name, setup: defaultDeflate(), run: func(p *rawPeer) {
			p.send(append(append(p.compressed(opText, []byte("before"), 0), frames(p)...), ping([]byte("after")))...)
			p.expectCompressed(opText, []byte("before"))
			p.expectFail(1002, ioTimeout)
		}}
	}
	bomb := func() []byte {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.BestCompression)
		w.Write(make([]byte, 2<<20))
		w.Flush()
		return bytes.TrimSuffix(b.Bytes(), syncTail)
	}()
	limit := websocket.DefaultReadLimit
	cases := []deflateCase{
		{name: "12.8.1 RSV1 with no offer", setup: notNegotiated(func(s *deflateSetup) {
			s.offer, s.response, s.client = nil, "", websocket.CompressionOptions{}
		}), run: func(p *rawPeer) {
			p.send(text("plain"), withRSV(text("compressed?"), rsv1))
			p.expectText("plain")
			p.expectFail(1002, ioTimeout)
		}},
		{name: "12.8.2 RSV1 after the offer was declined", setup: notNegotiated(func(s *deflateSetup) {
			s.response = ""
			s.server.Mode = websocket.CompressionDisabled
		}), run: func(p *rawPeer) {
			p.send(text("plain"), withRSV(binaryMsg([]byte{0x00}), rsv1))
			p.expectText("plain")
			p.expectFail(1002, ioTimeout)
		}},
		rsvCase("12.8.3 RSV1 on a continuation frame", func(p *rawPeer) []rawFrame {
			frames := p.compressed(opText, jsonText(500, 6), 100)
			frames[1].rsv = rsv1
			return frames
		}),
		rsvCase("12.8.4 RSV1 on the continuation of an uncompressed message", func(p *rawPeer) []rawFrame {
			return []rawFrame{fragment(opText, []byte("plain "), true), withRSV(fragment(opContinuation, []byte("text"), false), rsv1)}
		}),
		rsvCase("12.8.5 RSV1 on a ping", func(p *rawPeer) []rawFrame { return []rawFrame{withRSV(ping([]byte("x")), rsv1)} }),
		rsvCase("12.8.6 RSV1 on a pong", func(p *rawPeer) []rawFrame { return []rawFrame{withRSV(pong([]byte("x")), rsv1)} }),
		rsvCase("12.8.7 RSV1 on a close", func(p *rawPeer) []rawFrame { return []rawFrame{withRSV(closeFrame(1000, ""), rsv1)} }),
		rsvCase("12.8.8 RSV2 on a compressed message", func(p *rawPeer) []rawFrame {
			return []rawFrame{withRSV(text("x"), rsv1|rsv2)}
		}),
		rsvCase("12.8.9 RSV3 on a message", func(p *rawPeer) []rawFrame { return []rawFrame{withRSV(text("x"), rsv3)} }),
		rsvCase("12.8.10 RSV1 on a ping between compressed fragments", func(p *rawPeer) []rawFrame {
			frames := p.compressed(opBinary, randomBytes(300, 7), 100)
			return append([]rawFrame{frames[0], withRSV(ping(nil), rsv1)}, frames[1:]...)
		}),
		{name: "12.8.11 corrupt compressed text: ff ff ff", setup: defaultDeflate(), run: func(p *rawPeer) {
			p.send(rawFrame{op: opText, rsv: rsv1, payload: []byte{0xff, 0xff, 0xff}})
			p.expectFail(1007, ioTimeout)
		}},
		{name: "12.8.12 corrupt compressed binary after a good message", setup: defaultDeflate(), run: func(p *rawPeer) {
			p.send(append(p.compressed(opBinary, randomBytes(100, 8), 0), rawFrame{op: opBinary, rsv: rsv1, payload: []byte{0xff, 0xff, 0xff}})...)
			p.expectCompressed(opBinary, randomBytes(100, 8))
			p.expectFail(1007, ioTimeout)
		}},
		{name: "12.8.13 corruption in the second fragment: a stored block's LEN and NLEN disagree", setup: defaultDeflate(), run: func(p *rawPeer) {
			payload := p.deflate.out.compress([]byte("Hello, Hello, Hello"))
			p.send(rawFrame{op: opText, rsv: rsv1, payload: payload, more: true}, fragment(opContinuation, []byte{0x12, 0x34, 0x56, 0x78}, false))
			p.expectFail(1007, ioTimeout)
		}},
		{name: "12.8.14 compressed text inflating to invalid UTF-8", setup: defaultDeflate(), run: func(p *rawPeer) {
			p.send(p.compressed(opText, append(jsonText(200, 9), 0xc0, 0xaf), 0)...)
			p.expectFail(1007, ioTimeout)
		}},
		{name: "12.8.20 compressed text ending inside a character", setup: defaultDeflate(), run: func(p *rawPeer) {
			p.send(p.compressed(opText, append(jsonText(200, 9), 0xe6, 0x97), 0)...)
			p.expectFail(1007, ioTimeout)
		}},
		{
			// With a 9-bit window the receiver keeps 512 bytes of history:
			// a reference further back cannot be resolved (section 7.1.2.2).
			name: "12.8.21 a back-reference beyond the agreed window into the previous message",
			setup: deflateSetup{
				offer:    []string{"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"},
				response: "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
				server:   compressAll,
				client: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Threshold: -1,
					ServerMaxWindowBits: 9, ClientMaxWindowBits: 9},
			},
			run: func(p *rawPeer) {
				a := randomLetters(2000, 17)
				p.echoCompressed(opText, a)
				p.send(rawFrame{op: opText, rsv: rsv1, payload: boundedDeflate(a, a[:1000], 2000)})
				p.expectFail(1007, ioTimeout)
			},
		},
		{
			// Section 7.1.1: without context takeover the receiver keeps
			// nothing between messages.
			name: "12.8.22 a back-reference into the previous message without context takeover",
			setup: deflateSetup{
				offer:    []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"},
				response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
				server:   compressAll,
				client:   websocket.CompressionOptions{Mode: websocket.CompressionNoContextTakeover, Threshold: -1},
			},
			run: func(p *rawPeer) {
				a := randomLetters(300, 18)
				p.echoCompressed(opText, a)
				p.send(rawFrame{op: opText, rsv: rsv1, payload: boundedDeflate(a, a, 1<<15)})
				p.expectFail(1007, ioTimeout)
			},
		},
		{name: "12.8.15 decompression bomb: 2 MiB of zeros against the default limit", setup: notNegotiated(func(s *deflateSetup) {
			s.defaultLimit = true
		}), run: func(p *rawPeer) {
			p.send(rawFrame{op: opBinary, rsv: rsv1, payload: bomb})
			p.expectFail(1009, ioTimeout)
		}},
		{name: "12.8.16 decompression bomb in 1 KiB fragments", setup: notNegotiated(func(s *deflateSetup) {
			s.defaultLimit = true
		}), run: func(p *rawPeer) {
			p.send(rsv1First(fragmentEvery(opBinary, bomb, 1<<10))...)
			p.expectFail(1009, ioTimeout)
		}},
		{name: "12.8.17 inflating to exactly the default limit, then one byte more", setup: notNegotiated(func(s *deflateSetup) {
			s.defaultLimit = true
		}), run: func(p *rawPeer) {
			p.echoCompressed(opText, jsonText(limit, 10))
			p.send(p.compressed(opText, jsonText(limit+1, 11), 0)...)
			p.expectFail(1009, ioTimeout)
		}},
		{name: "12.8.18 incompressible message of the default limit, larger on the wire", setup: notNegotiated(func(s *deflateSetup) {
			s.defaultLimit = true
		}), run: func(p *rawPeer) {
			msg := randomBytes(limit, 12)
			frames := p.compressed(opBinary, msg, 0)
			if len(frames[0].payload) <= limit {
				p.t.Fatalf("compress/flate made %d random bytes %d bytes long", limit, len(frames[0].payload))
			}
			p.send(frames...)
			p.expectCompressed(opBinary, msg)
		}},
		{
			// RFC 7692 section 7.2.3.3: "Hello" in a block with BFINAL set,
			// then an empty stored block.
			name: "12.8.19 a final DEFLATE block, then trailing bytes", setup: defaultDeflate(), run: func(p *rawPeer) {
				final := []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}
				if got, err := io.ReadAll(flate.NewReader(bytes.NewReader(final))); err != nil || string(got) != "Hello" {
					p.t.Fatalf("the RFC's example inflates to %q, %v", got, err)
				}
				p.send(rawFrame{op: opText, rsv: rsv1, payload: append(final, 0x00, 0x00, 0x00, 0xff, 0xff)})
				p.expectCompressed(opText, []byte("Hello"))
				// The same, the trailing block in a frame of its own.
				p.send(rawFrame{op: opText, rsv: rsv1, payload: final, more: true},
					fragment(opContinuation, []byte{0x00, 0x00, 0x00, 0xff, 0xff}, false))
				p.expectCompressed(opText, []byte("Hello"))
				// The stream compress/flate's Close ends, whose last block
				// is final, compressed without reference to the others.
				var b bytes.Buffer
				w, _ := flate.NewWriter(&b, flate.BestSpeed)
				w.Write(jsonText(500, 13))
				w.Close()
				p.send(rawFrame{op: opBinary, rsv: rsv1, payload: b.Bytes()})
				p.expectCompressed(opBinary, jsonText(500, 13))
			},
		},
	}
	runDeflateCases(t, cases)
}

// deflateRound sends messages our endpoint must echo within the agreement,
// each compressed by the raw peer within its direction's window, and checks
// the echoes: messages that repeat at exactly the window of each direction
// below 15 bits (and at 15 bits when fullWindow is set: 32 KiB messages are
// slow under -race), within a message and across messages, which the raw
// peer refers back to at exactly that distance and our endpoint may; text
// larger than small windows; and a message sent uncompressed, which takes
// no part in either window.
func deflateRound(fullWindow bool) func(p *rawPeer) {
	return func(p *rawPeer) {
		p.t.Helper()
		// compress/flate's fastest level may not refer back exactly 32 KiB.
		p.deflate.out.bounded = fullWindow
		rawWindow, ourWindow := p.deflate.out.window(), p.deflate.in.window()
		msgs := [][]byte{jsonText(300, 20)}
		for i, w := range []int{rawWindow, ourWindow} {
			if i == 1 && w == rawWindow || w == 1<<15 && !fullWindow {
				continue
			}
			// r and its first k bytes, then its next k: repeats at
			// distance w within a message, and across messages, the last
			// w bytes of history starting at r[k].
			r := randomLetters(w, uint64(21+i))
			k := min(w/2, 500)
			msgs = append(msgs, append(r[:w:w], r[:k]...), []byte("plain"), r[k:2*k])
		}
		msgs = append(msgs, jsonText(5000, 22), jsonText(1000, 23), []byte("sixteen bytes..."))
		for _, msg := range msgs {
			if string(msg) == "plain" {
				p.send(text("plain"))
				p.expectCompressed(opText, msg)
				continue
			}
			p.echoCompressed(opText, msg)
		}
		p.send(closeFrame(1000, ""))
		p.expectCloseReply(1000)
	}
}

// paramCase is a case of TestCompressionParameters: the offer and response
// of setup, then a round of messages.
func paramCase(name string, rs roles, setup deflateSetup) deflateCase {
	return deflateCase{name: name, roles: rs, setup: setup, run: deflateRound(false)}
}

// fullWindowCase is a paramCase whose round checks 32 KiB windows too.
func fullWindowCase(name string, rs roles, setup deflateSetup) deflateCase {
	return deflateCase{name: name, roles: rs, setup: setup, run: deflateRound(true)}
}

// TestCompressionParameters covers the parameters of RFC 7692 section 7.1
// (Autobahn section 13): for each offer, the exact response of our server,
// and for each option set the exact offer of our client and its acceptance
// of the responses a server may give; then messages both ways within the
// windows and context takeover agreed. Cases that both roles can play run
// in both: our client sends the same offer the raw client does.
func TestCompressionParameters(t *testing.T) {
	ctx := compressAll
	with := func(o websocket.CompressionOptions, edit func(*websocket.CompressionOptions)) websocket.CompressionOptions {
		edit(&o)
		return o
	}
	noCtx := with(ctx, func(o *websocket.CompressionOptions) { o.Mode = websocket.CompressionNoContextTakeover })
	// both is a case our client can offer too.
	both := func(offer, response string, client websocket.CompressionOptions) deflateSetup {
		return deflateSetup{offer: []string{offer}, response: response, server: ctx, client: client}
	}
	// server is a case for our server, with options.
	server := func(offer, response string, options websocket.CompressionOptions) deflateSetup {
		return deflateSetup{offer: []string{offer}, response: response, server: options}
	}
	// client is our client with options answered by the raw server.
	client := func(options websocket.CompressionOptions, offer, response string) deflateSetup {
		return deflateSetup{offer: []string{offer}, response: response, client: options}
	}
	cases := []deflateCase{
		paramCase("13.1.1 no parameter", serverOnly, server("permessage-deflate", "permessage-deflate", ctx)),
		// The one case whose round fills 32 KiB windows: the others with
		// 15-bit windows check every other rule at 15 bits.
		fullWindowCase("13.1.2 client_max_window_bits without a value", bothRoles, both(plainOffer, "permessage-deflate", ctx)),
		paramCase("13.2.1 client_no_context_takeover", serverOnly, server(
			"permessage-deflate; client_no_context_takeover", "permessage-deflate; client_no_context_takeover", ctx)),
		paramCase("13.2.2 server_no_context_takeover", serverOnly, server(
			"permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover", ctx)),
		paramCase("13.2.3 both no_context_takeover", bothRoles, both(
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", noCtx)),
		paramCase("13.2.4 client_no_context_takeover sent unasked", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; client_no_context_takeover")),
		paramCase("13.2.5 server_no_context_takeover sent unasked", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; server_no_context_takeover")),
		paramCase("13.2.6 client_no_context_takeover offered, left out of the response", clientOnly, client(noCtx,
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits",
			"permessage-deflate; server_no_context_takeover")),
	}
	for i, bits := range []int{8, 9, 12, 15} {
		cases = append(cases,
			paramCase(fmt.Sprintf("13.3.%d server_max_window_bits=%d", i+1, bits), bothRoles, both(
				fmt.Sprintf("permessage-deflate; server_max_window_bits=%d; client_max_window_bits", bits),
				fmt.Sprintf("permessage-deflate; server_max_window_bits=%d", bits),
				with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = bits }))),
			paramCase(fmt.Sprintf("13.4.%d client_max_window_bits=%d", i+1, bits), bothRoles, both(
				fmt.Sprintf("permessage-deflate; client_max_window_bits=%d", bits),
				fmt.Sprintf("permessage-deflate; client_max_window_bits=%d", bits),
				with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = bits }))),
		)
	}
	cases = append(cases,
		paramCase("13.3.5 server_max_window_bits=12 answered with 9", clientOnly, client(
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = 12 }),
			"permessage-deflate; server_max_window_bits=12; client_max_window_bits",
			"permessage-deflate; server_max_window_bits=9")),
		paramCase("13.3.6 server_max_window_bits=10 sent unasked", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; server_max_window_bits=10")),
		paramCase("13.4.5 client_max_window_bits=12 answered with 8", clientOnly, client(
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 12 }),
			"permessage-deflate; client_max_window_bits=12", "permessage-deflate; client_max_window_bits=8")),
		// Section 7.1.2.2: the client keeps to the window it offered even
		// when the response leaves it out.
		paramCase("13.4.6 client_max_window_bits=9 offered, left out of the response", clientOnly, client(
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }),
			"permessage-deflate; client_max_window_bits=9", "permessage-deflate")),
		paramCase("13.4.7 client_max_window_bits=10 chosen by the server", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; client_max_window_bits=10")),
		paramCase("13.4.8 client_max_window_bits quoted", clientOnly, client(ctx, plainOffer,
			`permessage-deflate; client_max_window_bits="11"`)),
		// Section 7.1.2.2: a larger value in the response does not release
		// the client from the window it offered.
		paramCase("13.4.9 client_max_window_bits=9 offered, 12 answered", clientOnly, client(
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }),
			"permessage-deflate; client_max_window_bits=9", "permessage-deflate; client_max_window_bits=12")),
		paramCase("13.5.1 both windows 9", bothRoles, both(
			"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
			"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits, o.ClientMaxWindowBits = 9, 9 }))),
		paramCase("13.5.2 every parameter, windows 8", bothRoles, both(
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8",
			with(noCtx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits, o.ClientMaxWindowBits = 8, 8 }))),
		paramCase("13.5.3 every parameter in another order", serverOnly, server(
			"permessage-deflate; client_max_window_bits=12; server_max_window_bits=10; client_no_context_takeover; server_no_context_takeover",
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12", ctx)),
		paramCase("13.5.4 server_max_window_bits=10 and client_max_window_bits without a value", bothRoles, both(
			"permessage-deflate; server_max_window_bits=10; client_max_window_bits",
			"permessage-deflate; server_max_window_bits=10",
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = 10 }))),
		paramCase("13.5.5 every parameter sent unasked", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=8")),
		paramCase("13.5.6 parameter names in capitals", clientOnly, client(ctx, plainOffer,
			"permessage-deflate; Server_Max_Window_Bits=9; CLIENT_NO_CONTEXT_TAKEOVER")),
		// Our server's own limits.
		paramCase("13.6.1 server capped at 10 bits, no window asked", serverOnly, server("permessage-deflate",
			"permessage-deflate; server_max_window_bits=10",
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = 10 }))),
		paramCase("13.6.2 server capped at 10 bits, 12 asked", serverOnly, server("permessage-deflate; server_max_window_bits=12",
			"permessage-deflate; server_max_window_bits=10",
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = 10 }))),
		paramCase("13.6.3 server capped at 10 bits, 9 asked", serverOnly, server("permessage-deflate; server_max_window_bits=9",
			"permessage-deflate; server_max_window_bits=9",
			with(ctx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits = 10 }))),
		paramCase("13.6.4 client capped at 9 bits by the server", serverOnly, server(plainOffer,
			"permessage-deflate; client_max_window_bits=9",
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }))),
		paramCase("13.6.5 client capped at 9 bits, 12 offered", serverOnly, server("permessage-deflate; client_max_window_bits=12",
			"permessage-deflate; client_max_window_bits=9",
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }))),
		paramCase("13.6.6 client capped at 9 bits, 8 offered", serverOnly, server("permessage-deflate; client_max_window_bits=8",
			"permessage-deflate; client_max_window_bits=8",
			with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }))),
		// Section 7.1.2.2: no client_max_window_bits in a response to an
		// offer without it.
		paramCase("13.6.7 client capped at 9 bits, client_max_window_bits not offered", serverOnly, server("permessage-deflate",
			"permessage-deflate", with(ctx, func(o *websocket.CompressionOptions) { o.ClientMaxWindowBits = 9 }))),
		paramCase("13.6.8 server without context takeover", serverOnly, server(plainOffer,
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover", noCtx)),
		paramCase("13.6.9 server without context takeover, windows 8", serverOnly, server(plainOffer,
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8",
			with(noCtx, func(o *websocket.CompressionOptions) { o.ServerMaxWindowBits, o.ClientMaxWindowBits = 8, 8 }))),
		// Several offers: the first acceptable one is taken (section 5.1).
		paramCase("13.7.1 three offers: the first", serverOnly, server(
			"permessage-deflate; server_max_window_bits=8; client_max_window_bits=8, permessage-deflate; client_max_window_bits, permessage-deflate",
			"permessage-deflate; server_max_window_bits=8; client_max_window_bits=8", ctx)),
		paramCase("13.7.2 two offers: the first, without context takeover", serverOnly, server(
			"permessage-deflate; client_no_context_takeover; client_max_window_bits=9, permessage-deflate",
			"permessage-deflate; client_no_context_takeover; client_max_window_bits=9", ctx)),
		paramCase("13.7.3 an invalid window, then a valid offer", serverOnly, server(
			"permessage-deflate; server_max_window_bits=5, permessage-deflate; server_no_context_takeover",
			"permessage-deflate; server_no_context_takeover", ctx)),
	)
	runDeflateCases(t, cases)
}

// TestCompressionNegotiation covers the rules of RFC 7692 section 5 and
// RFC 6455 section 9.1 that decide whether permessage-deflate is agreed.
// Our server takes the first valid offer and declines the invalid ones
// (unknown, repeated or malformed parameters) by leaving them out, still
// accepting the connection; with compression disabled it agrees to
// nothing. Our client fails the handshake when the response does not
// answer its offer.
func TestCompressionNegotiation(t *testing.T) {
	type serverCase struct {
		name     string
		offer    []string
		response string
		options  *websocket.CompressionOptions // nil: compressAll
	}
	serverCases := []serverCase{
		{"13.8.1 an unknown parameter, then a plain offer", []string{"permessage-deflate; foo=1, permessage-deflate"}, "permessage-deflate", nil},
		{"13.8.2 an unknown parameter only", []string{"permessage-deflate; foo"}, "", nil},
		{"13.8.3 server_no_context_takeover twice", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, "", nil},
		{"13.8.4 client_max_window_bits twice", []string{"permessage-deflate; client_max_window_bits=12; client_max_window_bits=12"}, "", nil},
		{"13.8.5 server_max_window_bits=7", []string{"permessage-deflate; server_max_window_bits=7"}, "", nil},
		{"13.8.6 server_max_window_bits=16", []string{"permessage-deflate; server_max_window_bits=16"}, "", nil},
		{"13.8.7 server_max_window_bits=08", []string{"permessage-deflate; server_max_window_bits=08"}, "", nil},
		{"13.8.8 server_max_window_bits without a value", []string{"permessage-deflate; server_max_window_bits"}, "", nil},
		{"13.8.9 client_max_window_bits=0", []string{"permessage-deflate; client_max_window_bits=0"}, "", nil},
		{"13.8.10 client_max_window_bits=abc", []string{"permessage-deflate; client_max_window_bits=abc"}, "", nil},
		{"13.8.11 server_no_context_takeover with a value", []string{"permessage-deflate; server_no_context_takeover=1"}, "", nil},
		{"13.8.12 a quoted window", []string{`permessage-deflate; client_max_window_bits="10"`}, "permessage-deflate; client_max_window_bits=10", nil},
		{"13.8.13 names in capitals", []string{"PerMessage-Deflate; Client_Max_Window_Bits; SERVER_MAX_WINDOW_BITS=11"},
			"permessage-deflate; server_max_window_bits=11", nil},
		{"13.8.14 another extension first", []string{"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10"},
			"permessage-deflate; server_max_window_bits=10", nil},
		{"13.8.15 offers over two header lines", []string{"x-foo", "permessage-deflate; client_max_window_bits"}, "permessage-deflate", nil},
		{"13.8.16 an invalid offer on the first line, a valid one on the second",
			[]string{"permessage-deflate; server_max_window_bits=7", "permessage-deflate; server_max_window_bits=9"},
			"permessage-deflate; server_max_window_bits=9", nil},
		{"13.8.17 a malformed header", []string{"permessage-deflate;; client_max_window_bits"}, "", nil},
		{"13.8.18 another extension only", []string{"x-webkit-deflate-frame"}, "", nil},
		{"13.8.19 compression disabled", []string{plainOffer}, "", &websocket.CompressionOptions{}},
		{"13.8.20 compression disabled, several offers", []string{"permessage-deflate, permessage-deflate; server_no_context_takeover"},
			"", &websocket.CompressionOptions{}},
	}
	var cases []deflateCase
	for _, c := range serverCases {
		options := compressAll
		if c.options != nil {
			options = *c.options
		}
		cases = append(cases, deflateCase{
			name: c.name, roles: serverOnly,
			setup: deflateSetup{offer: c.offer, response: c.response, server: options},
			run: func(p *rawPeer) {
				if c.response != "" {
					p.echoCompressed(opText, jsonText(300, 30))
					p.echoCompressed(opBinary, randomBytes(300, 31))
					return
				}
				// No extension: messages go as they are, and RSV1 fails.
				p.send(text("plain"), withRSV(text("compressed?"), rsv1))
				p.expectText("plain")
				p.expectFail(1002, ioTimeout)
			},
		})
	}
	runDeflateCases(t, cases)

	clientCases := []struct {
		name     string
		options  websocket.CompressionOptions
		response []string // the raw server's Sec-WebSocket-Extensions lines
		wantErr  string   // in Dial's error
	}{
		{"13.9.1 server_max_window_bits=16", compressAll, []string{"permessage-deflate; server_max_window_bits=16"}, "server_max_window_bits"},
		{"13.9.2 server_max_window_bits=7", compressAll, []string{"permessage-deflate; server_max_window_bits=7"}, "server_max_window_bits"},
		{"13.9.3 client_max_window_bits=08", compressAll, []string{"permessage-deflate; client_max_window_bits=08"}, "client_max_window_bits"},
		{"13.9.4 client_max_window_bits without a value", compressAll, []string{"permessage-deflate; client_max_window_bits"}, "client_max_window_bits"},
		{"13.9.5 server_no_context_takeover with a value", compressAll, []string{"permessage-deflate; server_no_context_takeover=1"}, "server_no_context_takeover"},
		{"13.9.6 an unknown parameter", compressAll, []string{"permessage-deflate; foo=1"}, "foo"},
		{"13.9.7 a parameter twice", compressAll, []string{"permessage-deflate; client_max_window_bits=10; client_max_window_bits=10"}, "client_max_window_bits"},
		{"13.9.8 permessage-deflate twice", compressAll, []string{"permessage-deflate, permessage-deflate"}, "twice"},
		{"13.9.9 permessage-deflate on two lines", compressAll, []string{"permessage-deflate", "permessage-deflate"}, "twice"},
		{"13.9.10 an extension not offered", compressAll, []string{"x-webkit-deflate-frame"}, "x-webkit-deflate-frame"},
		{"13.9.11 permessage-deflate and an extension not offered", compressAll, []string{"permessage-deflate, x-foo"}, "x-foo"},
		{"13.9.12 a malformed header", compressAll, []string{"permessage-deflate; ="}, "Sec-WebSocket-Extensions"},
		{"13.9.13 server_no_context_takeover asked, not granted",
			websocket.CompressionOptions{Mode: websocket.CompressionNoContextTakeover}, []string{"permessage-deflate"}, "server_no_context_takeover"},
		{"13.9.14 server_max_window_bits=10 asked, not answered",
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, ServerMaxWindowBits: 10},
			[]string{"permessage-deflate"}, "server_max_window_bits"},
		{"13.9.15 server_max_window_bits=10 asked, 12 answered",
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, ServerMaxWindowBits: 10},
			[]string{"permessage-deflate; server_max_window_bits=12"}, "server_max_window_bits"},
		{"13.9.16 compression disabled, permessage-deflate answered", websocket.CompressionOptions{},
			[]string{"permessage-deflate"}, "permessage-deflate"},
		{"13.9.17 compression disabled, client_max_window_bits answered", websocket.CompressionOptions{},
			[]string{"permessage-deflate; client_max_window_bits=10"}, "permessage-deflate"},
	}
	for _, c := range clientCases {
		t.Run(c.name, func(t *testing.T) {
			t.Run("client", func(t *testing.T) {
				for _, d := range deliveries {
					t.Run(d.String(), func(t *testing.T) {
						cl := startClientConfig(t, "/", endpointConfig{compression: c.options}, nil)
						p := cl.accept(t, d)
						var extra []string
						for _, r := range c.response {
							extra = append(extra, "Sec-WebSocket-Extensions: "+r)
						}
						p.serverHandshake(acceptResponse(p.hs, extra))
						res := cl.result(t)
						if res.err == nil {
							t.Fatalf("Dial accepted Sec-WebSocket-Extensions %q in answer to %q", c.response, p.hs.Header.Values("Sec-WebSocket-Extensions"))
						}
						if !strings.HasPrefix(res.err.Error(), "websocket: ") || !strings.Contains(res.err.Error(), c.wantErr) {
							t.Errorf("Dial's error %q does not say what is wrong (%q)", res.err, c.wantErr)
						}
						if res.resp == nil || res.resp.StatusCode != 101 {
							t.Errorf("Dial returned the response %v, want the 101", res.resp)
						}
						p.expectEOF() // our client drops the connection it refused
					})
				}
				t.Run("h2", func(t *testing.T) {
					cl := startClientH2(t, endpointConfig{compression: c.options})
					sc := cl.acceptH2(t, c.response...)
					t.Cleanup(func() { sc.Close() })
					res := cl.result(t)
					if res.err == nil {
						t.Fatalf("Dial accepted Sec-WebSocket-Extensions %q in answer to %q", c.response, sc.req.Header.Values("Sec-Websocket-Extensions"))
					}
					if !strings.HasPrefix(res.err.Error(), "websocket: ") || !strings.Contains(res.err.Error(), c.wantErr) {
						t.Errorf("Dial's error %q does not say what is wrong (%q)", res.err, c.wantErr)
					}
					if res.resp == nil || res.resp.StatusCode != 200 {
						t.Errorf("Dial returned the response %v, want the 200", res.resp)
					}
					// Our client abandons the stream it refused: RST_STREAM
					// (or END_STREAM), nothing sent on it before.
					sc.SetReadDeadline(time.Now().Add(ioTimeout))
					var b [64]byte
					if n, err := sc.Read(b[:]); n > 0 || isTimeout(err) {
						t.Fatalf("got % x, %v after the refusal, want the stream ended", b[:n], err)
					}
				})
			})
		})
	}
}

// withRSV returns f with the reserved bits rsv.
func withRSV(f rawFrame, rsv byte) rawFrame { f.rsv = rsv; return f }
