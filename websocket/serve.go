package websocket

import (
	"context"
	"errors"
	"io"
	"math/bits"

	"github.com/duplexws/duplex/internal/frame"
)

var errServeBusy = errors.New("websocket: Serve while reading, awaiting or serving")

// Serve reads c's messages without a goroutine of c's own and calls
// onMessage with each, then, once reading has ended, closes c with
// CloseNow and calls onEnd, in a goroutine of its own, with the reason
// (as Read would have returned it). It returns at once; the error it
// returns says why serving did not start, and then neither function is
// called.
//
// This is the way to serve many connections. On Linux, a TCP or Unix
// connection waits in one of a few epoll sets the process shares (one per
// GOMAXPROCS), each drained by one goroutine that, for every ready
// connection, reads what the kernel holds (once, or a few times while
// each read fills the buffer) and calls onMessage for every whole message
// the reads completed: the epoll set says when more has arrived, so a read
// seldom finds nothing, and a busy connection costs about one read and one
// write per message. An idle connection holds neither a
// goroutine nor a read buffer. Elsewhere, and for TLS and wrapped
// connections, a goroutine reads as Read would.
//
// onMessage runs on the goroutine that drains the set, one message at a
// time for each connection. It may Write, which waits while the peer's
// receive window is full: when the calls for what one read brought keep
// that goroutine 10 to 20 ms, a new goroutine takes the set over, so that
// its other connections are still served, and the old one, once
// onMessage returns, hands its connection back to the set and ends. Each
// callback blocked at a time thus costs a goroutine: slow work is still
// better handed to another goroutine. p is valid only until onMessage
// returns; copy what must outlive the call. A message that does not fit
// the read buffer (AcceptOptions.ReadBufferSize) is read by a goroutine of
// its own, which then hands the connection back; so is a compressed text
// message that has arrived in part, whose text Read checks as it inflates
// what has arrived (one that arrives whole stays on the set). Pings are
// answered and pongs handled as Read does. Close, which waits for the
// peer's close frame, must not be called from onMessage: call CloseNow
// there, or Close in a goroutine.
//
// Serve counts as a read for good: it holds the read lock until reading
// ends, so Read and Reader wait until then (or their context ends) and
// then fail, and Await and a second Serve return an error at once.
// Message timeouts (AcceptOptions.MessageTimeout) do not apply to a
// message the set is waiting for the rest of.
func (c *Conn) Serve(onMessage func(typ MessageType, p []byte), onEnd func(err error)) error {
	if onMessage == nil || onEnd == nil {
		return errors.New("websocket: Serve needs onMessage and onEnd")
	}
	if c.readClosed.Load() {
		return errReadClosed
	}
	if !c.readMu.tryLock() {
		return errServeBusy
	}
	c.unwatch(reading)
	c.serving = &serveState{onMessage: onMessage, onEnd: onEnd}
	c.serveFrom()
	return nil
}

// serveState is a served Conn's: what to call, and its place in a loop.
type serveState struct {
	onMessage func(MessageType, []byte)
	onEnd     func(error)
	linger    bool        // the close frame is sent: drain before closing (lingerLater)
	grownBits uint8       // log2 of the buffer the last message grew it to, 0 when none (deliver)
	prefix    prefixCheck // of the message the buffer holds part of
	loopState             // the connection's place in its loop (serve_linux.go)
}

// takeReadBuffer gives a served c a read buffer again, if it dropped its
// own, set to read without waiting as a loop does. The caller holds
// readMu for Serve.
func (c *Conn) takeReadBuffer() {
	if c.br != nil {
		return
	}
	c.reuseReadBuffer()
	c.br.noWait = true
}

// lingerLater reports whether the drain that linger does after the close
// frame must wait for serveEnd, as a loop of Serve is reading and must not
// wait for the peer. The caller holds readMu.
func (c *Conn) lingerLater() bool {
	if c.serving == nil || !c.br.noWait {
		return false
	}
	c.serving.linger = true
	return true
}

