package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"net"
	"sync"
	"time"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

var (
	errCloseSent      = errors.New("websocket: close frame already sent")
	errBadMessageType = errors.New("websocket: message type must be MessageText or MessageBinary")
	errWriterClosed   = errors.New("websocket: write to a closed Writer")
)

// Write writes p as one message of type typ, in a single frame, compressed
// when permessage-deflate was agreed, p is at least the compression
// threshold and typ is not marked Uncompressed. When ctx ends before the
// frame has started, Write returns ctx's error and the connection is
// unharmed; when it ends in the middle of the frame, the stream cannot be
// resumed and the connection is closed.
func (c *Conn) Write(ctx context.Context, typ MessageType, p []byte) error {
	typ, plain := splitType(typ)
	if typ != MessageText && typ != MessageBinary {
		return errBadMessageType
	}
	if err := c.lock(ctx, &c.msgMu); err != nil {
		return err
	}
	defer c.msgMu.unlock()
	if c.comp == nil || plain || len(p) < c.comp.threshold {
		return c.writeFrame(ctx, frame.Opcode(typ), true, 0, p)
	}
	return c.writeCompressed(ctx, frame.Opcode(typ), p)
}

// writeCompressed compresses p and writes it as one frame. It compresses
// once the frame is sure to start, so that a context that ends first leaves
// the compressor's history as the peer knows it.
func (c *Conn) writeCompressed(ctx context.Context, op frame.Opcode, p []byte) error {
	if err := c.beginFrame(ctx, op); err != nil {
		return err
	}
	bp := compressBuffers.Get().(*[]byte)
	out := c.comp.out.Compress((*bp)[:0], p)
	err := c.writeFrameLocked(op, true, frame.RSV1, out)
	*bp = out[:0]
	compressBuffers.Put(bp)
	return c.endFrame(ctx, err)
}

// Writer returns a writer for one message of type typ, held until its Close,
// which sends the final frame. Data is sent in frames of up to the write
// buffer size as it is written, so a message of any size can be streamed;
// when permessage-deflate was agreed and typ is not marked Uncompressed, it
// is compressed as it streams. Other writes wait until Close; control frames
// do not. The writer is for one goroutine and is reused for the next
// message, so it must not be used after Close. ctx governs every write
// through it, as in Write.
func (c *Conn) Writer(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
	typ, plain := splitType(typ)
	if typ != MessageText && typ != MessageBinary {
		return nil, errBadMessageType
	}
	if err := c.lock(ctx, &c.msgMu); err != nil {
		return nil, err
	}
	if c.closeSent.Load() {
		c.msgMu.unlock()
		return nil, c.endErr(errCloseSent)
	}
	w := &c.writer
	w.ctx = ctx
	w.op = frame.Opcode(typ)
	w.rsv = 0
	w.open = true
	w.held = false
	switch {
	case c.comp == nil || plain:
		w.buf = c.cfg.writePool.get()
	case c.comp.threshold > 0:
		// Held plain until it reaches the threshold, so that a short
		// message goes out uncompressed, as with Write.
		w.held = true
		w.buf = c.cfg.writePool.get()
	default:
		w.beginCompression()
	}
	return w, nil
}

// messageWriter is the writer Writer returns; there is one per Conn. It holds
// msgMu while open.
type messageWriter struct {
	c    *Conn
	ctx  context.Context
	op   frame.Opcode               // the opcode of the next frame: the type, then continuation
	rsv  byte                       // the reserved bits of the next frame: RSV1 on a compressed message's first
	buf  *[]byte                    // payload waiting for the next frame
	mc   *deflate.MessageCompressor // nil unless the message is compressed
	open bool
	held bool // compression agreed, but the message is still under the threshold and held in buf, plain
}

// beginCompression makes the message a compressed one, from its first frame.
func (w *messageWriter) beginCompression() {
	w.mc = w.c.comp.out.BeginMessage()
	w.rsv = frame.RSV1
	w.buf = compressBuffers.Get().(*[]byte)
}

// Write buffers p and sends every full buffer as a frame.
func (w *messageWriter) Write(p []byte) (int, error) {
	if !w.open {
		return 0, errWriterClosed
	}
	if w.held {
		b := *w.buf
		if len(b)+len(p) < w.c.comp.threshold && len(b)+len(p) <= cap(b)-frame.MaxHeaderSize {
			*w.buf = append(b, p...)
			return len(p), nil
		}
		w.held = false
		plainBuf := w.buf
		w.beginCompression()
		*w.buf = w.mc.Write(*w.buf, b)
		*plainBuf = b[:0]
		w.c.cfg.writePool.put(plainBuf)
	}
	if w.mc != nil {
		*w.buf = w.mc.Write(*w.buf, p)
		if err := w.sendCompressed(false); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		b := *w.buf
		if len(b) == cap(b)-frame.MaxHeaderSize {
			if err := w.send(false, b); err != nil {
				return written, err
			}
			*w.buf = b[:0]
			b = b[:0]
		}
		n := copy(b[len(b):cap(b)-frame.MaxHeaderSize], p)
		*w.buf = b[:len(b)+n]
		p = p[n:]
		written += n
	}
	return written, nil
}

