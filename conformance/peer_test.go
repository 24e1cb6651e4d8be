package conformance

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// The raw peer: what it sends, in the run's delivery mode, and what it
// expects the library to send back.

// rawPeer is the raw side of a run: it speaks bytes to the library.
type rawPeer struct {
	t    *testing.T
	role role // the library's role
	mode delivery
	conn peerConn
	br   *bufio.Reader
	rng  *rand.Rand
	ep   *endpoint
	hs   *http.Request // the client handshake, in client role runs

	h2req  *http.Request  // over HTTP/2: the client's extended CONNECT, in client role runs
	h2resp *http.Response // over HTTP/2: our server's answer, in server role runs

	deflate  *rawDeflate // the agreed permessage-deflate, or nil
	byteEdge int         // one-byte delivery's edge for large sends; 0: byteByByteEdge
}

// peerConn is the raw peer's connection: a TCP connection, or a stream of
// an HTTP/2 connection (h2Stream), whose CloseWrite sends END_STREAM.
type peerConn interface {
	net.Conn
	CloseWrite() error
}

// masks reports whether the raw peer masks its frames: it does when it
// plays the client.
func (p *rawPeer) masks() bool { return p.role == roleServer }

// newRawPeer wraps conn. Its RNG, which cuts random chunks and draws masking
// keys, is seeded from the test's name and $CONFORMANCE_SEED, so that a run
// is reproducible and setting the variable draws other chunks.
func newRawPeer(t *testing.T, r role, d delivery, conn net.Conn) *rawPeer {
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	tc := conn.(peerConn)
	h := fnv.New64a()
	h.Write([]byte(t.Name() + "\x00" + os.Getenv("CONFORMANCE_SEED")))
	seed := h.Sum64()
	t.Cleanup(func() {
		if t.Failed() && d == deliverChunks {
			t.Logf("random chunks drawn with CONFORMANCE_SEED=%q", os.Getenv("CONFORMANCE_SEED"))
		}
	})
	return &rawPeer{
		t:    t,
		role: r,
		mode: d,
		conn: tc,
		br:   bufio.NewReaderSize(tc, 64<<10),
		rng:  rand.New(rand.NewPCG(seed, seed>>1|1)),
	}
}

// serverHandshake sends the raw server's handshake response.
func (p *rawPeer) serverHandshake(resp []byte) {
	p.t.Helper()
	p.sendBytes(resp)
}

// encode encodes frames as the raw peer sends them: masked with a fresh key
// from the RNG when it plays the client, unless a frame says otherwise.
func (p *rawPeer) encode(frames ...rawFrame) []byte {
	var b []byte
	for _, f := range frames {
		masked := p.masks()
		switch f.mask {
		case maskOn:
			masked = true
		case maskOff:
			masked = false
		}
		var key [4]byte
		if f.key != nil {
			key = *f.key
		} else if masked {
			binary.BigEndian.PutUint32(key[:], p.rng.Uint32())
		}
		b = appendFrame(b, f, masked, key)
	}
	return b
}

// send writes frames in the run's delivery mode. The library must take
// every byte: a write error fails the case.
func (p *rawPeer) send(frames ...rawFrame) {
	p.t.Helper()
	p.sendBytes(p.encode(frames...))
}

func (p *rawPeer) sendBytes(b []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := writeDelivered(p.conn, p.mode, p.rng, p.byteEdge, b); err != nil {
		p.t.Fatalf("sending %d bytes: %v", len(b), err)
	}
}

// read reads the next frame from the library, within timeout, and checks the
// rules that hold for every frame it sends: the masking its role demands
// (section 5.1), no reserved bits (section 5.2) but RSV1 on the first frame
// of a data message once permessage-deflate is agreed (RFC 7692 section 6),
// a known opcode, and control frames whole and short (section 5.5).
func (p *rawPeer) read(timeout time.Duration) *wireFrame {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(timeout))
	f, err := readWireFrame(p.br)
	if err != nil {
		p.t.Fatalf("reading a frame from our %s: %v", p.role, err)
	}
	switch {
	case f.masked != (p.role == roleClient):
		p.t.Fatalf("our %s sent a frame with mask bit %v: %v", p.role, f.masked, f)
	case f.rsv != 0 && (p.deflate == nil || f.rsv != rsv1 || f.op == opContinuation || f.op >= opClose):
		p.t.Fatalf("our %s sent reserved bits: %v", p.role, f)
	case f.op >= 3 && f.op <= 7 || f.op > opPong:
		p.t.Fatalf("our %s sent a reserved opcode: %v", p.role, f)
	case f.op >= opClose && (!f.fin || len(f.payload) > 125):
		p.t.Fatalf("our %s sent a fragmented or long control frame: %v", p.role, f)
	}
	return f
}

// expectFrame reads a frame and checks that it is a single, final frame of
// type op carrying payload, with exactly the header a conforming sender
// writes: minimal length encoding, masked by a client, not by a server.
func (p *rawPeer) expectFrame(op byte, payload []byte) *wireFrame {
	p.t.Helper()
	f := p.read(ioTimeout)
	if f.op != op || !f.fin || !bytes.Equal(f.payload, payload) {
		p.t.Fatalf("got %v, want a final frame of opcode %#x with %d bytes % .32x", f, op, len(payload), payload)
	}
	want := appendHeader(nil, rawFrame{op: op, payload: payload}, f.masked, f.key)
	if !bytes.Equal(f.header, want) {
		p.t.Fatalf("header % x, want % x", f.header, want)
	}
	return f
}