// serveAction is what dispatch leaves to do.
type serveAction int

const (
	serveWait    serveAction = iota // nothing whole is buffered: wait for more
	serveHandOff                    // the next message cannot fit the buffer
	serveEnded                      // reading has ended
)

// serveFrom delivers what c has buffered, then waits for more in a loop,
// or, without one, reads in this goroutine. The caller holds readMu for
// Serve.
func (c *Conn) serveFrom() {
	c.takeReadBuffer()
	c.br.noWait = true
	var scratch []byte
	switch c.dispatch(&scratch) {
	case serveEnded:
		c.serveEnd()
		return
	case serveHandOff:
		go c.serveBlocking()
		return
	}
	if !c.enterLoop() {
		go c.serveBlocking()
	}
}

// dispatch calls onMessage for every whole message buffered, handling the
// control frames between them, and says what is left to do. Nothing it
// does reads the network: the buffer holds every byte it parses.
func (c *Conn) dispatch(scratch *[]byte) serveAction {
	s := c.serving
	c.takeReadState()
	for {
		if c.readErr != nil {
			return serveEnded
		}
		buf := c.br.buf[c.br.r:c.br.w]
		whole, need := scanMessage(buf, c.serveLimit())
		if !whole {
			if need >= 0 && !c.prefixValid(buf) {
				need = -1 // Read, in a goroutine, fails it as it would
			}
			if need >= 0 && s.prefix.inflateText {
				// Read inflates what has arrived and checks its text at
				// once (RFC 6455 section 8.1); a loop cannot inflate part
				// of a message, as the inflater cannot resume once its
				// source has run dry. Small messages arrive whole and
				// stay on the loop.
				if need > c.br.Size() {
					s.grownBits = uint8(bits.Len(uint(need - 1))) // for the next one
				}
				need = -1
			}
			if need < 0 {
				s.prefix = prefixCheck{}
			}
			if c.br.r == c.br.w {
				c.br.release() // an idle connection holds no buffer
			}
			if need < 0 {
				return serveHandOff
			}
			if need > c.br.Size() && need > len(c.br.buf) && len(buf) == len(c.br.buf) {
				// For a message larger than the buffer, once what has
				// arrived fills it: to twice that at most, not to what a
				// header announces, so that a peer that announces a large
				// message and sends little of it holds little.
				n := min(need, 2*len(c.br.buf))
				c.br.grow(n)
				s.grownBits = uint8(bits.Len(uint(n - 1)))
			}
			if c.br.buf == nil && c.dropReadState() {
				// Idle: nor the buffer's bookkeeping, nor read state.
				c.dropReadBuffer()
			}
			return serveWait
		}
		s.prefix = prefixCheck{}
		if buf[0]&0x08 != 0 && c.skipLeft == 0 {
			h, op, err := c.readFrameHeader()
			if err == nil {
				err = c.handleControl(op, c.ctrl[:h.Length])
			}
			if err != nil {
				c.readError(context.Background(), err)
			}
			continue
		}
		typ, p, err := c.readWhole(scratch)
		if err == errWouldBlock {
			continue // what remains is frames discarded after Close
		}
		if err != nil {
			c.readError(context.Background(), err)
			continue
		}
		s.onMessage(typ, p)
	}
}

// prefixCheck is how far prefixValid has checked the frames of a message
// that has begun to arrive, so that each byte is checked once however many
// reads the message takes. Offsets count from the message's first byte.
type prefixCheck struct {
	off         int  // bytes checked
	frameEnd    int  // the end of the data frame off is in, or off between frames
	text        bool // an uncompressed text message: its payload must be UTF-8
	deflated    bool // a compressed message
	deflateText bool // a compressed text message
	inflateText bool // b holds payload of a compressed text message: Read is to check it
	size        int64
	frames      int64
	masked      bool
	key         [4]byte
	keyPos      int // frame.Mask's position in the frame's key
	stream      frame.Stream
	utf8        frame.UTF8
	started     bool // stream holds c.stream's state at the message's start
}

