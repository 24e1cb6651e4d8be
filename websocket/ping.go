package websocket

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// Ping sends a ping and returns when the matching pong arrives, or with
// ctx's error when ctx ends first. Pongs are read by whoever reads the
// connection (Read, Reader or CloseRead), so something must be reading.
func (c *Conn) Ping(ctx context.Context) error {
	done := make(chan struct{})
	c.pingMu.Lock()
	if c.pings == nil {
		c.pings = make(map[uint64]chan struct{})
	}
	c.pingSeq++
	id := c.pingSeq
	c.pings[id] = done
	c.pingMu.Unlock()
	defer func() {
		c.pingMu.Lock()
		delete(c.pings, id)
		c.pingMu.Unlock()
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
	case <-c.closed:
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
	c.pingMu.Lock()
	if done, ok := c.pings[id]; ok {
		close(done)
		delete(c.pings, id)
	}
	c.pingMu.Unlock()
}

// keepAlive pings every ping interval and fails the connection when a pong
// does not come within the pong timeout.
func (c *Conn) keepAlive() {
	t := time.NewTicker(c.cfg.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.pongTimeout)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			continue
		}
		if c.isClosed() {
			return
		}
		pe := &ProtocolError{Code: StatusPolicyViolation, Reason: "no pong within " + c.cfg.pongTimeout.String()}
		c.recordEnd(pe)
		c.writeClose(pe.Code, pe.Reason)
		c.closeNetConn(pe)
		return
	}
}
