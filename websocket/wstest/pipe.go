package wstest

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// ConnPairBufferSize is how many bytes each direction of a NewConnPair
// connection holds. A Write that finds the buffer full waits for the peer
// to read, as a TCP write waits when the socket buffers are full.
const ConnPairBufferSize = 1 << 20

// NewConnPair returns the two ends of an in-memory, full-duplex network
// connection. Unlike net.Pipe, each direction buffers up to
// ConnPairBufferSize bytes, so both ends can write at the same time, as the
// two sides of a WebSocket do when they close together.
//
// The ends behave like TCP: Read returns what has arrived, up to len(p);
// after the peer's Close (or CloseWrite) it drains what is left and returns
// io.EOF. Calls on an end closed locally fail with an error wrapping
// net.ErrClosed, and writes to a peer that has closed fail with one wrapping
// io.ErrClosedPipe. Deadlines are supported: an expired one fails the call
// with an error wrapping os.ErrDeadlineExceeded whose Timeout method reports
// true, and leaves the connection usable once moved. Each end also has
// CloseWrite, which half-closes it like *net.TCPConn's. Addresses are of
// network "pipe", named after the pair, the first end as the client.
func NewConnPair() (net.Conn, net.Conn) {
	id := strconv.FormatUint(pairCount.Add(1), 10)
	clientAddr, serverAddr := pipeAddr("client.wstest:"+id), pipeAddr("server.wstest:"+id)
	up, down := newStream(), newStream()
	client := newPipeConn(down, up, clientAddr, serverAddr)
	server := newPipeConn(up, down, serverAddr, clientAddr)
	return client, server
}

var pairCount atomic.Uint64

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

// stream is one direction of a pair: the bytes one end wrote and the other
// has not read yet.
type stream struct {
	mu      sync.Mutex
	buf     []byte
	off     int           // buf[off:] is unread
	eof     bool          // the writing end is done: reads end with io.EOF once drained
	gone    bool          // the reading end closed: writes fail
	changed chan struct{} // closed, and replaced, whenever the state above changes
}

func newStream() *stream { return &stream{changed: make(chan struct{})} }

// notifyLocked wakes every end waiting for a change. The caller holds mu.
func (s *stream) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// pipeConn is one end of a NewConnPair connection.
type pipeConn struct {
	in, out       *stream
	local, remote pipeAddr

	readDeadline  deadline
	writeDeadline deadline

	writeLock chan struct{} // one Write at a time, so that each is contiguous
	closed    chan struct{}
	closeOnce sync.Once
	shutWrite atomic.Bool // CloseWrite was called
}

func newPipeConn(in, out *stream, local, remote pipeAddr) *pipeConn {
	return &pipeConn{
		in:            in,
		out:           out,
		local:         local,
		remote:        remote,
		readDeadline:  newDeadline(),
		writeDeadline: newDeadline(),
		writeLock:     make(chan struct{}, 1),
		closed:        make(chan struct{}),
	}
}

func (c *pipeConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "pipe", Source: c.local, Addr: c.remote, Err: err}
}

// closedError returns an error for op if this end is closed.
func (c *pipeConn) closedError(op string) error {
	select {
	case <-c.closed:
		return c.opError(op, net.ErrClosed)
	default:
		return nil
	}
}

// check reports why a call in direction op cannot proceed now, if it
// cannot: the end is closed or the deadline has passed.
func (c *pipeConn) check(op string, d *deadline) error {
	if err := c.closedError(op); err != nil {
		return err
	}
	select {
	case <-d.wait():
		return c.opError(op, os.ErrDeadlineExceeded)
	default:
	}
	return nil
}

func (c *pipeConn) Read(p []byte) (int, error) {
	for {
		if err := c.check("read", &c.readDeadline); err != nil {
			return 0, err
		}
		if len(p) == 0 {
			return 0, nil
		}
		s := c.in
		s.mu.Lock()
		if len(s.buf) > s.off {
			n := copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.buf, s.off = s.buf[:0], 0
			}
			s.notifyLocked() // there is room for the writer
			s.mu.Unlock()
			return n, nil
		}
		if s.eof {
			s.mu.Unlock()
			return 0, io.EOF
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-c.closed:
		case <-c.readDeadline.wait():
		}
	}
}