// prefixValid reports whether the part of a message that b, the buffer
// from the message's first byte, holds can still begin a valid message: so
// that a loop, which delivers a message once it is whole, fails a peer as
// soon as Read would, at a frame header that breaks the rules or at the
// first byte of invalid UTF-8 in text (RFC 6455 section 8.1; Autobahn
// 6.4), at a frame past the read limit or the fragment limit, without
// waiting for bytes that may never come. It checks what
// arrived since its last call; the failure itself is left to Read. The
// text of a compressed message cannot be checked before it is inflated:
// once payload of one has arrived, prefixValid sets inflateText, and the
// loop leaves the message to Read, which inflates and checks what arrives.
func (c *Conn) prefixValid(b []byte) bool {
	pc := &c.serving.prefix
	if !pc.started {
		*pc = prefixCheck{started: true, stream: c.stream}
	}
	if c.skipLeft > 0 || c.closeSent.Load() {
		return true // data after the close frame is discarded unchecked
	}
	for pc.off < len(b) {
		if pc.off < pc.frameEnd {
			end := min(pc.frameEnd, len(b))
			if pc.text && !pc.checkText(b[pc.off:end]) {
				return false
			}
			pc.inflateText = pc.inflateText || pc.deflateText
			pc.off = end
			continue
		}
		rest := b[pc.off:]
		if len(rest) < 2 || len(rest) < frame.HeaderLen(rest[1]) {
			return true
		}
		h, n, err := frame.ParseHeader(rest)
		if err != nil {
			return false
		}
		if h.Opcode.IsControl() {
			// Whole, it is answered before the message goes on; scanMessage
			// leaves such a message to a goroutine. Only its header counts.
			var s frame.Stream
			_, err := s.Check(&h, !c.client, 0)
			return err == nil
		}
		if _, err := pc.stream.Check(&h, !c.client, c.comp.allowedRSV()); err != nil {
			return false
		}
		if h.Opcode != frame.OpContinuation {
			pc.deflated = h.RSV&frame.RSV1 != 0
			pc.text = h.Opcode == frame.OpText && !pc.deflated
			pc.deflateText = h.Opcode == frame.OpText && pc.deflated
		}
		// The limits nextFrame checks as each header arrives.
		pc.frames++
		if limit := c.fragmentCap(); limit >= 0 && pc.frames > limit {
			return false
		}
		if limit := rawLimit(c.readLimit.Load(), pc.deflated); limit >= 0 && h.Length > limit-pc.size {
			return false
		}
		pc.size += h.Length
		pc.masked, pc.key, pc.keyPos = h.Masked, h.MaskKey, 0
		pc.off += n
		pc.frameEnd = pc.off + int(h.Length) // within serveLimit: scanMessage saw it

	}
	return true
}

