package cli

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/websocket"
)

// tracer prints what crosses a connection, for duplex connect --trace: the
// TLS session, the opening handshake's request and response, and every
// frame in both directions, decoded with internal/frame as the bytes pass.
// It also remembers the wire size of each data message received, which its
// message line then shows. It is safe for concurrent use: a connection is read and
// written from different goroutines.
type tracer struct {
	con *console

	mu           sync.Mutex
	sent         traceStream   // client to server
	received     traceStream   // server to client
	deflate      bool          // the handshake agreed on permessage-deflate
	connectSent  bool          // a CONNECT request went out: the next response is the proxy's
	receivedMsgs []wireMessage // data messages received whole, for their message lines
}

// wireMessage is a data message as it crossed the wire.
type wireMessage struct {
	wire       int64 // payload bytes of its frames
	frames     int
	compressed bool
}

func newTracer(con *console) *tracer {
	t := &tracer{con: con}
	t.sent = traceStream{arrow: ">>", client: true}
	t.received = traceStream{arrow: "<<"}
	return t
}

// wrap returns conn, traced. When encrypted, the bytes are TLS records that
// cannot be decoded and only their counts are shown.
func (t *tracer) wrap(conn net.Conn, encrypted bool) net.Conn {
	t.con.printf("-- connected to %v from %v", conn.RemoteAddr(), conn.LocalAddr())
	if encrypted {
		t.con.printf("-- wss:// through a proxy: TLS runs inside the tunnel, so only byte counts can be shown")
		t.mu.Lock()
		t.sent.state, t.sent.rawLabel = streamRaw, "encrypted"
		t.received.state, t.received.rawLabel = streamRaw, "encrypted"
		t.mu.Unlock()
	}
	return &traceConn{Conn: conn, t: t}
}

// tlsDone prints the TLS session the connection runs over.
func (t *tracer) tlsDone(st tls.ConnectionState) {
	peer := "no server certificate"
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		peer = fmt.Sprintf("server certificate %q issued by %q", c.Subject.String(), c.Issuer.String())
	}
	t.con.printf("-- %s, %s, ALPN %q, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol, peer)
}

// nextReceived returns the next data message read from the wire whose
// message line has not been printed, if there is one. Messages are read in
// the order they come, and a message has crossed the wire whole by the time
// Read returns it.
func (t *tracer) nextReceived() (wireMessage, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.receivedMsgs) == 0 {
		return wireMessage{}, false
	}
	m := t.receivedMsgs[0]
	t.receivedMsgs = t.receivedMsgs[1:]
	return m, true
}

// traceConn is a connection whose bytes a tracer decodes as they pass.
type traceConn struct {
	net.Conn
	t         *tracer
	closeOnce sync.Once
}

func (c *traceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.mu.Lock()
		c.t.received.feed(c.t, p[:n])
		c.t.mu.Unlock()
	}
	return n, err
}

// Write decodes p before writing it, so that what it sends is printed
// before the answers the reader may print.
func (c *traceConn) Write(p []byte) (int, error) {
	c.t.mu.Lock()
	c.t.sent.feed(c.t, p)
	c.t.mu.Unlock()
	n, err := c.Conn.Write(p)
	if err != nil {
		c.t.con.printf("%s write failed after %d of %d bytes: %v", c.t.sent.arrow, n, len(p), err)
	}
	return n, err
}

func (c *traceConn) Close() error {
	c.closeOnce.Do(func() {
		c.t.mu.Lock()
		sent, received := c.t.sent.total, c.t.received.total
		c.t.mu.Unlock()
		c.t.con.printf("-- connection closed: %d bytes sent, %d received", sent, received)
	})
	return c.Conn.Close()
}

// streamState is what a traceStream expects next.
type streamState int

const (
	streamHTTP   streamState = iota // an HTTP request or response head
	streamFrames                    // WebSocket frames
	streamRaw                       // bytes it does not decode
)

// maxTraceHead bounds an HTTP head the tracer collects.
const maxTraceHead = 64 << 10