func (c *pipeConn) Write(p []byte) (int, error) {
	if err := c.lockWrite(); err != nil {
		return 0, err
	}
	defer func() { <-c.writeLock }()
	written := 0
	for {
		if err := c.check("write", &c.writeDeadline); err != nil {
			return written, err
		}
		if c.shutWrite.Load() {
			return written, c.opError("write", net.ErrClosed)
		}
		s := c.out
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			return written, c.opError("write", io.ErrClosedPipe)
		}
		if room := ConnPairBufferSize - (len(s.buf) - s.off); room > 0 && len(p) > 0 {
			n := min(room, len(p))
			if s.off > 0 && len(s.buf)+n > cap(s.buf) {
				s.buf = s.buf[:copy(s.buf, s.buf[s.off:])]
				s.off = 0
			}
			s.buf = append(s.buf, p[:n]...)
			s.notifyLocked()
			p = p[n:]
			written += n
		}
		if len(p) == 0 {
			s.mu.Unlock()
			return written, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-c.closed:
		case <-c.writeDeadline.wait():
		}
	}
}

// lockWrite waits for the other writers, giving up at the write deadline
// or when the end is closed.
func (c *pipeConn) lockWrite() error {
	for {
		if err := c.check("write", &c.writeDeadline); err != nil {
			return err
		}
		select {
		case c.writeLock <- struct{}{}:
			return nil
		case <-c.closed:
		case <-c.writeDeadline.wait():
		}
	}
}

// Close closes both directions: the peer reads what was written and then
// io.EOF, and its writes fail; what the peer wrote and this end did not
// read is dropped.
func (c *pipeConn) Close() error {
	err := c.opError("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		err = nil
		close(c.closed)
		c.in.mu.Lock()
		c.in.gone = true
		c.in.buf, c.in.off = nil, 0
		c.in.notifyLocked()
		c.in.mu.Unlock()
		c.shutOut()
		c.readDeadline.stop()
		c.writeDeadline.stop()
	})
	return err
}

// CloseWrite shuts down the writing direction, as *net.TCPConn's does: the
// peer reads what was written and then io.EOF, while this end can still
// read.
func (c *pipeConn) CloseWrite() error {
	if err := c.closedError("close"); err != nil {
		return err
	}
	if !c.shutWrite.Swap(true) {
		c.shutOut()
	}
	return nil
}

func (c *pipeConn) shutOut() {
	c.out.mu.Lock()
	c.out.eof = true
	c.out.notifyLocked()
	c.out.mu.Unlock()
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }

func (c *pipeConn) SetDeadline(t time.Time) error {
	if err := c.closedError("set deadline"); err != nil {
		return err
	}
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

func (c *pipeConn) SetReadDeadline(t time.Time) error {
	if err := c.closedError("set deadline"); err != nil {
		return err
	}
	c.readDeadline.set(t)
	return nil
}

func (c *pipeConn) SetWriteDeadline(t time.Time) error {
	if err := c.closedError("set deadline"); err != nil {
		return err
	}
	c.writeDeadline.set(t)
	return nil
}

// deadline is a channel that is closed when a time passes, like the one
// inside net.Pipe. Its zero value never expires.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{}
}

func newDeadline() deadline { return deadline{expired: make(chan struct{})} }

// set moves the deadline to t; the zero time means none. Calls waiting on
// wait() wake when it passes.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.expired // the timer fired: wait until it has closed the channel
	}
	d.timer = nil
	wasExpired := isClosed(d.expired)
	if t.IsZero() {
		if wasExpired {
			d.expired = make(chan struct{})
		}
		return
	}
	if wait := time.Until(t); wait > 0 {
		if wasExpired {
			d.expired = make(chan struct{})
		}
		expired := d.expired
		d.timer = time.AfterFunc(wait, func() { close(expired) })
		return
	}
	if !wasExpired {
		close(d.expired)
	}
}

