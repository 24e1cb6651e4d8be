package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// NetConn returns c as a net.Conn, for code that speaks a byte stream:
// every Write sends one message of type typ, and Read reads the payloads of
// the messages that arrive, one after another, as one stream. A message of
// the other type fails the connection with StatusUnsupportedData. Read
// returns io.EOF once the peer has closed normally (StatusNormalClosure or
// StatusGoingAway). Deadlines work as net.Conn's: an expired deadline fails
// the call with an error for which os.IsTimeout is true and leaves the
// connection usable. Close performs the closing handshake with
// StatusNormalClosure. ctx governs the connection for as long as it is used
// through the net.Conn: when it ends, Read and Write fail.
func NetConn(ctx context.Context, c *Conn, typ MessageType) net.Conn {
	nc := &netConn{c: c, typ: typ}
	nc.read.init(ctx)
	nc.write.init(ctx)
	return nc
}

type netConn struct {
	c   *Conn
	typ MessageType

	read  deadlineCtx
	write deadlineCtx

	readMu  sync.Mutex // one Read at a time; guards r and eof
	r       io.Reader
	eof     bool
	writeMu sync.Mutex // serialises Write against its own deadline
}

var errUnexpectedType = errors.New("websocket: NetConn received a message of the wrong type")

func (nc *netConn) Read(p []byte) (int, error) {
	nc.readMu.Lock()
	defer nc.readMu.Unlock()
	if nc.eof {
		return 0, io.EOF
	}
	ctx := nc.read.get()
	for {
		if nc.r == nil {
			typ, r, err := nc.c.Reader(ctx)
			if err != nil {
				return 0, nc.mapErr(ctx, err)
			}
			if typ != nc.typ {
				nc.c.Close(StatusUnsupportedData, "unexpected "+typ.String()+" message")
				return 0, errUnexpectedType
			}
			nc.r = r
		}
		// The message may have begun under a context that a deadline has
		// since ended: read on under the current one.
		nc.c.reader.ctx = ctx
		n, err := nc.r.Read(p)
		if err == io.EOF {
			nc.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, nc.mapErr(ctx, err)
		}
		return n, nil
	}
}

// mapErr turns a normal close into io.EOF and an expired deadline into a
// timeout.
func (nc *netConn) mapErr(ctx context.Context, err error) error {
	switch CloseStatus(err) {
	case StatusNormalClosure, StatusGoingAway:
		nc.eof = true
		return io.EOF
	}
	if errors.Is(err, context.Canceled) {
		switch context.Cause(ctx) {
		case os.ErrDeadlineExceeded:
			return os.ErrDeadlineExceeded
		case net.ErrClosed:
			return errConnClosed // Close was called during the call
		}
	}
	return err
}

func (nc *netConn) Write(p []byte) (int, error) {
	nc.writeMu.Lock()
	defer nc.writeMu.Unlock()
	ctx := nc.write.get()
	if err := nc.c.Write(ctx, nc.typ, p); err != nil {
		return 0, nc.mapErr(ctx, err)
	}
	return len(p), nil
}

func (nc *netConn) Close() error {
	nc.read.stop()
	nc.write.stop()
	return nc.c.Close(StatusNormalClosure, "")
}

func (nc *netConn) LocalAddr() net.Addr  { return nc.c.netConn.LocalAddr() }
func (nc *netConn) RemoteAddr() net.Addr { return nc.c.netConn.RemoteAddr() }

func (nc *netConn) SetDeadline(t time.Time) error {
	nc.read.set(t)
	nc.write.set(t)
	return nil
}
func (nc *netConn) SetReadDeadline(t time.Time) error  { nc.read.set(t); return nil }
func (nc *netConn) SetWriteDeadline(t time.Time) error { nc.write.set(t); return nil }

// deadlineCtx turns a net.Conn deadline into a context that ends at it, so
// that a deadline set or changed while a call is blocked still applies.
type deadlineCtx struct {
	mu       sync.Mutex
	parent   context.Context
	ctx      context.Context
	cancel   context.CancelCauseFunc
	timer    *time.Timer
	deadline time.Time
}

func (d *deadlineCtx) init(parent context.Context) {
	d.parent = parent
	d.ctx, d.cancel = context.WithCancelCause(parent)
}

// get returns the context for a call.
func (d *deadlineCtx) get() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// set moves the deadline. A deadline that has passed ends the current
// context; a new one in the future starts a fresh context if the old one
// had ended.
func (d *deadlineCtx) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadline = t
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.ctx.Err() != nil && context.Cause(d.ctx) == os.ErrDeadlineExceeded && d.parent.Err() == nil {
		d.ctx, d.cancel = context.WithCancelCause(d.parent)
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		d.cancel(os.ErrDeadlineExceeded)
		return
	}
	cancel := d.cancel
	d.timer = time.AfterFunc(wait, func() { cancel(os.ErrDeadlineExceeded) })
}

func (d *deadlineCtx) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.cancel(net.ErrClosed)
}