// traceStream decodes one direction of a connection. It is a sans-I/O
// decoder: feed takes whatever bytes a Read or Write moved, in pieces of
// any size. Its owner's mutex guards it.
type traceStream struct {
	arrow    string // ">>" for bytes sent, "<<" for bytes received
	client   bool   // the client's direction: frames are masked
	state    streamState
	rawLabel string
	total    int64

	head      []byte // streamHTTP: the head so far
	hdr       [frame.MaxHeaderSize]byte
	hdrLen    int          // bytes of hdr filled
	h         frame.Header // the frame whose payload is passing
	inPayload bool         // h is current; left bytes of it are to come
	left      int64
	ctrl      []byte       // the payload of a control frame so far
	msg       wireMessage  // the data message in progress
	msgOpcode frame.Opcode // its opcode
}

// feed decodes b, the next bytes of the stream, printing what completes.
func (s *traceStream) feed(t *tracer, b []byte) {
	s.total += int64(len(b))
	for len(b) > 0 {
		switch s.state {
		case streamHTTP:
			b = s.feedHead(t, b)
		case streamFrames:
			b = s.feedFrames(t, b)
		default:
			t.con.printf("%s %d bytes (%s)", s.arrow, len(b), s.rawLabel)
			return
		}
	}
}

// feedHead collects an HTTP head and prints it once whole. It returns the
// bytes after the head.
func (s *traceStream) feedHead(t *tracer, b []byte) []byte {
	start := max(len(s.head)-3, 0)
	prev := len(s.head)
	s.head = append(s.head, b...)
	i := bytes.Index(s.head[start:], []byte("\r\n\r\n"))
	if i < 0 {
		if len(s.head) > maxTraceHead {
			t.con.printf("%s HTTP head over %d bytes: not decoded", s.arrow, maxTraceHead)
			s.state, s.rawLabel, s.head = streamRaw, "not decoded", nil
		}
		return nil
	}
	end := start + i + 4
	head := string(s.head[:end-4])
	s.head = nil
	for line := range strings.SplitSeq(head, "\r\n") {
		t.con.printf("%s %s", s.arrow, redactHeader(line))
	}
	s.afterHead(t, head)
	return b[end-prev:]
}

// afterHead decides what follows a head: frames after the upgrade request
// and the 101 response, another head after a CONNECT and its 200, and
// undecoded bytes after a refusal.
func (s *traceStream) afterHead(t *tracer, head string) {
	first, fields, _ := strings.Cut(head, "\r\n")
	if s.client {
		if strings.HasPrefix(first, "CONNECT ") {
			t.connectSent = true
			return
		}
		s.state = streamFrames
		return
	}
	status := 0
	if parts := strings.Fields(first); len(parts) >= 2 {
		status, _ = strconv.Atoi(parts[1])
	}
	switch {
	case status == 101:
		s.state = streamFrames
		for line := range strings.SplitSeq(fields, "\r\n") {
			name, value, _ := strings.Cut(line, ":")
			if strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Extensions") && strings.Contains(value, "permessage-deflate") {
				t.deflate = true
			}
		}
	case status == 200 && t.connectSent:
		t.connectSent = false // the tunnel is up: the WebSocket handshake comes next
	default:
		s.state, s.rawLabel = streamRaw, "after the handshake failed: not decoded"
	}
}

// redactHeader hides the value of a header line that carries credentials.
func redactHeader(line string) string {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return line
	}
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return fmt.Sprintf("%s: [%d bytes hidden]", name, len(strings.TrimSpace(value)))
	}
	return line
}

