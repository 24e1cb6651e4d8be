package websocket

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// Read reads the next data message whole and returns its type and payload,
// which belongs to the caller. It allocates the payload; to read without
// allocating, or to read a message larger than is wise to hold, use Reader.
//
// When ctx ends, Read returns ctx's error and the connection stays usable:
// the next Read resumes the message where this one stopped. The exception
// is a compressed message (permessage-deflate), whose inflater cannot
// resume: ending ctx in the middle of one closes the connection. Read
// returns a
// *CloseError once the peer has closed the connection and a *ProtocolError
// when this side failed it because of what the peer sent.
func (c *Conn) Read(ctx context.Context) (MessageType, []byte, error) {
	if c.readClosed.Load() {
		return 0, nil, errReadClosed // without waiting: CloseRead's reader keeps readMu
	}
	if err := c.lock(ctx, &c.readMu); err != nil {
		return 0, nil, err
	}
	defer c.readMu.unlock()
	if err := c.readAllowed(); err != nil {
		return 0, nil, err
	}
	if err := c.watch(ctx, reading); err != nil {
		return 0, nil, err
	}
	c.beginMessageWatch()
	msg, err := c.readMessage()
	c.endMessageWatch()
	if err != nil {
		return 0, nil, c.readError(ctx, err)
	}
	return c.msgType, msg, nil
}

// Reader waits for the next data message and returns its type and a reader
// of its payload, which streams the message without holding it whole. The
// reader returns io.EOF at the end of the message. It is valid until the
// next call to Reader or Read, which discard what is left of the message,
// and it is reused for the next message, so reading costs no allocation.
// ctx governs this call and every call to the reader's Read; its end is
// handled as in Read.
func (c *Conn) Reader(ctx context.Context) (MessageType, io.Reader, error) {
	if c.readClosed.Load() {
		return 0, nil, errReadClosed // without waiting: CloseRead's reader keeps readMu
	}
	if err := c.lock(ctx, &c.readMu); err != nil {
		return 0, nil, err
	}
	defer c.readMu.unlock()
	if err := c.readAllowed(); err != nil {
		return 0, nil, err
	}
	typ, err := c.startReader(ctx)
	if err != nil {
		return 0, nil, err
	}
	return typ, &c.reader, nil
}

// startReader begins a message for the reader. The caller holds readMu.
func (c *Conn) startReader(ctx context.Context) (MessageType, error) {
	if err := c.watch(ctx, reading); err != nil {
		return 0, err
	}
	c.beginMessageWatch()
	err := c.nextMessage()
	c.endMessageWatch()
	if err != nil {
		return 0, c.readError(ctx, err)
	}
	c.reader.ctx = ctx
	return c.msgType, nil
}

// nextMessage discards what is left of the current message, if any, and
// reads up to the first frame of the next.
func (c *Conn) nextMessage() error {
	if c.msgActive {
		if err := c.discardMessage(); err != nil {
			return err
		}
	}
	return c.nextFrame()
}

var errReadClosed = errors.New("websocket: read after CloseRead")

func (c *Conn) readAllowed() error {
	if c.readErr != nil {
		return c.readErr
	}
	if c.readClosed.Load() {
		return errReadClosed
	}
	return nil
}

// messageReader is the reader Reader returns; there is one per Conn.
type messageReader struct {
	c   *Conn
	ctx context.Context
}

// Read reads payload bytes of the current message.
func (r *messageReader) Read(p []byte) (int, error) {
	c := r.c
	if err := c.lock(r.ctx, &c.readMu); err != nil {
		return 0, err
	}
	defer c.readMu.unlock()
	if c.readErr != nil {
		return 0, c.readErr
	}
	if !c.msgActive || c.msgByRead {
		return 0, io.EOF
	}
	if err := c.watch(r.ctx, reading); err != nil {
		return 0, err
	}
	c.beginMessageWatch()
	n, err := c.readPayload(p)
	c.endMessageWatch()
	if err != nil && err != io.EOF {
		err = c.readError(r.ctx, err)
	}
	return n, err
}

