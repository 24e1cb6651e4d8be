package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

var (
	errCloseSent      = errors.New("websocket: close frame already sent")
	errBadMessageType = errors.New("websocket: message type must be MessageText or MessageBinary")
	errWriterClosed   = errors.New("websocket: write to a closed Writer")
)

// Write writes p as one message of type typ, in a single frame. When ctx
// ends before the frame has started, Write returns ctx's error and the
// connection is unharmed; when it ends in the middle of the frame, the
// stream cannot be resumed and the connection is closed.
func (c *Conn) Write(ctx context.Context, typ MessageType, p []byte) error {
	if typ != MessageText && typ != MessageBinary {
		return errBadMessageType
	}
	if err := c.lock(ctx, &c.msgMu); err != nil {
		return err
	}
	defer c.msgMu.unlock()
	return c.writeFrame(ctx, frame.Opcode(typ), true, p)
}

// Writer returns a writer for one message of type typ, held until its Close,
// which sends the final frame. Data is sent in frames of up to the write
// buffer size as it is written, so a message of any size can be streamed.
// Other writes wait until Close; control frames do not. The writer is for
// one goroutine and is reused for the next message, so it must not be used
// after Close. ctx governs every write through it, as in Write.
func (c *Conn) Writer(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
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
	w.buf = c.writePool.get()
	w.open = true
	return w, nil
}

// messageWriter is the writer Writer returns; there is one per Conn. It holds
// msgMu while open.
type messageWriter struct {
	c    *Conn
	ctx  context.Context
	op   frame.Opcode // the opcode of the next frame: the type, then continuation
	buf  *[]byte      // payload waiting for the next frame
	open bool
}

// Write buffers p and sends every full buffer as a frame.
func (w *messageWriter) Write(p []byte) (int, error) {
	if !w.open {
		return 0, errWriterClosed
	}
	written := 0
	for len(p) > 0 {
		b := *w.buf
		if len(b) == cap(b)-frame.MaxHeaderSize {
			if err := w.flush(false); err != nil {
				return written, err
			}
			b = *w.buf
		}
		n := copy(b[len(b):cap(b)-frame.MaxHeaderSize], p)
		*w.buf = b[:len(b)+n]
		p = p[n:]
		written += n
	}
	return written, nil
}

func (w *messageWriter) flush(fin bool) error {
	err := w.c.writeFrame(w.ctx, w.op, fin, *w.buf)
	if err == nil {
		w.op = frame.OpContinuation // the message has begun
	}
	*w.buf = (*w.buf)[:0]
	return err
}

// Close sends what is buffered as the final frame and releases the message.
func (w *messageWriter) Close() error {
	if !w.open {
		return errWriterClosed
	}
	err := w.flush(true)
	w.open = false
	w.c.writePool.put(w.buf)
	w.buf, w.ctx = nil, nil
	w.c.msgMu.unlock()
	return err
}

// writeFrame writes one frame carrying p, taking frameMu for its duration.
// A frame that fails part way leaves the stream unusable, so the connection
// is closed.
func (c *Conn) writeFrame(ctx context.Context, op frame.Opcode, fin bool, p []byte) error {
	if err := c.lock(ctx, &c.frameMu); err != nil {
		return err
	}
	defer c.frameMu.unlock()
	if c.closeSent.Load() {
		return c.endErr(errCloseSent)
	}
	if err := c.watch(ctx, writing); err != nil {
		if op == frame.OpContinuation {
			// The message has begun and cannot be finished: the stream
			// is unusable.
			c.closeNetConn(&netError{err})
			return c.endErr(err)
		}
		return err // nothing of the message has gone out
	}
	if err := c.writeFrameLocked(op, fin, p); err != nil {
		if ctx.Err() != nil && isTimeout(err) {
			err = ctx.Err()
		}
		c.closeNetConn(&netError{err})
		return c.endErr(err)
	}
	return nil
}

// writeFrameLocked encodes and sends one frame. The caller holds frameMu.
// A server frame that fits the buffer goes out in one write, a larger one
// in one writev; a client frame is masked as it is copied into the buffer,
// never in the caller's slice.
func (c *Conn) writeFrameLocked(op frame.Opcode, fin bool, p []byte) error {
	h := frame.Header{Fin: fin, Opcode: op, Length: int64(len(p))}
	if c.client {
		h.Masked = true
		binary.LittleEndian.PutUint32(h.MaskKey[:], uint32(c.maskRand.Uint64()))
	}
	buf := c.writePool.get()
	defer c.writePool.put(buf)
	b := frame.AppendHeader(*buf, h)
	if !c.client {
		if len(p) <= cap(b)-len(b) {
			_, err := c.netConn.Write(append(b, p...))
			return err
		}
		c.iov = [2][]byte{b, p}
		c.bufs = c.iov[:]
		_, err := c.bufs.WriteTo(c.netConn)
		c.iov, c.bufs = [2][]byte{}, nil
		return err
	}
	pos := 0
	for {
		start := len(b)
		n := min(len(p), cap(b)-start)
		b = append(b, p[:n]...)
		pos = frame.Mask(h.MaskKey, pos, b[start:])
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

// writeControl sends a control frame, waiting for frameMu as long as ctx
// allows.
func (c *Conn) writeControl(ctx context.Context, op frame.Opcode, payload []byte) error {
	return c.writeFrame(ctx, op, true, payload)
}

// writeControlFromReader sends a pong or a close answer on behalf of the
// reader, bounded by the close timeout so that a peer that does not read
// cannot hold the reader forever.
func (c *Conn) writeControlFromReader(op frame.Opcode, payload []byte) error {
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
	if op == frame.OpClose {
		c.closeSent.Store(true)
	}
	c.unwatch(writing)
	c.netConn.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
	defer c.netConn.SetWriteDeadline(time.Time{})
	if err := c.writeFrameLocked(op, true, payload); err != nil {
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
	if err := c.writeFrameLocked(frame.OpClose, true, payload); err != nil {
		c.closeNetConn(&netError{err})
		return err
	}
	return nil
}
