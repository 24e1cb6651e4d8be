package redis

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// connTracker dials the client's connections and can close them all at
// once. The client library bounds a dial and its handshake by its own
// timeout, not by the caller's context; closing the connections is how
// Start gives up when its context ends and how Close stops a reconnection
// that is waiting on a server that hangs.
type connTracker struct {
	ctx    context.Context // ends at close
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newConnTracker() *connTracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &connTracker{ctx: ctx, cancel: cancel, conns: make(map[*trackedConn]struct{})}
}

// dial has the signature of rueidis.ClientOption.DialCtxFn.
func (t *connTracker) dial(ctx context.Context, addr string, d *net.Dialer, tlsConf *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: tlsConf}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	t.conns[tc] = struct{}{}
	return tc, nil
}

// close closes every connection and makes further dials fail.
func (t *connTracker) close() {
	t.cancel()
	t.mu.Lock()
	conns := t.conns
	t.conns, t.closed = nil, true
	t.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	t *connTracker
}

func (c *trackedConn) Close() error {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}