// readMessage reads the rest of the message Read began, or a new one. What
// has arrived stays in c.partial, so an interrupted Read can resume.
func (c *Conn) readMessage() ([]byte, error) {
	if !c.msgActive || !c.msgByRead {
		if c.msgActive {
			if err := c.discardMessage(); err != nil {
				return nil, err
			}
		}
		if err := c.nextFrame(); err != nil {
			return nil, err
		}
		c.msgByRead = true
		c.partial = nil
	}
	for {
		free := int64(cap(c.partial) - len(c.partial))
		switch {
		case c.inflate != nil:
			// The inflated size is unknown: grow by doubling, which the
			// read limit bounds (the inflater stops just past it).
			if free == 0 {
				c.partial = slices.Grow(c.partial, max(cap(c.partial), 512))
			}
		case free == 0 && c.frameLeft > 0:
			c.partial = slices.Grow(c.partial, c.growBy())
		}
		n, err := c.readPayload(c.partial[len(c.partial):cap(c.partial)])
		c.partial = c.partial[:len(c.partial)+n]
		if err == io.EOF {
			msg := c.partial
			c.partial, c.msgByRead = nil, false
			if msg == nil {
				msg = []byte{}
			}
			return msg, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// minGrow is the least room growBy adds: the default read buffer's size,
// what a connection holds anyway while bytes arrive.
const minGrow = 4 << 10

// growBy returns how much room to add to the message Read assembles: what
// has arrived of the current frame (in the buffer or, asked only when the
// buffer does not hold the frame, in the kernel), or, while the frame is on
// its way, three times what the message holds so far, at least minGrow; and
// never more than the frame has left. So the memory a message costs follows
// the bytes received, at most four times them plus minGrow, not the length
// its header announces; a message that has arrived whole, the common case,
// is allocated once at its exact size.
func (c *Conn) growBy() int {
	if c.frameLeft <= minGrow {
		return int(c.frameLeft)
	}
	arrived := int64(c.br.Buffered())
	if arrived < c.frameLeft {
		arrived = int64(c.br.Arrived())
	}
	return int(min(max(arrived, 3*int64(len(c.partial)), minGrow), c.frameLeft))
}

// readPayload reads payload of the current message into p, moving on to its
// next frame as needed and inflating a compressed message. It returns
// io.EOF, and no data, at the end of the message.
func (c *Conn) readPayload(p []byte) (int, error) {
	if c.inflate == nil {
		n, err := c.readRaw(p)
		if err == io.EOF {
			return 0, c.endMessage()
		}
		return n, err
	}
	n, err := c.inflate.Read(p)
	if n > 0 {
		if err := c.inflated(p[:n]); err != nil {
			return 0, err
		}
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		if n > 0 {
			return n, nil // the end again on the next call
		}
		return 0, c.endCompressed()
	case err == deflate.ErrTooBig:
		return 0, c.fail(c.tooBig())
	case err == deflate.ErrCorrupt:
		return 0, c.fail(&ProtocolError{Code: StatusInvalidFramePayloadData, Reason: "corrupt compressed message"})
	case isTimeout(err):
		if pe, ok := c.messageTimedOut(err); ok {
			return 0, c.fail(pe)
		}
		// The inflater cannot resume after its source failed: the
		// message, and with context takeover every later one, is lost.
		c.closeNetConn(errCompressedInterrupted)
	}
	return 0, err
}

var errCompressedInterrupted = errors.New("websocket: read interrupted in the middle of a compressed message, which cannot resume")

// inflated checks inflated bytes of the current message against the read
// limit (which counts inflated bytes: decompression bombs stop there) and,
// for text, UTF-8.
func (c *Conn) inflated(b []byte) error {
	c.msgInflated += int64(len(b))
	if limit := c.readLimit.Load(); limit >= 0 && c.msgInflated > limit {
		return c.fail(c.tooBig())
	}
	if c.msgType == MessageText && !c.utf8.Write(b) {
		return c.fail(errFromFrame(frame.ErrInvalidUTF8))
	}
	return nil
}

// endCompressed ends a compressed message once the inflater is done. A
// final DEFLATE block may end the data before its last frame (RFC 7692
// section 7.2.3.3): the rest of the message is read and ignored.
func (c *Conn) endCompressed() error {
	for {
		_, err := c.readRaw(c.ctrl[:])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	c.inflate = nil
	return c.endMessage()
}

func (c *Conn) tooBig() *ProtocolError {
	return &ProtocolError{
		Code:   StatusMessageTooBig,
		Reason: "read limit of " + strconv.FormatInt(c.readLimit.Load(), 10) + " bytes exceeded",
	}
}

// readRaw reads payload bytes of the current message as they are on the
// wire, unmasked, moving on to its next frame as needed. It returns io.EOF
// after the last byte of the message's last frame.
func (c *Conn) readRaw(p []byte) (int, error) {
	for c.frameLeft == 0 {
		if c.frameFin {
			return 0, io.EOF
		}
		if err := c.nextFrame(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // not the message's end: the stream's
			}
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > c.frameLeft {
		p = p[:c.frameLeft]
	}
	n, err := c.br.Read(p)
	if n > 0 {
		return n, c.consumed(p[:n])
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return 0, err
}

// rawReader is the source the inflater reads a compressed message from.
type rawReader struct{ c *Conn }

func (r rawReader) Read(p []byte) (int, error) { return r.c.readRaw(p) }

// Ready reports whether Read returns without reading the network: bytes of
// the current frame are buffered, or the message has ended. The inflater
// hands out what it has inflated before a Read that may wait, so that text
// is checked as it arrives (deflate.ReadyReader).
func (r rawReader) Ready() bool {
	if r.c.frameLeft == 0 {
		return r.c.frameFin
	}
	return r.c.br.Buffered() > 0
}

// consumed accounts for payload bytes of the current frame that were just
// read into b: it unmasks them and checks text as it arrives, so that
// invalid UTF-8 fails the connection at once (RFC 6455 section 8.1).
func (c *Conn) consumed(b []byte) error {
	if c.frameMasked {
		c.framePos = frame.Mask(c.frameKey, c.framePos, b)
	}
	c.frameLeft -= int64(len(b))
	if c.inflate == nil && c.msgType == MessageText && !c.utf8.Write(b) {
		return c.fail(errFromFrame(frame.ErrInvalidUTF8))
	}
	return nil
}

func (c *Conn) endMessage() error {
	if c.msgType == MessageText && !c.utf8.Complete() {
		return c.fail(errFromFrame(frame.ErrInvalidUTF8))
	}
	c.msgActive = false
	if c.msgTimed {
		c.clearMessageDeadline()
	}
	return io.EOF
}

// discardMessage reads what is left of the current message and drops it,
// still checking it.
func (c *Conn) discardMessage() error {
	if c.inflate != nil {
		bp := compressBuffers.Get().(*[]byte)
		defer compressBuffers.Put(bp)
		scratch := (*bp)[:cap(*bp)]
		for {
			_, err := c.readPayload(scratch)
			if err == io.EOF {
				c.partial, c.msgByRead = nil, false
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	for {
		for c.frameLeft > 0 {
			b, err := c.br.PeekSome(int(min(c.frameLeft, int64(c.br.Size()))))
			if len(b) > 0 {
				if cerr := c.consumed(b); cerr != nil {
					return cerr
				}
				c.br.Discard(len(b))
			}
			if err != nil {
				return err
			}
		}
		if c.frameFin {
			c.partial, c.msgByRead = nil, false
			if err := c.endMessage(); err != io.EOF {
				return err
			}
			return nil
		}
		if err := c.nextFrame(); err != nil {
			return err
		}
	}
}

// nextFrame reads frames until the header of a data frame, answering the
// control frames before it, and makes it the current frame. A data frame
// that starts a message begins the message.
func (c *Conn) nextFrame() error {
	for {
		for c.skipLeft > 0 {
			n, err := c.br.Discard(int(min(c.skipLeft, 1<<30)))
			c.skipLeft -= int64(n)
			if err != nil {
				return err
			}
		}
		h, op, err := c.readFrameHeader()
		if err != nil {
			return err
		}
		if op.IsControl() {
			if err := c.handleControl(op, c.ctrl[:h.Length]); err != nil {
				return err
			}
			if c.msgTimed && !c.msgActive {
				c.clearMessageDeadline() // it had begun to arrive; now idle again
			}
			continue
		}
		if c.closeSent.Load() {
			// After sending a close frame an endpoint discards data while
			// it waits for the peer's close (section 1.4).
			c.skipLeft = h.Length
			continue
		}
		if h.Opcode != frame.OpContinuation {
			c.msgActive = true
			c.msgType = MessageType(h.Opcode)
			c.msgSize = 0
			c.msgFrames = 0
			c.utf8.Reset()
			c.inflate = nil
			if h.RSV&frame.RSV1 != 0 {
				c.msgInflated = 0
				c.inflate = c.comp.in.BeginMessage(rawReader{c}, inflateLimit(c.readLimit.Load()))
			}
		}
		if err := c.countFragment(); err != nil {
			return err
		}
		// Compared as a subtraction: a hostile 63-bit length must not wrap.
		if limit := rawLimit(c.readLimit.Load(), c.inflate != nil); limit >= 0 && h.Length > limit-c.msgSize {
			return c.fail(c.tooBig())
		}
		c.msgSize += h.Length
		c.frameLeft = h.Length
		c.frameFin = h.Fin
		c.frameMasked = h.Masked
		c.frameKey = h.MaskKey
		c.framePos = 0
		return nil
	}
}

// inflateLimit is the inflater's limit for a read limit: the inflater stops
// right after it, and counts 0 as none.
func inflateLimit(readLimit int64) int64 {
	if readLimit < 0 {
		return 0
	}
	return readLimit + 1
}

// rawLimit bounds the bytes on the wire of a message. A compressed message
// is held to its inflated size, with slack for data that compression made
// larger (fixed Huffman codes spend up to 9 bits on a byte).
func rawLimit(readLimit int64, compressed bool) int64 {
	if readLimit < 0 || !compressed {
		return readLimit
	}
	return readLimit + readLimit/4 + 1024
}

// readFrameHeader reads the next frame header and checks it against the
// stream; for a control frame it also reads the payload, unmasked, into
// c.ctrl. Nothing leaves the buffer until all of it has arrived, so a call
// interrupted by a deadline can be made again.
func (c *Conn) readFrameHeader() (frame.Header, frame.Opcode, error) {
	b, err := c.br.Peek(2)
	if err != nil {
		return frame.Header{}, 0, err
	}
	if b, err = c.br.Peek(frame.HeaderLen(b[1])); err != nil {
		return frame.Header{}, 0, err
	}
	h, n, ferr := frame.ParseHeader(b)
	if ferr != nil {
		return h, 0, c.failFrame(ferr)
	}
	wire := int64(n) + h.Length // the frame's bytes on the wire, for the read rate
	op, ferr := c.stream.Check(&h, !c.client, c.comp.allowedRSV())
	if ferr != nil {
		return h, 0, c.failFrame(ferr)
	}
	if op.IsControl() {
		total := n + int(h.Length)
		if b, err = c.br.Peek(total); err != nil {
			return h, 0, err
		}
		copy(c.ctrl[:], b[n:total])
		if h.Masked {
			frame.Mask(h.MaskKey, 0, c.ctrl[:h.Length])
		}
		n = total
	}
	if c.rate != nil && !c.rate.charge(wire, op.IsControl()) {
		return h, 0, c.fail(c.rate.exceeded())
	}
	c.br.Discard(n)
	return h, op, nil
}

func (c *Conn) failFrame(err error) error {
	var fe *frame.Error
	if errors.As(err, &fe) {
		return c.fail(errFromFrame(fe))
	}
	return c.fail(&ProtocolError{Code: StatusProtocolError, Reason: err.Error()})
}

func (c *Conn) handleControl(op frame.Opcode, payload []byte) error {
	switch op {
	case frame.OpPing:
		if c.closeSent.Load() {
			return nil
		}
		if !c.client && c.pingFollows() {
			return c.answerPings(payload)
		}
		return c.writeControlFromReader(frame.OpPong, payload)
	case frame.OpPong:
		c.gotPong(payload)
		return nil
	}
	return c.handleClose(payload)
}

// pingFollows reports whether the next frame, whole in the buffer, is a
// well-formed ping from a client: final, no reserved bits, masked, at most
// MaxControlPayload bytes. It reads nothing from the network.
func (c *Conn) pingFollows() bool {
	n := c.br.Buffered()
	if n < 2 {
		return false
	}
	b, _ := c.br.Peek(2) // buffered: no read
	if b[0] != 0x80|byte(frame.OpPing) || b[1]&0x80 == 0 || int(b[1]&0x7f) > frame.MaxControlPayload {
		return false
	}
	return n >= frame.HeaderLen(b[1])+int(b[1]&0x7f)
}

// answerPings answers the ping whose payload is p, and the whole pings
// buffered right behind it, with their pongs in order in one write: a
// peer that sends pings back to back (a flood, which the frame rate
// limits, or a client that pings in bursts) costs a system call per
// buffer of pongs, not one per ping. Every ping still gets its pong
// (section 5.5.3 would allow answering only the last). When the frame
// rate fails the connection at one of the pings that follow, the pongs
// gathered are not sent: the connection ends with 1008 instead. Server
// side only: a client's pongs are masked, with a key drawn under frameMu.
func (c *Conn) answerPings(p []byte) error {
	buf := c.cfg.writePool.get()
	defer c.cfg.writePool.put(buf)
	pong := frame.Header{Fin: true, Opcode: frame.OpPong}
	pong.Length = int64(len(p))
	b := append(frame.AppendHeader((*buf)[:0], pong), p...)
	for cap(b)-len(b) >= 2+frame.MaxControlPayload && c.pingFollows() {
		h, _, err := c.readFrameHeader()
		if err != nil {
			return err
		}
		pong.Length = h.Length
		b = append(frame.AppendHeader(b, pong), c.ctrl[:h.Length]...)
	}
	return c.writeFromReader(false, func() error {
		_, err := c.netConn.Write(b)
		return err
	})
}

// readError turns an error met while reading into what the caller sees. A
// deadline set because ctx ended becomes ctx's error and leaves the
// connection usable. Anything else ends reading for good: the peer's close,
// a failure of this side, or the network's error, reported once as the
// reason the connection ended.
func (c *Conn) readError(ctx context.Context, err error) error {
	if c.readErr != nil {
		return c.readErr
	}
	c.takeReadState() // a loop of Serve may have dropped it
	if ctx.Err() != nil && isTimeout(err) {
		return ctx.Err()
	}
	if pe, ok := c.messageTimedOut(err); ok {
		err = c.fail(pe)
	}
	var pe *ProtocolError
	var ce *CloseError
	if !errors.As(err, &pe) && !errors.As(err, &ce) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		c.closeNetConn(&netError{err})
		err = c.endErr(err)
	}
	c.readErr = err
	return err
}

// netError reports that the network connection failed or ended without a
// close frame.
type netError struct{ err error }

func (e *netError) Error() string {
	return "websocket: connection lost without a close frame: " + e.err.Error()
}
func (e *netError) Unwrap() error { return e.err }
