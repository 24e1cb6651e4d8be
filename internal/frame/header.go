// Package frame is the sans-I/O wire core of RFC 6455: it decodes and encodes
// frame headers, masks payloads, parses close payloads, validates UTF-8
// incrementally and checks the order of frames in a stream. It never reads
// from or writes to a connection, starts no goroutine and reads no clock, so
// the blocking Conn of package websocket and a future event-loop engine can
// both sit on it.
package frame

// Opcode is the 4-bit frame type (RFC 6455 section 5.2).
type Opcode byte

// The opcodes defined by RFC 6455 section 11.8.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// IsControl reports whether op is a control opcode (most significant bit set).
func (op Opcode) IsControl() bool { return op&0x8 != 0 }

// Known reports whether op is one of the opcodes RFC 6455 defines.
func (op Opcode) Known() bool {
	switch op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return true
	}
	return false
}

func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "reserved(" + string("0123456789abcdef"[op&0xf]) + ")"
}

// The reserved bits as they sit in the first header byte.
const (
	RSV1 byte = 0x40 // permessage-deflate marks compressed messages with it (RFC 7692)
	RSV2 byte = 0x20
	RSV3 byte = 0x10
)

// MaxHeaderSize is the longest a frame header can be: 2 bytes, 8 bytes of
// extended length and a 4-byte masking key.
const MaxHeaderSize = 14

// MaxControlPayload is the largest payload a control frame may carry
// (RFC 6455 section 5.5).
const MaxControlPayload = 125

// Header is a decoded frame header.
type Header struct {
	Fin     bool
	RSV     byte // RSV1|RSV2|RSV3 bits as they appear in the first byte
	Opcode  Opcode
	Masked  bool
	MaskKey [4]byte
	Length  int64
}

// Size returns the number of bytes the encoded header occupies.
func (h *Header) Size() int {
	n := 2
	switch {
	case h.Length > 0xffff:
		n += 8
	case h.Length > 125:
		n += 2
	}
	if h.Masked {
		n += 4
	}
	return n
}

// ParseHeader decodes the frame header at the start of b. It returns the
// header and the number of bytes it occupies. When b does not yet hold the
// whole header it returns n == 0 and a nil error: the caller supplies more
// bytes and calls again. Lengths that are not minimally encoded or that set
// the most significant bit of the 64-bit form are errors (section 5.2).
// ParseHeader checks only the header's own encoding; Stream.Check judges it
// in the context of the connection.
func ParseHeader(b []byte) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.RSV = b0 & (RSV1 | RSV2 | RSV3)
	h.Opcode = Opcode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	n = 2
	switch l := b1 & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.Length = int64(b[2])<<8 | int64(b[3])
		if h.Length < 126 {
			return h, 0, ErrNonMinimalLength
		}
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		if b[2]&0x80 != 0 {
			return h, 0, ErrLengthOverflow
		}
		var l64 uint64
		for _, c := range b[2:10] {
			l64 = l64<<8 | uint64(c)
		}
		h.Length = int64(l64)
		if h.Length <= 0xffff {
			return h, 0, ErrNonMinimalLength
		}
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.MaskKey[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// AppendHeader appends the encoding of h to dst, using the minimal length
// encoding, and returns the extended slice.
func AppendHeader(dst []byte, h Header) []byte {
	b0 := byte(h.Opcode&0x0f) | h.RSV&(RSV1|RSV2|RSV3)
	if h.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch {
	case h.Length > 0xffff:
		l := uint64(h.Length)
		dst = append(dst, b0, b1|127,
			byte(l>>56), byte(l>>48), byte(l>>40), byte(l>>32),
			byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	case h.Length > 125:
		dst = append(dst, b0, b1|126, byte(h.Length>>8), byte(h.Length))
	default:
		dst = append(dst, b0, b1|byte(h.Length))
	}
	if h.Masked {
		dst = append(dst, h.MaskKey[:]...)
	}
	return dst
}

// HeaderLen returns the length of a header from its second byte, which
// holds the mask bit and the length form.
func HeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}