// wait returns a channel that is closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired // nil for the zero deadline: never ready
}

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pipeURL is the URL Pipe dials; the server sees its host in the Host header.
const pipeURL = "ws://wstest.invalid/"

// pipeHandshakeTimeout bounds Pipe's handshake, which in memory takes
// microseconds, so that a broken option fails rather than hangs.
const pipeHandshakeTimeout = 30 * time.Second

// Pipe returns a client and a server Conn connected in memory by a
// NewConnPair connection, after a handshake run by the real Dial and Accept
// with dialOpts and acceptOpts, either of which may be nil. The client
// dials ws://wstest.invalid/, so the server sees the Host "wstest.invalid"
// (an Origin header set in dialOpts.HTTPHeader is checked against it).
// dialOpts.NetDialContext is replaced and no proxy is used; the rest of
// dialOpts, HTTPClient's Jar and Timeout included, applies.
//
// When the handshake fails, Pipe returns no Conn and Dial's error, joined
// with Accept's when the server refused. Otherwise the caller ends both
// Conns, with Close or CloseNow.
func Pipe(dialOpts *websocket.DialOptions, acceptOpts *websocket.AcceptOptions) (client, server *websocket.Conn, err error) {
	clientEnd, serverEnd := NewConnPair()
	ln := &oneConnListener{conn: serverEnd, closed: make(chan struct{})}

	type acceptResult struct {
		conn *websocket.Conn
		err  error
	}
	accepted := make(chan acceptResult, 1)
	// ended receives the server connection's last state: hijacked by
	// Accept, or closed by the HTTP server.
	ended := make(chan http.ConnState, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, acceptOpts)
			accepted <- acceptResult{c, err}
		}),
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateHijacked || state == http.StateClosed {
				ended <- state
			}
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), pipeHandshakeTimeout)
	defer cancel()
	client, _, err = websocket.Dial(ctx, pipeURL, pipeDialOptions(dialOpts, clientEnd))

	// The handshake is over either way: stop the HTTP server. A connection
	// Accept took over is no longer the server's, so Close leaves it alone.
	srv.Close()
	<-served
	if err == nil {
		res := <-accepted // Accept wrote the response Dial read, so it has returned
		return client, res.conn, nil
	}
	clientEnd.Close()
	if !ln.handedOut() {
		serverEnd.Close()
		return nil, nil, err
	}
	// With the client end closed, the HTTP server's connection ends soon.
	// Once hijacked, Accept is about to return; once closed, the handler
	// has returned, if it ran at all.
	var res acceptResult
	if <-ended == http.StateHijacked {
		res = <-accepted
	} else {
		select {
		case res = <-accepted:
		default:
		}
	}
	if res.conn != nil {
		res.conn.CloseNow()
	} else if res.err != nil {
		err = errors.Join(err, res.err) // say why the server refused
	}
	return nil, nil, err
}

// pipeDialOptions returns a copy of opts that dials conn, whatever the
// address, and goes through no proxy.
func pipeDialOptions(opts *websocket.DialOptions, conn net.Conn) *websocket.DialOptions {
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	var client http.Client
	if o.HTTPClient != nil {
		client = *o.HTTPClient
	}
	switch t := client.Transport.(type) {
	case nil:
		client.Transport = &http.Transport{}
	case *http.Transport:
		t = t.Clone()
		t.Proxy = nil
		client.Transport = t
	}
	// Any other Transport is left for Dial to refuse.
	o.HTTPClient = &client
	var dialed atomic.Bool
	o.NetDialContext = func(context.Context, string, string) (net.Conn, error) {
		if dialed.Swap(true) {
			return nil, errors.New("wstest: Pipe dials once")
		}
		return conn, nil
	}
	return &o
}

// oneConnListener hands out one connection, then waits until it is closed.
type oneConnListener struct {
	mu     sync.Mutex
	conn   net.Conn // nil once handed out
	closed chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	if isClosed(l.closed) {
		c = nil // not handed out after Close
	}
	if c != nil {
		l.conn = nil
	}
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) handedOut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn == nil
}

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !isClosed(l.closed) {
		close(l.closed)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return pipeAddr("server.wstest") }
