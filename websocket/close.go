package websocket

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"strconv"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/internal/frame"
)

// Close performs the closing handshake (RFC 6455 section 7): it sends a
// close frame with code and reason, waits for the peer's close frame, and
// closes the network connection, on a server at once and on a client once
// the server has closed its side. The handshake is bounded by the close
// timeout of the options (5 s by default); when it runs out the connection
// is closed anyway. Close waits for the goroutines of the Conn to end.
//
// code must be one that may be sent (1000–1003, 1007–1011 or 3000–4999) and
// reason valid UTF-8 of at most 123 bytes; otherwise Close returns an error
// and does nothing. Close returns nil when the peer answered.
func (c *Conn) Close(code StatusCode, reason string) error {
	if err := checkClose(code, reason); err != nil {
		return err
	}
	err := c.closeHandshake(code, reason)
	c.wg.Wait()
	return err
}

// CloseNow closes the network connection without a closing handshake and
// waits for the goroutines of the Conn to end. Calls blocked on the Conn
// return. CloseNow on a closed Conn returns an error wrapping net.ErrClosed.
func (c *Conn) CloseNow() error {
	c.closeMu.Lock()
	already := c.isClosed()
	c.closeMu.Unlock()
	c.closeNetConn(errConnClosed)
	c.wg.Wait()
	if already {
		return errConnClosed
	}
	return nil
}

// CloseRead starts reading in the background for a Conn the application
// only writes to, so that pings are answered and the peer's close is seen.
// A data message from the peer closes the connection with
// StatusPolicyViolation. The returned context is done once reading ends,
// which is when the connection ends (or ctx does). After CloseRead, Read and
// Reader return an error.
func (c *Conn) CloseRead(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	started := false
	c.closeReadCtl.Do(func() {
		c.readClosed.Store(true)
		started = c.goBackground(func() {
			defer cancel()
			c.closeReadLoop(ctx)
		})
	})
	if !started {
		cancel()
	}
	return ctx
}

func (c *Conn) closeReadLoop(ctx context.Context) {
	if c.lock(ctx, &c.readMu) != nil {
		return
	}
	defer c.readMu.unlock()
	if c.readErr != nil {
		return
	}
	if _, err := c.startReader(ctx); err != nil {
		return
	}
	if c.writeClose(StatusPolicyViolation, "unexpected data message") == nil {
		c.readUntilClosed()
	}
	c.closeNetConn(errConnClosed)
}

var errCloseReason = errors.New("websocket: close reason must be valid UTF-8 of at most 123 bytes")

func checkClose(code StatusCode, reason string) error {
	if code < 0 || code > 0xffff || !frame.ValidCloseCode(uint16(code)) {
		return errors.New("websocket: close code " + strconv.Itoa(int(code)) + " may not be sent")
	}
	if len(reason) > frame.MaxCloseReason || !utf8.ValidString(reason) {
		return errCloseReason
	}
	return nil
}

// closeHandshake sends the close frame and waits for the end of the
// connection. Whoever is reading sees the peer's answer; when no one is, or
// the reader stops before the answer comes, closeHandshake reads for it
// itself.
func (c *Conn) closeHandshake(code StatusCode, reason string) error {
	if err := c.writeClose(code, reason); err != nil {
		if err == errCloseSent {
			// Someone else is closing: wait for them.
			c.waitClosed()
		}
		c.closeNetConn(errConnClosed)
		return c.endErr(err)
	}
	// Read for the answer unless a reader does; either way not longer than
	// the close timeout.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
	if c.lock(ctx, &c.readMu) == nil {
		c.readUntilClosed()
		c.readMu.unlock()
	}
	cancel()
	c.closeNetConn(errConnClosed)
	if c.peerClosed.Load() {
		return nil
	}
	if err := c.endErr(nil); err != nil && err != errConnClosed {
		return err
	}
	return errors.New("websocket: peer did not answer the close frame within " + c.cfg.closeTimeout.String())
}

func (c *Conn) waitClosed() {
	t := time.NewTimer(c.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-c.closedChan():
	case <-t.C:
	}
}

