package websocket

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// Ping sends a ping and returns when the matching pong arrives, or with
// ctx's error when ctx ends first. Pongs are read by whoever reads the
// connection (Read, Reader or CloseRead), so something must be reading.
func (c *Conn) Ping(ctx context.Context) error {
	done := make(chan struct{})
	ps := c.pingsOf()
	ps.mu.Lock()
	if ps.pings == nil {
		ps.pings = make(map[uint64]chan struct{})
	}
	ps.seq++
	id := ps.seq
	ps.pings[id] = done
	ps.mu.Unlock()
	defer func() {
		ps.mu.Lock()
		delete(ps.pings, id)
		ps.mu.Unlock()
	}()

	var p [8]byte
	binary.BigEndian.PutUint64(p[:], id)
	if err := c.writeFrame(ctx, frame.OpPing, true, 0, p[:]); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closedChan():
		return c.endErr(errConnClosed)
	}
}

// gotPong wakes the Ping the pong answers. Unsolicited pongs are allowed
// (section 5.5.3) and ignored.
func (c *Conn) gotPong(p []byte) {
	if len(p) != 8 {
		return
	}
	id := binary.BigEndian.Uint64(p)
	ps := c.pingState.Load()
	if ps == nil {
		return // no Ping and no keepalive ever sent one
	}
	if id == keepaliveID {
		c.keepalivePong(&ps.keepalive)
		return
	}
	ps.mu.Lock()
	if done, ok := ps.pings[id]; ok {
		close(done)
		delete(ps.pings, id)
	}
	ps.mu.Unlock()
}

// pingState is what a Conn that pings holds: the pings waiting for their
// pong, and keepalive. Most Conns never ping, or are pinged by their peer
// only (which answering takes nothing of), so a Conn makes it at its first
// Ping or, with a ping interval, at once: 48 bytes an idle Conn does not
// hold otherwise.
type pingState struct {
	mu        sync.Mutex
	pings     map[uint64]chan struct{}
	seq       uint64
	keepalive keepalive // used when the ping interval is positive
}

// pingsOf returns c's ping state, made at the first call.
func (c *Conn) pingsOf() *pingState {
	if ps := c.pingState.Load(); ps != nil {
		return ps
	}
	c.pingState.CompareAndSwap(nil, new(pingState))
	return c.pingState.Load()
}

// keepaliveID marks the pings keepalive sends, which no Ping call waits for.
// Ping's ids count up from 1 and never reach it.
const keepaliveID = 1 << 63

// keepalive pings the peer every ping interval and fails the connection
// when a pong does not come within the pong timeout. It runs on a timer, so
// an idle connection holds no goroutine for it: the timer's function runs
// briefly, in a goroutine of c, once per interval.
type keepalive struct {
	mu       sync.Mutex
	timer    *time.Timer // nil without keepalive
	awaiting bool        // a ping is out and its pong has not come
}

func (c *Conn) startKeepalive() {
	k := &c.pingsOf().keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer = time.AfterFunc(c.cfg.pingInterval, c.keepaliveTick)
}

// stopKeepalive stops the timer for good, when the connection closes.
func (c *Conn) stopKeepalive() {
	ps := c.pingState.Load()
	if ps == nil {
		return
	}
	k := &ps.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.timer != nil {
		k.timer.Stop()
	}
}

// keepaliveTick runs when the timer fires: after an interval it sends a ping
// and waits a pong timeout; after a pong timeout without the pong, it fails
// the connection.
func (c *Conn) keepaliveTick() {
	c.closeMu.Lock()
	if c.isClosed() {
		c.closeMu.Unlock()
		return
	}
	c.wg.Add(1) // so that Close waits for the ping being written
	c.closeMu.Unlock()
	defer c.wg.Done()

	k := &c.pingState.Load().keepalive // made by startKeepalive
	k.mu.Lock()
	timedOut := k.awaiting
	k.awaiting = true
	if !timedOut {
		k.timer.Reset(c.cfg.pongTimeout)
	}
	k.mu.Unlock()
	if timedOut {
		pe := &ProtocolError{Code: StatusPolicyViolation, Reason: "no pong within " + c.cfg.pongTimeout.String()}
		c.recordEnd(pe)
		c.writeClose(pe.Code, pe.Reason)
		c.closeNetConn(pe)
		return
	}
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], keepaliveID)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.pongTimeout)
	defer cancel()
	// A ping that cannot be written within the pong timeout gets no pong
	// either, and the timer fails the connection.
	c.writeFrame(ctx, frame.OpPing, true, 0, p[:])
}

// keepalivePong records the pong to keepalive's ping and schedules the
// next ping an interval later.
func (c *Conn) keepalivePong(k *keepalive) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.timer == nil || !k.awaiting {
		return
	}
	k.awaiting = false
	k.timer.Reset(c.cfg.pingInterval)
}