// expectEcho reads the echo of a message.
func (p *rawPeer) expectEcho(op byte, payload []byte) { p.t.Helper(); p.expectFrame(op, payload) }

func (p *rawPeer) expectText(s string) { p.t.Helper(); p.expectFrame(opText, []byte(s)) }

func (p *rawPeer) expectPong(payload []byte) { p.t.Helper(); p.expectFrame(opPong, payload) }

// expectFail checks that the library fails the connection with code: its
// next frame is a close frame with that code, sent within timeout, and the
// connection then ends in the way the role prescribes. The library's
// endpoint must report a *websocket.ProtocolError with the code.
func (p *rawPeer) expectFail(code uint16, timeout time.Duration) {
	p.t.Helper()
	f := p.read(timeout)
	p.checkClose(f, code)
	if !utf8.Valid(f.payload[2:]) {
		p.t.Errorf("close reason % x is not UTF-8", f.payload[2:])
	}
	// Answer the close frame, as an endpoint must (section 5.5.1). The
	// library discards it: it has failed the connection.
	p.send(closeFrame(code, ""))
	if p.role == roleServer {
		// The server closes TCP first (section 7.1.1): its FIN comes
		// without the raw client closing.
		p.expectEOF()
	} else {
		p.closeFirst()
	}
	p.conn.Close()
	err := p.ep.wait(p.t)
	var pe *websocket.ProtocolError
	if !errors.As(err, &pe) || pe.Code != websocket.StatusCode(code) {
		p.t.Errorf("our %s ended with %v, want a *websocket.ProtocolError with code %d", p.role, err, code)
	}
}

// checkClose checks that f is a close frame with code and that its header
// is exactly 0x88 and the length (with the mask bit and key from a client).
func (p *rawPeer) checkClose(f *wireFrame, code uint16) {
	p.t.Helper()
	if f.op != opClose || len(f.payload) < 2 {
		p.t.Fatalf("got %v, want a close frame with code %d", f, code)
	}
	if got := uint16(f.payload[0])<<8 | uint16(f.payload[1]); got != code {
		p.t.Fatalf("close code %d (reason %q), want %d", got, f.payload[2:], code)
	}
	wantHeader := []byte{0x88, byte(len(f.payload))}
	if f.masked {
		wantHeader = append([]byte{0x88, 0x80 | byte(len(f.payload))}, f.key[:]...)
	}
	if !bytes.Equal(f.header, wantHeader) {
		p.t.Fatalf("close frame header % x, want % x", f.header, wantHeader)
	}
}

// expectCloseReply checks the library's answer to the raw peer's close frame
// with code (1005: the frame had no payload). It answers with the same code
// and no reason, or with an empty close frame (section 5.5.1). Our server
// then closes TCP first; our client waits for the raw server to close it.
// The endpoint reports a *websocket.CloseError with the code.
func (p *rawPeer) expectCloseReply(code uint16) {
	p.t.Helper()
	p.readCloseReply(code)
	p.finishCloseReply(code)
}

// readCloseReply reads the library's answer to a close frame with code.
func (p *rawPeer) readCloseReply(code uint16) {
	p.t.Helper()
	f := p.read(ioTimeout)
	want := []byte{0x88, 0x00}
	var payload []byte
	if code != 1005 {
		payload = closePayload(code, "")
		want = []byte{0x88, 0x02}
	}
	if f.masked {
		want = append([]byte{want[0], 0x80 | want[1]}, f.key[:]...)
	}
	if f.op != opClose || !bytes.Equal(f.payload, payload) || !bytes.Equal(f.header, want) {
		p.t.Fatalf("got %v (header % x), want a close frame with payload % x", f, f.header, payload)
	}
}

// finishCloseReply ends the connection after the close reply: our server
// closes TCP first, the raw server closes it for our client.
func (p *rawPeer) finishCloseReply(code uint16) {
	p.t.Helper()
	if p.role == roleServer {
		p.expectEOF()
	} else {
		p.closeFirst()
	}
	p.conn.Close()
	if err := p.ep.wait(p.t); websocket.CloseStatus(err) != websocket.StatusCode(code) {
		p.t.Errorf("our %s ended with %v, want a *websocket.CloseError with code %d", p.role, err, code)
	}
}

// expectEOF checks that the library closes its side of the connection
// within a couple of seconds, cleanly (a FIN, not a reset, which could
// destroy what it sent last) and without sending anything more.
func (p *rawPeer) expectEOF() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [64]byte
	n, err := p.br.Read(b[:])
	switch {
	case n > 0:
		p.t.Fatalf("got % x after the close frame, want the end of the connection", b[:n])
	case err == io.EOF:
	case isTimeout(err):
		p.t.Fatalf("our %s did not close the connection within 2s of its close frame", p.role)
	default:
		p.t.Fatalf("reading the end of the connection: %v", err)
	}
}

// closeFirst closes the raw server's side of TCP, as a server does first
// after the close frames (section 7.1.1), and checks that our client then
// closes its side, having sent nothing more.
func (p *rawPeer) closeFirst() {
	p.t.Helper()
	if err := p.conn.CloseWrite(); err != nil {
		p.t.Fatalf("closing the raw server's side: %v", err)
	}
	p.expectEOF()
}

// expectOpen checks that the library neither sends anything nor closes the
// connection for d.
func (p *rawPeer) expectOpen(d time.Duration) {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := p.br.Read(b[:])
	if n > 0 || !isTimeout(err) {
		p.t.Fatalf("got % x, %v, want silence and an open connection for %v", b[:n], err, d)
	}
}
