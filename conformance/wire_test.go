package conformance

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

// The wire codec of the raw peer. It is written from RFC 6455 section 5.2
// alone and shares no code with the library, so that a misreading of the RFC
// in internal/frame cannot cancel itself out here. It can also write what
// the RFC forbids.

// Opcodes (section 5.2), as raw bytes so that reserved ones can be sent.
const (
	opContinuation byte = 0x0
	opText         byte = 0x1
	opBinary       byte = 0x2
	opClose        byte = 0x8
	opPing         byte = 0x9
	opPong         byte = 0xA
)

// The reserved bits of the first header byte.
const (
	rsv1 byte = 0x40
	rsv2 byte = 0x20
	rsv3 byte = 0x10
)

// maskRule says whether a frame is masked.
type maskRule int

const (
	maskAuto maskRule = iota // as the raw peer's role requires: masked from a client
	maskOn                   // masked, whoever sends it
	maskOff                  // unmasked, whoever sends it
)

// rawFrame is one frame to put on the wire, legal or not. Besides op and
// payload, the zero value of each field means "as RFC 6455 says".
type rawFrame struct {
	op          byte // any 4-bit value, reserved ones included
	payload     []byte
	more        bool     // FIN=0: more fragments follow
	rsv         byte     // reserved bits to set
	length      int64    // when non-zero, the length announced instead of len(payload)
	lengthBytes int      // 0: the minimal length encoding; 2 or 8: force that extended form
	topBit      bool     // set the most significant bit of the 64-bit length
	mask        maskRule // maskAuto unless the case is about masking
	key         *[4]byte // the masking key; nil: one from the peer's RNG
}

func text(s string) rawFrame      { return rawFrame{op: opText, payload: []byte(s)} }
func binaryMsg(b []byte) rawFrame { return rawFrame{op: opBinary, payload: b} }
func ping(b []byte) rawFrame      { return rawFrame{op: opPing, payload: b} }
func pong(b []byte) rawFrame      { return rawFrame{op: opPong, payload: b} }

// fragment is one frame of a fragmented message: op is opText or opBinary
// for the first, opContinuation for the others.
func fragment(op byte, payload []byte, more bool) rawFrame {
	return rawFrame{op: op, payload: payload, more: more}
}

// closeFrame is a close frame with a code and a reason (section 5.5.1).
func closeFrame(code uint16, reason string) rawFrame {
	return rawFrame{op: opClose, payload: closePayload(code, reason)}
}

// closeEmpty is a close frame without payload.
func closeEmpty() rawFrame { return rawFrame{op: opClose} }

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// appendFrame appends the encoding of f to dst, masked with key when masked.
func appendFrame(dst []byte, f rawFrame, masked bool, key [4]byte) []byte {
	dst = appendHeader(dst, f, masked, key)
	start := len(dst)
	dst = append(dst, f.payload...)
	if masked {
		maskBytes(key, dst[start:])
	}
	return dst
}

// appendHeader appends the header of f alone.
func appendHeader(dst []byte, f rawFrame, masked bool, key [4]byte) []byte {
	b0 := f.op&0x0f | f.rsv&(rsv1|rsv2|rsv3)
	if !f.more {
		b0 |= 0x80
	}
	var b1 byte
	if masked {
		b1 = 0x80
	}
	length := f.length
	if length == 0 {
		length = int64(len(f.payload))
	}
	form := f.lengthBytes
	switch {
	case f.topBit:
		form = 8
	case form != 0:
	case length > 0xffff:
		form = 8
	case length > 125:
		form = 2
	}
	switch form {
	case 8:
		l := uint64(length)
		if f.topBit {
			l |= 1 << 63
		}
		dst = binary.BigEndian.AppendUint64(append(dst, b0, b1|127), l)
	case 2:
		dst = binary.BigEndian.AppendUint16(append(dst, b0, b1|126), uint16(length))
	default:
		dst = append(dst, b0, b1|byte(length))
	}
	if masked {
		dst = append(dst, key[:]...)
	}
	return dst
}

// maskBytes masks or unmasks b, which starts at payload offset 0 (section 5.3).
func maskBytes(key [4]byte, b []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// wireFrame is a frame read from the library.
type wireFrame struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	key     [4]byte
	header  []byte // as received
	payload []byte // unmasked
}

// maxReadPayload bounds what readWireFrame accepts, so that a garbled
// header cannot make the test allocate without end.
const maxReadPayload = 32 << 20