// feedFrames decodes frame headers and steps over payloads. It returns the
// bytes it has not consumed yet.
func (s *traceStream) feedFrames(t *tracer, b []byte) []byte {
	if s.inPayload {
		n := int(min(s.left, int64(len(b))))
		if s.h.Opcode.IsControl() && s.h.Length <= frame.MaxControlPayload {
			s.ctrl = append(s.ctrl, b[:n]...)
		}
		s.left -= int64(n)
		if s.left == 0 {
			s.endFrame(t)
		}
		return b[n:]
	}
	// Collect the header; its first two bytes say how long it is.
	need := 2
	if s.hdrLen >= 2 {
		need = frame.HeaderLen(s.hdr[1])
	}
	n := copy(s.hdr[s.hdrLen:need], b)
	s.hdrLen += n
	b = b[n:]
	if s.hdrLen < 2 || s.hdrLen < frame.HeaderLen(s.hdr[1]) {
		return b // more header to come
	}
	h, _, err := frame.ParseHeader(s.hdr[:s.hdrLen])
	s.hdrLen = 0
	if err != nil {
		t.con.printf("%s invalid frame header (%v): the rest is not decoded", s.arrow, err)
		s.state, s.rawLabel = streamRaw, "not decoded"
		return b
	}
	s.startFrame(t, h)
	return b
}

// startFrame prints a data frame's header at once; a control frame is
// printed when its payload has come.
func (s *traceStream) startFrame(t *tracer, h frame.Header) {
	s.h, s.left, s.inPayload, s.ctrl = h, h.Length, true, s.ctrl[:0]
	if !h.Opcode.IsControl() {
		if h.Opcode != frame.OpContinuation {
			s.msgOpcode = h.Opcode
			s.msg = wireMessage{compressed: t.deflate && h.RSV&frame.RSV1 != 0}
		}
		s.msg.frames++
		s.msg.wire += h.Length
		t.con.printf("%s %s", s.arrow, s.describe(h, ""))
	}
	if h.Length == 0 {
		s.endFrame(t)
	}
}

func (s *traceStream) endFrame(t *tracer) {
	s.inPayload = false
	h := s.h
	if h.Opcode.IsControl() {
		payload := "payload over 125 bytes (invalid)"
		if h.Length <= frame.MaxControlPayload {
			if h.Masked {
				frame.Mask(h.MaskKey, 0, s.ctrl)
			}
			payload = describeControl(h.Opcode, s.ctrl)
		}
		t.con.printf("%s %s", s.arrow, s.describe(h, payload))
		return
	}
	if h.Fin && !s.client && (s.msgOpcode == frame.OpText || s.msgOpcode == frame.OpBinary) {
		t.receivedMsgs = append(t.receivedMsgs, s.msg)
	}
}

// describe formats a frame header: opcode, flags, masking key, length.
func (s *traceStream) describe(h frame.Header, payload string) string {
	var b strings.Builder
	b.WriteString(h.Opcode.String())
	if h.Fin {
		b.WriteString(" fin")
	}
	for _, rsv := range []struct {
		bit  byte
		name string
	}{{frame.RSV1, "rsv1"}, {frame.RSV2, "rsv2"}, {frame.RSV3, "rsv3"}} {
		if h.RSV&rsv.bit != 0 {
			b.WriteString(" " + rsv.name)
		}
	}
	if h.Masked {
		fmt.Fprintf(&b, " masked key=%x", h.MaskKey)
	}
	fmt.Fprintf(&b, " len=%d", h.Length)
	if !h.Opcode.IsControl() && s.msg.compressed {
		b.WriteString(" (compressed)")
	}
	if payload != "" {
		b.WriteString(" " + payload)
	}
	return b.String()
}

// describeControl formats the payload of a control frame.
func describeControl(op frame.Opcode, p []byte) string {
	if op != frame.OpClose {
		if len(p) == 0 {
			return ""
		}
		return "payload=" + hex.EncodeToString(p)
	}
	code, reason, err := frame.ParseClosePayload(p)
	switch {
	case err != nil:
		return fmt.Sprintf("invalid close payload %x (%v)", p, err)
	case code == frame.CodeNoStatus:
		return "no code"
	case len(reason) == 0:
		return "code=" + describeCode(websocket.StatusCode(code))
	}
	return fmt.Sprintf("code=%s reason=%q", describeCode(websocket.StatusCode(code)), reason)
}
