package websocket

import (
	"context"
	"sync"
)

// TryWritePrepared writes pm as one message if it can go out now without
// waiting, and reports whether it did. It is for broadcasting from one
// goroutine to many connections without a goroutine per connection: the
// caller writes inline to every connection that can take the message and
// queues it, for a goroutine of its own that calls WritePrepared, only for
// those that cannot.
//
// It never waits. It reports false, with a nil error, and writes nothing
// when another write is under way (it does not wait for the write locks),
// when the socket has no room for any of the frame, and whenever the
// message would not be the frame pm encoded once for all connections: on a
// client (which masks every frame), with compression under context
// takeover, and on a connection that is not a TCP or Unix socket read
// raw (TLS, HTTP/2, wrapped connections). The caller then writes it with
// WritePrepared, which waits.
//
// When the socket takes only part of the frame, the frame is still sent
// whole: the Conn writes the rest itself, in a goroutine it owns, and other
// writes wait for it as for any write under way. TryWritePrepared then
// reports true. That goroutine ends when the rest is written or the
// connection closes; Close and CloseNow wait for it. A write that fails
// closes the connection, as with Write, and its error is returned.
//
// Once pm is encoded, a write that goes out at once allocates nothing.
func (c *Conn) TryWritePrepared(pm *PreparedMessage) (sent bool, err error) {
	raw := c.raw // set once, by newConn; c.br is dropped while the Conn waits in Serve or Await
	if c.client || raw == nil {
		return false, nil
	}
	compress := c.comp != nil && !pm.plain && len(pm.data) >= c.comp.threshold
	if compress && !c.comp.shared {
		return false, nil
	}
	if !c.msgMu.tryLock() {
		return false, nil
	}
	if !c.frameMu.tryLock() {
		c.msgMu.unlock()
		return false, nil
	}
	unlock := func() { c.frameMu.unlock(); c.msgMu.unlock() }
	if c.isClosed() {
		unlock()
		return false, c.endErr(errConnClosed)
	}
	if c.closeSent.Load() {
		unlock()
		return false, c.endErr(errCloseSent)
	}
	// A context that ended in an earlier write may have left a deadline
	// in the past; Background clears it (free when nothing was watched).
	c.watch(context.Background(), writing)
	encoded := pm.serverFrame()
	if compress {
		encoded = pm.compressedServerFrame(c.comp)
	}

	tw := tryWriters.Get().(*tryWriter)
	tw.p, tw.n, tw.err = encoded, 0, nil
	rawErr := raw.Write(tw.write)
	n, werr := tw.n, tw.err
	tw.p, tw.err = nil, nil
	tryWriters.Put(tw)
	if werr == nil {
		werr = rawErr // the descriptor is closed, or a deadline passed
	}

	switch {
	case werr == errWouldBlock:
		unlock()
		return false, nil
	case werr != nil:
		unlock()
		c.closeNetConn(&netError{werr})
		return false, c.endErr(werr)
	case n == len(encoded):
		unlock()
		return true, nil
	}
	// Part of the frame is out: nothing else may go out before its rest.
	rest := encoded[n:]
	if !c.goBackground(func() { c.finishFrame(rest) }) {
		unlock() // closed meanwhile: the stream ended with it
		return false, c.endErr(errConnClosed)
	}
	return true, nil
}

// finishFrame writes the rest of a frame TryWritePrepared began, holding
// the write locks it took, and releases them.
func (c *Conn) finishFrame(rest []byte) {
	defer c.msgMu.unlock()
	defer c.frameMu.unlock()
	if _, err := c.netConn.Write(rest); err != nil {
		c.closeNetConn(&netError{err})
	}
}

// tryWriter is one non-blocking write's state; write is bound once, so that
// passing it to syscall.RawConn.Write allocates nothing.
type tryWriter struct {
	p     []byte
	n     int
	err   error
	write func(fd uintptr) bool
}

var tryWriters = sync.Pool{New: func() any {
	tw := new(tryWriter)
	tw.write = tw.writeOnce
	return tw
}}

// writeOnce writes once, never asking the runtime to wait for the socket
// to become writable.
func (tw *tryWriter) writeOnce(fd uintptr) bool {
	tw.n, tw.err = writeFD(fd, tw.p)
	return true
}