// sendCompressed sends the compressed output in frames of the write buffer
// size, keeping back the last, partial, frame unless final.
func (w *messageWriter) sendCompressed(final bool) error {
	size := w.c.cfg.writeBufferSize
	out := *w.buf
	sent := 0
	for len(out)-sent > size {
		if err := w.send(false, out[sent:sent+size]); err != nil {
			return err
		}
		sent += size
	}
	if final {
		if err := w.send(true, out[sent:]); err != nil {
			return err
		}
		sent = len(out)
	}
	*w.buf = append(out[:0], out[sent:]...)
	return nil
}

// send writes one frame of the message.
func (w *messageWriter) send(fin bool, p []byte) error {
	c := w.c
	err := c.writeFrame(w.ctx, w.op, fin, w.rsv, p)
	if err == nil {
		w.op = frame.OpContinuation // the message has begun
		w.rsv = 0
	} else if w.mc != nil && !c.comp.shared {
		// The compressor's history may now hold what the peer never got:
		// every later message would inflate wrong.
		c.closeNetConn(&netError{err})
	}
	return err
}

// Close sends what is buffered as the final frame and releases the message.
func (w *messageWriter) Close() error {
	if !w.open {
		return errWriterClosed
	}
	var err error
	if w.mc != nil {
		*w.buf = w.mc.Finish(*w.buf)
		err = w.sendCompressed(true)
		*w.buf = (*w.buf)[:0]
		compressBuffers.Put(w.buf)
		w.mc = nil
	} else {
		// Also a message held under the compression threshold: it goes
		// out whole, uncompressed.
		err = w.send(true, *w.buf)
		w.c.cfg.writePool.put(w.buf)
	}
	w.held = false
	w.open = false
	w.buf, w.ctx = nil, nil
	w.c.msgMu.unlock()
	return err
}

// writeFrame writes one frame carrying p, taking frameMu for its duration.
// A frame that fails part way leaves the stream unusable, so the connection
// is closed.
func (c *Conn) writeFrame(ctx context.Context, op frame.Opcode, fin bool, rsv byte, p []byte) error {
	if err := c.beginFrame(ctx, op); err != nil {
		return err
	}
	return c.endFrame(ctx, c.writeFrameLocked(op, fin, rsv, p))
}

// beginFrame takes frameMu for a frame of opcode op and arms ctx; when it
// succeeds the caller writes the frame and passes the result to endFrame.
func (c *Conn) beginFrame(ctx context.Context, op frame.Opcode) error {
	if err := c.lock(ctx, &c.frameMu); err != nil {
		return err
	}
	if c.closeSent.Load() {
		c.frameMu.unlock()
		return c.endErr(errCloseSent)
	}
	if err := c.watch(ctx, writing); err != nil {
		c.frameMu.unlock()
		if op == frame.OpContinuation {
			// The message has begun and cannot be finished: the stream
			// is unusable.
			c.closeNetConn(&netError{err})
			return c.endErr(err)
		}
		return err // nothing of the message has gone out
	}
	return nil
}

// endFrame releases frameMu after a frame was written with result err.
func (c *Conn) endFrame(ctx context.Context, err error) error {
	c.frameMu.unlock()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && isTimeout(err) {
		err = ctx.Err()
	}
	c.closeNetConn(&netError{err})
	return c.endErr(err)
}

// frameVec is the header and payload of a frame written with writev, as
// net.Buffers, which WriteTo consumes: a frame larger than the write
// buffer takes one from frameVecs for the write, as a Conn would hold its
// 72 bytes for nothing between such frames.
type frameVec struct {
	iov  [2][]byte
	bufs net.Buffers
}

var frameVecs = sync.Pool{New: func() any { return new(frameVec) }}

// maxMaskChunk is the most payload a client masks into one buffer before
// writing it: a frame larger than the write buffer is masked in a pooled
// buffer of up to this size, so that a 64 KiB message costs one write
// instead of sixteen, each of which would wake the peer.
const maxMaskChunk = 64 << 10

