package gateway

import (
	"bufio"
	"net"
	"net/http"
)

// A slow consumer's socket holds what the kernel could not send: closed the
// ordinary way, it stays in FIN-WAIT-1 with its send buffer (up to some
// megabytes) for as long as the peer keeps its window shut, which a client
// that never reads can do for ever. When the server gives up on a client
// for being slow, it aborts the TCP connection instead (SO_LINGER 0: close
// sends RST and the kernel frees the socket at once). The websocket package
// does not expose the connection it takes over, so the gateway keeps it by
// watching the hijack.

// hijackWatch is the ResponseWriter handed to websocket.Accept: it keeps
// the network connection that Accept takes over.
type hijackWatch struct {
	http.ResponseWriter
	conn net.Conn
}

// Hijack implements http.Hijacker, which http.ResponseController (and so
// Accept) uses.
func (h *hijackWatch) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = c
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the other abilities of the
// ResponseWriter.
func (h *hijackWatch) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// abortOnClose makes the closing of c discard what it has not sent, and
// reset the connection, where c (or the TCP connection under its TLS) can.
// It reports whether it could.
func abortOnClose(c net.Conn) bool {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // *tls.Conn
	}
	l, ok := c.(interface{ SetLinger(sec int) error })
	return ok && l.SetLinger(0) == nil
}