// readWireFrame reads one frame from br. It rejects what no conforming
// endpoint sends: a length that is not minimally encoded or that sets the
// most significant bit of the 64-bit form (section 5.2).
func readWireFrame(br *bufio.Reader) (*wireFrame, error) {
	var f wireFrame
	head := make([]byte, 2, 14)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, err
	}
	f.fin = head[0]&0x80 != 0
	f.rsv = head[0] & (rsv1 | rsv2 | rsv3)
	f.op = head[0] & 0x0f
	f.masked = head[1]&0x80 != 0
	var length uint64
	switch l := head[1] & 0x7f; l {
	case 126:
		head = head[:4]
		if _, err := io.ReadFull(br, head[2:]); err != nil {
			return nil, err
		}
		length = uint64(binary.BigEndian.Uint16(head[2:]))
		if length <= 125 {
			return nil, fmt.Errorf("length %d sent in the 16-bit form (header % x)", length, head)
		}
	case 127:
		head = head[:10]
		if _, err := io.ReadFull(br, head[2:]); err != nil {
			return nil, err
		}
		length = binary.BigEndian.Uint64(head[2:])
		if length>>63 != 0 {
			return nil, fmt.Errorf("64-bit length with its most significant bit set (header % x)", head)
		}
		if length <= 0xffff {
			return nil, fmt.Errorf("length %d sent in the 64-bit form (header % x)", length, head)
		}
	default:
		length = uint64(l)
	}
	if f.masked {
		n := len(head)
		head = head[:n+4]
		if _, err := io.ReadFull(br, head[n:]); err != nil {
			return nil, err
		}
		copy(f.key[:], head[n:])
	}
	if length > maxReadPayload {
		return nil, fmt.Errorf("frame of %d bytes is larger than any case sends", length)
	}
	f.header = head
	f.payload = make([]byte, length)
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return nil, err
	}
	if f.masked {
		maskBytes(f.key, f.payload)
	}
	return &f, nil
}

func (f *wireFrame) String() string {
	p := f.payload
	suffix := ""
	if len(p) > 32 {
		p, suffix = p[:32], "…"
	}
	return fmt.Sprintf("frame{fin=%v rsv=%#x op=%#x masked=%v len=%d payload=% x%s}",
		f.fin, f.rsv, f.op, f.masked, len(f.payload), p, suffix)
}

// delivery is how the raw peer cuts the bytes it sends into writes. Each
// write goes out at once: the sockets have TCP_NODELAY and no buffering.
type delivery int

const (
	deliverWhole  delivery = iota // one write per send
	deliverByByte                 // one byte per write
	deliverChunks                 // random-sized writes from a seeded RNG
)

var deliveries = []delivery{deliverWhole, deliverByByte, deliverChunks}

func (d delivery) String() string {
	switch d {
	case deliverWhole:
		return "whole"
	case deliverByByte:
		return "one-byte"
	}
	return "random-chunks"
}

// One-byte delivery of a 1 MiB message would take a million writes (seconds
// under -race), so a send larger than 4 edges goes one byte at a time for its
// first and last edge bytes, byteByByteEdge unless the run sets another
// (those bytes hold every frame boundary of the cases that send that much),
// and in 1 KiB writes between.
const byteByByteEdge = 32 << 10

// writeDelivered writes b to conn as d says, drawing chunk sizes from rng;
// edge bounds one-byte delivery (0: byteByByteEdge).
func writeDelivered(conn net.Conn, d delivery, rng *rand.Rand, edge int, b []byte) error {
	next := func(pos int) int { return len(b) - pos }
	switch d {
	case deliverByByte:
		if edge <= 0 {
			edge = byteByByteEdge
		}
		next = func(pos int) int {
			if len(b) > 4*edge && pos >= edge && pos < len(b)-edge {
				return min(1<<10, len(b)-edge-pos)
			}
			return 1
		}
	case deliverChunks:
		next = func(pos int) int {
			// Sizes spread over every scale from 1 byte to 16 KiB.
			limit := 1 << rng.IntN(15)
			return 1 + rng.IntN(min(limit, len(b)-pos))
		}
	}
	for pos := 0; pos < len(b); {
		n := next(pos)
		if _, err := conn.Write(b[pos : pos+n]); err != nil {
			return err
		}
		pos += n
	}
	return nil
}

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// ioTimeout bounds every read and write of the raw peer: no case can hang.
const ioTimeout = 5 * time.Second
