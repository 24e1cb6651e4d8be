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
// connection holds no goroutine, no read buffer and, between messages,
// nothing of the reading of one: on Linux a TCP or Unix connection waits
// in an epoll set the process shares, so a server's idle connections cost
// only their Conns (under 1 KiB of heap each, net's part included).
// Elsewhere, and for TLS and wrapped connections, a goroutine waits as
// Read would.
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
	a := c.awaitStateOf()
	a.fn = f
	if c.raw == nil && c.readErr == nil && c.br.Buffered() == 0 {
		go c.awaitBlocking() // it cannot look without waiting
		return false, nil
	}
	if c.awaitStep() {
		a.fn = nil
		c.readMu.unlock()
		return true, nil
	}
	if !c.awaitPark() {
		// No poller for this connection: a goroutine waits.
		go c.awaitBlocking()
	}
	return false, nil
}

// awaitState is what a Conn keeps for Await, made at its first Await and
// kept, so that later ones allocate nothing. The rest of what reading
// takes, its read state and its read buffer's bookkeeping, goes to a pool
// while the Conn waits in the poller (awaitPark): a connection that spends
// its life there, as a gateway's idle one does, holds these 32 bytes and
// wake's 16 instead of those 480.
type awaitState struct {
	fn     func() // what to call when the wait ends; under readMu
	wake   func() // c.awaitWake, bound once: the poller starts it
	onWait func() // the dropped read buffer's, bound to c (beginMessageWatch)
	token  uint64 // of the poller's wait in progress; 0 when none (under poller.mu)
}

// awaitStateOf returns c's await state, made at the first call. The caller
// holds readMu.
func (c *Conn) awaitStateOf() *awaitState {
	a := c.await.Load()
	if a == nil {
		a = &awaitState{}
		a.wake = c.awaitWake
		c.await.Store(a) // unpark loads it
	}
	return a
}

// awaitPark puts c, which holds readMu for an Await and has nothing to
// read, in the poller, having put its read state and its read buffer's
// bookkeeping back in their pools if it is between messages: awaitWake
// takes them again. It returns false when c cannot wait there; then c is
// still the caller's, and has both.
func (c *Conn) awaitPark() bool {
	if !havePoller || c.raw == nil {
		return false
	}
	a := c.await.Load()
	c.dropReadState()
	onWait := c.br.onWait
	if c.dropReadBuffer(); c.br == nil {
		a.onWait = onWait
	}
	if c.park(a) {
		return true
	}
	c.awaitTake()
	return false
}

// awaitTake gives c back what awaitPark dropped. The caller holds readMu.
func (c *Conn) awaitTake() {
	c.takeReadState()
	if c.br == nil {
		a := c.await.Load()
		c.reuseReadBuffer()
		c.br.onWait, a.onWait = a.onWait, nil
	}
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
	c.awaitTake()
	if !c.awaitStep() && c.awaitPark() {
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
	a := c.await.Load()
	f := a.fn
	a.fn = nil
	c.readMu.unlock()
	f()
}
