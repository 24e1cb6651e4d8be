// Package wiretrace decodes the bytes of a WebSocket connection as they
// cross it, for duplex connect --trace: the opening handshake's request and
// response (and a proxy's CONNECT before them), then every frame in both
// directions, decoded with internal/frame. It is a sans-I/O decoder: it
// takes whatever pieces a Read or Write moved and prints what completes.
//
// It lives apart from internal/cli, and names close codes through its
// caller rather than package websocket, so that its fuzzer's binary holds
// little more than the decoder: go test -fuzz instruments every package of
// the test binary for coverage, and internal/cli's links the gateway, the
// Redis and NATS clients, net/http and cobra, which made each execution
// about twice as slow.
package wiretrace

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/duplexws/duplex/internal/frame"
)

// Tracer decodes both directions of one connection. The directions share
// what the handshake agreed on (permessage-deflate) and whether a CONNECT
// went out. It is not safe for concurrent use: its owner serializes the
// calls to Feed of both streams and to NextReceived.
type Tracer struct {
	printf    func(format string, args ...any)
	closeCode func(code uint16) string

	Sent     Stream // client to server
	Received Stream // server to client

	deflate     bool      // the handshake agreed on permessage-deflate
	connectSent bool      // a CONNECT request went out: the next response is the proxy's
	received    []Message // data messages received whole, for their message lines
}

// Message is a data message as it crossed the wire.
type Message struct {
	Wire       int64 // payload bytes of its frames
	Frames     int
	Compressed bool
}

// New returns a Tracer that prints a line for each thing it decodes with
// printf (format and arguments as fmt's, without a newline), naming close
// codes with closeCode (nil: the number alone). The names are the caller's
// so that this package needs no more than internal/frame.
func New(printf func(format string, args ...any), closeCode func(code uint16) string) *Tracer {
	if closeCode == nil {
		closeCode = func(code uint16) string { return strconv.Itoa(int(code)) }
	}
	return &Tracer{
		printf:    printf,
		closeCode: closeCode,
		Sent:      Stream{arrow: ">>", client: true},
		Received:  Stream{arrow: "<<"},
	}
}

// Raw makes both streams print only byte counts, labelled label: for
// bytes that cannot be decoded, such as TLS records.
func (t *Tracer) Raw(label string) {
	t.Sent.state, t.Sent.rawLabel = streamRaw, label
	t.Received.state, t.Received.rawLabel = streamRaw, label
}

// Frames makes both streams decode WebSocket frames from their next byte,
// for a handshake made elsewhere, such as RFC 8441's extended CONNECT over
// HTTP/2, whose stream's DATA is the frames alone; deflate says whether it
// agreed on permessage-deflate.
func (t *Tracer) Frames(deflate bool) {
	t.Sent.state, t.Received.state = streamFrames, streamFrames
	t.deflate = deflate
}

// NextReceived returns the next data message received whole that has not
// been returned yet, if there is one, in the order they came.
func (t *Tracer) NextReceived() (Message, bool) {
	if len(t.received) == 0 {
		return Message{}, false
	}
	m := t.received[0]
	t.received = t.received[1:]
	return m, true
}

// Total is how many bytes the stream has been fed.
func (s *Stream) Total() int64 { return s.total }

// streamState is what a Stream expects next.
type streamState int

const (
	streamHTTP   streamState = iota // an HTTP request or response head
	streamFrames                    // WebSocket frames
	streamRaw                       // bytes it does not decode
)

// maxTraceHead bounds an HTTP head the tracer collects.
const maxTraceHead = 64 << 10

// Stream decodes one direction of a connection: Feed takes whatever bytes
// a Read or Write moved, in pieces of any size. Like its Tracer, it is not
// safe for concurrent use.
type Stream struct {
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
	msg       Message      // the data message in progress
	msgOpcode frame.Opcode // its opcode
}