// readUntilClosed reads and drops data until the peer's close frame or the
// close timeout. The caller holds readMu.
func (c *Conn) readUntilClosed() {
	if c.readErr != nil {
		return
	}
	c.unwatch(reading)
	c.netConn.SetReadDeadline(time.Now().Add(c.cfg.closeTimeout))
	ctx := context.Background()
	for {
		var err error
		if c.msgActive {
			err = c.discardMessage()
		} else {
			err = c.nextFrame()
		}
		if err != nil {
			c.readError(ctx, err)
			return
		}
	}
}

// handleClose answers the peer's close frame with the same code, unless this
// side closed first, and ends the connection: the server closes TCP first,
// the client waits, bounded, for the server to do so (section 7.1.1).
func (c *Conn) handleClose(payload []byte) error {
	code, reason, ferr := frame.ParseClosePayload(payload)
	if ferr != nil {
		return c.failFrame(ferr)
	}
	ce := &CloseError{Code: StatusCode(code), Reason: string(reason)}
	c.peerClosed.Store(true)
	c.recordEnd(ce)
	if !c.closeSent.Load() {
		var p [2]byte
		c.writeControlFromReader(frame.OpClose, frame.AppendClosePayload(p[:0], code, ""))
	}
	if c.client {
		c.unwatch(reading)
		c.br.Discard(c.br.Buffered())
		rate, most := c.drainLimits()
		lingerDrain(c.netConn, c.cfg.closeTimeout, rate, most)
	} else if c.linger() {
		// Closing with bytes of the client unread (a ping after its close
		// frame, say) would reset the connection and could destroy the
		// close frame and the messages before it: half-close, then drain.
		return ce // Serve's end lingers and closes (lingerLater)
	}
	c.closeNetConn(ce)
	return ce
}

// fail fails the connection (section 7.1.7): it sends a close frame with the
// code of pe and closes, after letting the peer read the frame. It returns
// the reason the connection ended, which is pe unless the connection had
// already failed or closed: a fault found while reporting another (bytes an
// inflater decoded before its source failed, say) must not be reported in
// place of the close frame that was sent.
func (c *Conn) fail(pe *ProtocolError) error {
	c.recordEnd(pe)
	if c.writeClose(pe.Code, pe.Reason) == nil && c.linger() {
		return c.endErr(pe) // Serve's end lingers and closes (lingerLater)
	}
	c.closeNetConn(pe)
	return c.endErr(pe)
}

// linger lets the peer read the close frame just sent before the connection
// goes: closing a TCP connection with unread data in it makes the kernel
// send a reset, which can destroy the close frame on its way. The server
// half-closes first, as it is the side that closes TCP; both then drop what
// arrives until the peer closes or the close timeout passes. A server whose
// connection cannot half-close (a listener's wrapper that hides CloseWrite)
// closes at once instead: its client waits for the server to close TCP
// (section 7.1.1), so draining would only stall both for the timeout.
// It reports later when a loop of Serve is reading, which must not wait
// for the peer: then Serve's end drains and closes, in a goroutine.
func (c *Conn) linger() (later bool) {
	if !c.client && !halfClose(c.netConn) {
		return false
	}
	if c.lingerLater() {
		return true
	}
	c.unwatch(reading)
	rate, most := c.drainLimits()
	lingerDrain(c.netConn, c.cfg.closeTimeout, rate, most)
	return false
}

// drainLimits returns what the drain after a close keeps to: the
// connection's byte bucket, as its reader left it (nil without a byte
// rate), and the most bytes it reads (negative: no bound but the bucket's).
// A peer failed for going over its read rate (ErrRateLimited) gets
// drainAfterRate bytes read, not its rate's worth for the whole close
// timeout: it has just shown that it does not keep to its rate, and a
// flood of pings or empty frames cut at its frame rate would otherwise go
// on at its byte rate, which a frame rate alone leaves unbounded. Past
// them the drain waits for the close frame to be acknowledged (awaitSent)
// and the connection closes with the peer's bytes unread: the peer gets a
// reset after the close frame (Linux still lets it read what arrived
// before the reset). The caller reads c.
func (c *Conn) drainLimits() (*bucket, int64) {
	c.closeMu.Lock()
	why := c.closeErr
	c.closeMu.Unlock()
	most := int64(-1)
	if errors.Is(why, ErrRateLimited) {
		most = drainAfterRate
	}
	if c.rate == nil || c.rate.bytes.rate == 0 {
		return nil, most
	}
	c.rate.settle()
	b := c.rate.bytes
	return &b, most
}