// checkText feeds payload bytes p, as they are on the wire, to the UTF-8
// validator.
func (pc *prefixCheck) checkText(p []byte) bool {
	if !pc.masked {
		return pc.utf8.Write(p)
	}
	var plain [256]byte
	for len(p) > 0 {
		n := copy(plain[:], p)
		pc.keyPos = frame.Mask(pc.key, pc.keyPos, plain[:n])
		if !pc.utf8.Write(plain[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// readWhole reads a message whose frames are all buffered and returns its
// type and payload: a message of one uncompressed frame in place, unmasked
// in the read buffer, which nothing reads into before onMessage returns;
// others assembled in *scratch, grown as needed.
func (c *Conn) readWhole(scratch *[]byte) (MessageType, []byte, error) {
	if err := c.nextMessage(); err != nil {
		return 0, nil, err
	}
	if c.frameFin && c.inflate == nil && c.frameLeft <= int64(c.br.Buffered()) {
		p := c.br.buf[c.br.r : c.br.r+int(c.frameLeft)]
		if err := c.consumed(p); err != nil {
			return 0, nil, err
		}
		c.br.consume(len(p))
		if err := c.endMessage(); err != io.EOF {
			return 0, nil, err
		}
		return c.msgType, p, nil
	}
	p := (*scratch)[:0]
	for {
		if len(p) == cap(p) {
			p = append(p, 0)[:len(p)]
			*scratch = p[:0]
		}
		n, err := c.readPayload(p[len(p):cap(p)])
		p = p[:len(p)+n]
		if err == io.EOF {
			return c.msgType, p, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// scanMessage reports whether b begins with a whole control frame or with
// whole frames up to the end of a data message. When not, need is the
// length b must reach for the frames whose headers it holds, or -1 when
// the message is not to be assembled in the buffer: its frames would take
// more than limit bytes, or a control frame between them, which must be
// answered at once, waits behind a frame that has not arrived whole.
func scanMessage(b []byte, limit int) (whole bool, need int) {
	off := 0
	control := false // a whole control frame follows a data frame
	more := func(n int) (bool, int) {
		if control {
			return false, -1
		}
		return false, n
	}
	for {
		if len(b)-off < 2 {
			return more(off + 2)
		}
		hl := 2
		switch b[off+1] & 0x7f {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if b[off+1]&0x80 != 0 {
			hl += 4
		}
		if len(b)-off < hl {
			return more(off + hl)
		}
		var length uint64
		switch b[off+1] & 0x7f {
		case 126:
			length = uint64(b[off+2])<<8 | uint64(b[off+3])
		case 127:
			for _, x := range b[off+2 : off+10] {
				length = length<<8 | uint64(x)
			}
		default:
			length = uint64(b[off+1] & 0x7f)
		}
		if length > uint64(limit) || off+hl+int(length) > limit {
			return false, -1
		}
		end := off + hl + int(length)
		if end > len(b) {
			return more(end)
		}
		if b[off]&0x08 != 0 {
			if off == 0 {
				return true, end
			}
			control = true
		} else if b[off]&0x80 != 0 {
			return true, end
		}
		off = end
	}
}

// maxServeBuffer bounds the messages a loop assembles in a connection's
// read buffer, grown for them; larger ones are read by a goroutine.
const maxServeBuffer = 256 << 10

// serveLimit is the most a loop lets c's read buffer hold: the buffer's
// size, or up to maxServeBuffer for a message within the read limit.
func (c *Conn) serveLimit() int {
	limit := maxServeBuffer + frame.MaxHeaderSize
	if rl := c.readLimit.Load(); rl >= 0 && rl < maxServeBuffer {
		limit = int(rl) + frame.MaxHeaderSize
	}
	if !c.br.canGrow() {
		limit = 0
	}
	return max(limit, c.br.Size())
}

// serveBlocking reads c's messages in this goroutine, as Read does, until
// the next one fits the buffer whole; then c goes back to a loop.
func (c *Conn) serveBlocking() {
	s := c.serving
	c.takeReadBuffer()
	c.takeReadState()
	for {
		c.br.noWait = false
		c.beginMessageWatch()
		msg, err := c.readMessage()
		c.endMessageWatch()
		if err != nil {
			c.readError(context.Background(), err)
			c.serveEnd()
			return
		}
		s.onMessage(c.msgType, msg)
		if c.br.raw != nil && loopsAvailable() {
			c.serveFrom()
			return
		}
	}
}

// serveEnd ends serving once reading has ended: it releases the read lock,
// then closes c and calls onEnd in a goroutine.
func (c *Conn) serveEnd() {
	s := c.serving
	if c.readErr == nil {
		c.readErr = c.endErr(errConnClosed)
	}
	err := c.readErr
	c.takeReadBuffer() // for whoever reads next: Close, say
	c.br.noWait = false
	c.br.release()
	c.takeReadState()
	linger := s.linger
	var rate *bucket
	most := int64(-1)
	if linger {
		rate, most = c.drainLimits()
	}
	c.readMu.unlock()
	go func() {
		if linger {
			// As linger does: until the peer closes or the close timeout.
			lingerDrain(c.netConn, c.cfg.closeTimeout, rate, most)
		}
		c.CloseNow()
		s.onEnd(err)
	}()
}