// maskPool returns the pool of buffers a client frame of n payload bytes,
// more than the write buffer holds, is masked in: the next power of two
// up to maxMaskChunk, with room for the header.
func maskPool(n int) *bufferPool {
	return poolFor(min(1<<bits.Len(uint(n-1)), maxMaskChunk) + frame.MaxHeaderSize)
}

// writeFrameLocked encodes and sends one frame. The caller holds frameMu.
// A server frame that fits the buffer goes out in one write, a larger one
// in one writev; a client frame is masked as it is copied into the buffer
// (one of up to maxMaskChunk for a frame larger than the write buffer),
// never in the caller's slice.
func (c *Conn) writeFrameLocked(op frame.Opcode, fin bool, rsv byte, p []byte) error {
	h := frame.Header{Fin: fin, RSV: rsv, Opcode: op, Length: int64(len(p))}
	pool := c.cfg.writePool
	if c.client {
		h.Masked = true
		binary.LittleEndian.PutUint32(h.MaskKey[:], uint32(c.maskRand.Uint64()))
		if len(p) > c.cfg.writeBufferSize {
			pool = maskPool(len(p))
		}
	}
	buf := pool.get()
	defer pool.put(buf)
	b := frame.AppendHeader(*buf, h)
	if !c.client {
		if len(p) <= cap(b)-len(b) {
			_, err := c.netConn.Write(append(b, p...))
			return err
		}
		v := frameVecs.Get().(*frameVec)
		v.iov = [2][]byte{b, p}
		v.bufs = v.iov[:]
		_, err := v.bufs.WriteTo(c.netConn)
		v.iov, v.bufs = [2][]byte{}, nil
		frameVecs.Put(v)
		return err
	}
	pos := 0
	for {
		start := len(b)
		n := min(len(p), cap(b)-start)
		b = b[:start+n]
		pos = frame.MaskCopy(h.MaskKey, pos, b[start:], p[:n])
		if _, err := c.netConn.Write(b); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
		b = b[:0]
	}
}

// writeControlFromReader sends a pong or a close answer on behalf of the
// reader, bounded by the close timeout so that a peer that does not read
// cannot hold the reader forever.
func (c *Conn) writeControlFromReader(op frame.Opcode, payload []byte) error {
	return c.writeFromReader(op == frame.OpClose, func() error {
		return c.writeFrameLocked(op, true, 0, payload)
	})
}

// writeFromReader makes write, which writes control frames, on behalf of
// the reader as writeControlFromReader says; closing marks the close frame
// sent.
func (c *Conn) writeFromReader(closing bool, write func() error) error {
	if !c.frameMu.tryLock() {
		// A frame is being written: wait for it, but not forever. The
		// timer is only paid for under contention.
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
		err := c.lock(ctx, &c.frameMu)
		cancel()
		if err != nil {
			c.closeNetConn(&netError{err})
			return c.endErr(err)
		}
	}
	defer c.frameMu.unlock()
	if c.closeSent.Load() {
		return nil
	}
	if closing {
		c.closeSent.Store(true)
	}
	// Hold off the AfterFunc of the watched write context, which would cut
	// this frame short, without retiring the watch: the application's next
	// Write under the same context then costs nothing again. The watch's
	// lock is released before closeNetConn, which takes it. Without
	// watches no write context is watched, and none can be while frameMu
	// is held.
	var watchMu *sync.Mutex
	if ws := c.watches.Load(); ws != nil {
		watchMu = &ws.write.mu
		watchMu.Lock()
	}
	c.netConn.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
	err := write()
	c.netConn.SetWriteDeadline(time.Time{})
	if watchMu != nil {
		watchMu.Unlock()
	}
	if err != nil {
		c.closeNetConn(&netError{err})
		return c.endErr(err)
	}
	return nil
}

// writeClose sends a close frame once. Waiting for frameMu and the write
// itself are bounded by the close timeout.
func (c *Conn) writeClose(code StatusCode, reason string) error {
	var p [frame.MaxControlPayload]byte
	payload := frame.AppendClosePayload(p[:0], uint16(code), reason)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
	defer cancel()
	if err := c.lock(ctx, &c.frameMu); err != nil {
		return err
	}
	defer c.frameMu.unlock()
	if c.closeSent.Load() {
		return errCloseSent
	}
	c.closeSent.Store(true)
	c.unwatch(writing)
	c.netConn.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
	defer c.netConn.SetWriteDeadline(time.Time{})
	if err := c.writeFrameLocked(frame.OpClose, true, 0, payload); err != nil {
		c.closeNetConn(&netError{err})
		return err
	}
	return nil
}
