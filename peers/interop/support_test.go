package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testcert"
)

// testCerts is a self-signed certificate for 127.0.0.1 and localhost, made
// for one test and trusted by its peers (as their CA) for wss.
type testCerts struct {
	certFile, keyFile string
	pool              *x509.CertPool
	cert              tls.Certificate
}

func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	cert, err := testcert.New("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	c := &testCerts{pool: cert.Pool, cert: cert.TLS}
	if c.certFile, c.keyFile, err = cert.WriteFiles(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return c
}

// clientConfig trusts the certificate.
func (c *testCerts) clientConfig() *tls.Config { return &tls.Config{RootCAs: c.pool} }

// mailbox hands one value per id from whoever produces it to whoever
// waits for it, in either order.
type mailbox[T any] struct {
	mu sync.Mutex
	m  map[string]chan T
}

func (b *mailbox[T]) box(id string) chan T {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[string]chan T)
	}
	ch, ok := b.m[id]
	if !ok {
		ch = make(chan T, 1)
		b.m[id] = ch
	}
	return ch
}

// put delivers v for id, unless a value was delivered already.
func (b *mailbox[T]) put(id string, v T) {
	select {
	case b.box(id) <- v:
	default:
	}
}

// take waits for the value of id.
func (b *mailbox[T]) take(ctx context.Context, id string) (T, error) {
	select {
	case v := <-b.box(id):
		return v, nil
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("nothing reported for connection %q: %w", id, ctx.Err())
	}
}

// closeEvent is a close code and reason, as an endpoint saw them.
type closeEvent struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

func (e closeEvent) String() string { return fmt.Sprintf("%d %q", e.Code, e.Reason) }

// wireConn counts the bytes that cross a connection, to tell whether
// messages were compressed.
type wireConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the connection, as the wrapped *net.TCPConn does:
// without it our server cannot half-close after the closing handshake and
// waits for the client to close TCP first, which clients that wait for the
// server to do so (RFC 6455 section 7.1.1), such as Python's websockets,
// answer only after their own close timeout.
func (c *wireConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type wireListener struct{ net.Listener }

func (l wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c}, nil
}

type wireKey struct{}

// connContext makes the connection's *wireConn reachable from its
// requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if wc, ok := c.(*wireConn); ok {
		ctx = context.WithValue(ctx, wireKey{}, wc)
	}
	return ctx
}

// testContext returns a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