// Feed decodes b, the next bytes of the stream, printing what completes
// through t, the Tracer s belongs to.
func (s *Stream) Feed(t *Tracer, b []byte) {
	s.total += int64(len(b))
	for len(b) > 0 {
		switch s.state {
		case streamHTTP:
			b = s.feedHead(t, b)
		case streamFrames:
			b = s.feedFrames(t, b)
		default:
			t.printf("%s %d bytes (%s)", s.arrow, len(b), s.rawLabel)
			return
		}
	}
}

// feedHead collects an HTTP head and prints it once whole. It returns the
// bytes after the head.
func (s *Stream) feedHead(t *Tracer, b []byte) []byte {
	start := max(len(s.head)-3, 0)
	prev := len(s.head)
	s.head = append(s.head, b...)
	i := bytes.Index(s.head[start:], []byte("\r\n\r\n"))
	if i < 0 {
		if len(s.head) > maxTraceHead {
			t.printf("%s HTTP head over %d bytes: not decoded", s.arrow, maxTraceHead)
			s.state, s.rawLabel, s.head = streamRaw, "not decoded", nil
		}
		return nil
	}
	end := start + i + 4
	head := string(s.head[:end-4])
	s.head = nil
	for line := range strings.SplitSeq(head, "\r\n") {
		t.printf("%s %s", s.arrow, RedactHeader(line))
	}
	s.afterHead(t, head)
	return b[end-prev:]
}

// afterHead decides what follows a head: frames after the upgrade request
// and the 101 response, another head after a CONNECT and its 200, and
// undecoded bytes after a refusal.
func (s *Stream) afterHead(t *Tracer, head string) {
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

// RedactHeader hides the value of a header line ("Name: value") that
// carries credentials: Authorization, Proxy-Authorization, Cookie and
// Set-Cookie. Other lines are returned as they are.
func RedactHeader(line string) string {
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
func (s *Stream) feedFrames(t *Tracer, b []byte) []byte {
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
		t.printf("%s invalid frame header (%v): the rest is not decoded", s.arrow, err)
		s.state, s.rawLabel = streamRaw, "not decoded"
		return b
	}
	s.startFrame(t, h)
	return b
}

// startFrame prints a data frame's header at once; a control frame is
// printed when its payload has come.
func (s *Stream) startFrame(t *Tracer, h frame.Header) {
	s.h, s.left, s.inPayload, s.ctrl = h, h.Length, true, s.ctrl[:0]
	if !h.Opcode.IsControl() {
		if h.Opcode != frame.OpContinuation {
			s.msgOpcode = h.Opcode
			s.msg = Message{Compressed: t.deflate && h.RSV&frame.RSV1 != 0}
		}
		s.msg.Frames++
		s.msg.Wire += h.Length
		t.printf("%s %s", s.arrow, s.describe(h, ""))
	}
	if h.Length == 0 {
		s.endFrame(t)
	}
}

func (s *Stream) endFrame(t *Tracer) {
	s.inPayload = false
	h := s.h
	if h.Opcode.IsControl() {
		payload := "payload over 125 bytes (invalid)"
		if h.Length <= frame.MaxControlPayload {
			if h.Masked {
				frame.Mask(h.MaskKey, 0, s.ctrl)
			}
			payload = t.describeControl(h.Opcode, s.ctrl)
		}
		t.printf("%s %s", s.arrow, s.describe(h, payload))
		return
	}
	if h.Fin && !s.client && (s.msgOpcode == frame.OpText || s.msgOpcode == frame.OpBinary) {
		t.received = append(t.received, s.msg)
	}
}

// describe formats a frame header: opcode, flags, masking key, length.
func (s *Stream) describe(h frame.Header, payload string) string {
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
	if !h.Opcode.IsControl() && s.msg.Compressed {
		b.WriteString(" (compressed)")
	}
	if payload != "" {
		b.WriteString(" " + payload)
	}
	return b.String()
}

// describeControl formats the payload of a control frame.
func (t *Tracer) describeControl(op frame.Opcode, p []byte) string {
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
		return "code=" + t.closeCode(code)
	}
	return fmt.Sprintf("code=%s reason=%q", t.closeCode(code), reason)
}