// drainAfterRate is how many bytes the drain reads after the close frame
// sent to a peer over its read rate: what a peer that stops at the close
// frame may still have in flight, about a 100 Mbit/s link's worth over a
// 20 ms round trip.
const drainAfterRate = 256 << 10

// drainChunk is how many bytes' worth of the bucket lingerDrain waits for
// before it reads again, so that a peer over its rate costs a wake-up per
// 32 KiB rather than per byte.
const drainChunk = 32 << 10

// lingerDrain drops what arrives on conn until the peer closes, timeout
// passes or, with most not negative, most bytes have been read. With a byte
// bucket (ReadRate.Bytes) it reads no faster than the rate allows the peer
// to send while the connection was open, so that a peer cannot go past
// its rate limit by sending after the close frame: a peer that keeps
// sending is left to TCP's flow control. When it stops reading before the
// peer closes (most read, or the bucket would not refill in time), it
// waits for what was sent to reach the peer (awaitSent), as closing with
// the peer's bytes unread resets the connection.
func lingerDrain(conn net.Conn, timeout time.Duration, b *bucket, most int64) {
	deadline := time.Now().Add(timeout)
	conn.SetReadDeadline(deadline)
	if most < 0 {
		most = math.MaxInt64
	}
	if b == nil {
		if n, err := io.CopyN(io.Discard, conn, most); err == nil && n == most {
			awaitSent(conn, deadline)
		}
		return
	}
	chunk := min(drainChunk, b.burst)
	last := time.Now()
	for most > 0 {
		now := time.Now()
		b.take(now.Sub(last).Seconds(), 0)
		last = now
		if b.tokens < chunk {
			wait := time.Duration((chunk - b.tokens) / b.rate * float64(time.Second))
			if now.Add(wait).After(deadline) {
				break
			}
			time.Sleep(wait)
			continue
		}
		n, err := io.CopyN(io.Discard, conn, min(int64(min(b.tokens, 1<<20)), most))
		b.tokens -= float64(n)
		most -= n
		if err != nil {
			return // the peer closed, the deadline passed, or the connection broke
		}
	}
	awaitSent(conn, deadline)
}

// awaitSent waits, until deadline, for the peer to have acknowledged all
// that was written on conn, without reading. Closing a socket with bytes
// of the peer unread makes the kernel send a reset and drop what it still
// holds to send: a close frame behind pongs that the peer's window had not
// taken yet would be lost. Only Linux tells (TIOCOUTQ); elsewhere, and for
// connections that are not sockets, it returns at once.
func awaitSent(conn net.Conn, deadline time.Time) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	unsent := -1
	count := func(fd uintptr) { unsent = kernelUnsent(fd) }
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if raw.Control(count) != nil || unsent <= 0 || time.Now().Add(wait).After(deadline) {
			return
		}
		time.Sleep(wait)
	}
}

// halfClose shuts the writing side of conn: for TLS, close_notify and then
// the TCP connection beneath, so that the peer sees the end of the stream
// at both levels. It reports whether the peer was told.
func halfClose(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		if tc.CloseWrite() != nil {
			return false
		}
		conn = tc.NetConn()
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		return true // close_notify is TLS's own end of stream
	}
	cw, ok := conn.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// recordEnd records why the connection is ending, unless a reason is known.
func (c *Conn) recordEnd(why error) {
	c.closeMu.Lock()
	if c.closeErr == nil {
		c.closeErr = why
	}
	c.closeMu.Unlock()
}
