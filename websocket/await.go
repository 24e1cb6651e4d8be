package websocket

import (
	"context"
	"errors"
)

var errAwaitBusy = errors.New("websocket: Await while reading or awaiting")

// Await waits for the next data message without a goroutine. When a
// message has begun to arrive, or reading has ended, it returns true and
// the caller reads with Read or Reader at once. Otherwise it returns false
// and calls f, once, in a new goroutine, when that happens; f then reads.
// Meanwhile pings and pongs are handled as Read handles them, and the
// connection holds no goroutine and no read buffer: on Linux a TCP or Unix
// connection waits in an epoll set the process shares, so a server's idle
// connections cost only their Conns. Elsewhere, and for TLS and wrapped
// connections, a goroutine waits as Read would.
//
// Await counts as a read: Read and Reader wait for it to end, and Await
// returns an error when a read or another Await is in progress. f is
// called even if the connection closes first (Close, CloseNow, a failed
// keepalive), so that it learns why from Read. No context or deadline
// bounds the wait; the goroutine that runs f belongs to the caller.
func (c *Conn) Await(f func()) (ready bool, err error) {
	if c.readClosed.Load() {
		return false, errReadClosed
	}
	if !c.readMu.tryLock() {
		return false, errAwaitBusy
	}
	c.awaitFn = f
	if c.br.raw == nil && c.readErr == nil && c.br.Buffered() == 0 {
		go c.awaitBlocking() // it cannot look without waiting
		return false, nil
	}
	if c.awaitStep() {
		c.awaitFn = nil
		c.readMu.unlock()
		return true, nil
	}
	if !c.park() {
		// No poller for this connection: a goroutine waits.
		go c.awaitBlocking()
	}
	return false, nil
}

// awaitStep reads what has arrived, without waiting, and handles control
// frames until a data frame begins or reading ends, which it reports. It
// reads raw, so it waits only for connections that cannot (then Await's
// goroutine is the one waiting). The caller holds readMu.
func (c *Conn) awaitStep() bool {
	c.br.noWait = true
	defer func() { c.br.noWait = false }()
	for {
		if c.readErr != nil || c.msgActive || c.skipLeft > 0 {
			return true // Read takes it from here
		}
		b, err := c.br.PeekSome(1)
		if err == errWouldBlock {
			return false
		}
		if err != nil {
			c.readError(context.Background(), err)
			return true
		}
		if b[0]&0x08 == 0 {
			return true // a data frame, or a bad opcode Read reports
		}
		h, op, err := c.readFrameHeader()
		if err == errWouldBlock {
			return false // the rest of the control frame is on its way
		}
		if err == nil {
			err = c.handleControl(op, c.ctrl[:h.Length])
		}
		if err != nil {
			c.readError(context.Background(), err)
			return true
		}
	}
}

// awaitWake continues an Await whose connection became readable or closed.
// readMu is still held for the Await.
func (c *Conn) awaitWake() {
	if !c.awaitStep() && c.park() {
		return
	}
	c.awaitDone()
}

// awaitBlocking waits for a connection that cannot wait in the poller:
// one that reads through net.Conn, whose awaitStep waits, or one on a
// system without one, whose awaitStep does not.
func (c *Conn) awaitBlocking() {
	for !c.awaitStep() {
		if _, err := c.br.Peek(1); err != nil && c.readErr == nil {
			c.readError(context.Background(), err)
		}
	}
	c.awaitDone()
}

// awaitDone ends an Await: it releases readMu and calls f.
func (c *Conn) awaitDone() {
	f := c.awaitFn
	c.awaitFn = nil
	c.readMu.unlock()
	f()
}
