package cli

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"

	"github.com/duplexws/duplex/internal/wiretrace"
	"github.com/duplexws/duplex/websocket"
)

// tracer prints what crosses a connection, for duplex connect --trace: the
// TLS session, and what internal/wiretrace decodes of the bytes as they
// pass (the opening handshake and every frame in both directions). It also
// remembers the wire size of each data message received, which its
// message line then shows. It is safe for concurrent use: a connection is
// read and written from different goroutines.
type tracer struct {
	con *console

	mu   sync.Mutex
	wire *wiretrace.Tracer // guarded by mu
}

// wireMessage is a data message as it crossed the wire.
type wireMessage struct {
	wire       int64 // payload bytes of its frames
	frames     int
	compressed bool
}

func newTracer(con *console) *tracer {
	closeCode := func(code uint16) string { return describeCode(websocket.StatusCode(code)) }
	return &tracer{con: con, wire: wiretrace.New(con.printf, closeCode)}
}

// wrap returns conn, traced. When encrypted, the bytes are TLS records that
// cannot be decoded and only their counts are shown.
func (t *tracer) wrap(conn net.Conn, encrypted bool) net.Conn {
	t.con.printf("-- connected to %v from %v", conn.RemoteAddr(), conn.LocalAddr())
	if encrypted {
		t.con.printf("-- wss:// through a proxy: TLS runs inside the tunnel, so only byte counts can be shown")
		t.mu.Lock()
		t.wire.Raw("encrypted")
		t.mu.Unlock()
	}
	return &traceConn{Conn: conn, t: t}
}

// tlsDone prints the TLS session the connection runs over.
func (t *tracer) tlsDone(st tls.ConnectionState) {
	peer := "no server certificate"
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		peer = fmt.Sprintf("server certificate %q issued by %q", c.Subject.String(), c.Issuer.String())
	}
	t.con.printf("-- %s, %s, ALPN %q, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol, peer)
}

// nextReceived returns the next data message read from the wire whose
// message line has not been printed, if there is one. Messages are read in
// the order they come, and a message has crossed the wire whole by the time
// Read returns it.
func (t *tracer) nextReceived() (wireMessage, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.wire.NextReceived()
	return wireMessage{wire: m.Wire, frames: m.Frames, compressed: m.Compressed}, ok
}

// traceConn is a connection whose bytes a tracer decodes as they pass.
type traceConn struct {
	net.Conn
	t         *tracer
	closeOnce sync.Once
}

func (c *traceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.mu.Lock()
		c.t.wire.Received.Feed(c.t.wire, p[:n])
		c.t.mu.Unlock()
	}
	return n, err
}

// Write decodes p before writing it, so that what it sends is printed
// before the answers the reader may print.
func (c *traceConn) Write(p []byte) (int, error) {
	c.t.mu.Lock()
	c.t.wire.Sent.Feed(c.t.wire, p)
	c.t.mu.Unlock()
	n, err := c.Conn.Write(p)
	if err != nil {
		c.t.con.printf(">> write failed after %d of %d bytes: %v", n, len(p), err)
	}
	return n, err
}

func (c *traceConn) Close() error {
	c.closeOnce.Do(func() {
		c.t.mu.Lock()
		sent, received := c.t.wire.Sent.Total(), c.t.wire.Received.Total()
		c.t.mu.Unlock()
		c.t.con.printf("-- connection closed: %d bytes sent, %d received", sent, received)
	})
	return c.Conn.Close()
}
