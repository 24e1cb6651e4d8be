package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// h2Stream is an HTTP/2 stream opened with extended CONNECT (RFC 8441) as
// the net.Conn a Conn runs over: the WebSocket frames are the DATA of the
// stream (section 5). What the peer sends is body, what this side sends
// goes to w.
//
// Deadlines behave as net.Conn's, because Conn relies on it: one that
// expires fails the calls waiting and leaves the stream usable. Neither
// net/http's request body nor its response body can be woken without
// being broken, so a goroutine (pump) reads body into a buffer of its own
// and Read waits for it, or for the deadline. A write cannot be taken
// back once begun: a deadline that expires while one is in progress
// resets the stream (Conn fails the connection after a failed write
// anyway); one that has expired before a write fails it without effect.
type h2Stream struct {
	body  io.ReadCloser
	w     io.Writer
	flush func() error // sends what w buffered; nil when w does not buffer

	// abort resets the stream, waking a write in progress. closeWrite
	// ends this side's half of the stream (END_STREAM), or is nil when
	// that cannot be done before the stream ends (a server's stream ends
	// when its handler returns). release runs last in Close.
	abort      func()
	closeWrite func() error
	release    func()

	local, remote net.Addr

	// Reading: pump hands each read of body over through arrived, and
	// waits on consumed before it reads into its buffer again.
	arrived  chan h2Read
	consumed chan struct{}
	readMu   sync.Mutex // one Read at a time; guards pending and readErr
	pending  []byte     // what pump read and Read has not yet returned
	readErr  error      // body's error, once pending is drained
	readDL   h2Deadline

	// Writing.
	writeMu  sync.Mutex // one Write at a time
	writing  atomic.Bool
	aborted  atomic.Bool // abort ran: the stream is reset
	timedOut atomic.Bool // abort ran for an expired write deadline
	// ctx, on the server, is the request's context, which ends when the
	// handler returns or the stream is reset; a Write after that would
	// panic in net/http, so it fails instead. Nil on the client.
	ctx     context.Context
	writeDL h2Deadline

	closed    chan struct{}
	closeOnce sync.Once
	pumpDone  chan struct{}
}

// h2Read is one read of the stream's body by pump.
type h2Read struct {
	p   []byte
	err error
}

// newH2Stream starts the stream's pump, which reads body through a
// buffer of bufSize bytes. Close stops it and waits for it.
func newH2Stream(body io.ReadCloser, w io.Writer, flush func() error, abort func(), closeWrite func() error, release func(), bufSize int, local, remote net.Addr) *h2Stream {
	s := &h2Stream{
		body:       body,
		w:          w,
		flush:      flush,
		abort:      abort,
		closeWrite: closeWrite,
		release:    release,
		local:      local,
		remote:     remote,
		arrived:    make(chan h2Read),
		consumed:   make(chan struct{}, 1),
		closed:     make(chan struct{}),
		pumpDone:   make(chan struct{}),
	}
	s.readDL.init()
	s.writeDL.init()
	s.writeDL.onExpire = s.expireWrite
	go s.pump(bufSize)
	return s
}

// pump reads body until it fails or the stream closes. The buffer is
// handed to Read and not written again before Read has drained it.
func (s *h2Stream) pump(bufSize int) {
	defer close(s.pumpDone)
	buf := make([]byte, bufSize)
	for {
		n, err := s.body.Read(buf)
		if err != nil && err != io.EOF {
			err = &h2StreamError{err}
		}
		select {
		case s.arrived <- h2Read{buf[:n], err}:
		case <-s.closed:
			return
		}
		if err != nil {
			return
		}
		select {
		case <-s.consumed:
		case <-s.closed:
			return
		}
	}
}

// h2StreamError is a failed read of an HTTP/2 stream: the peer reset it
// (RST_STREAM), or the connection under it was lost.
type h2StreamError struct{ err error }

func (e *h2StreamError) Error() string {
	return "websocket: the HTTP/2 stream was reset or its connection lost: " + e.err.Error()
}

func (e *h2StreamError) Unwrap() error { return e.err }

func (s *h2Stream) Read(p []byte) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for len(s.pending) == 0 && s.readErr == nil {
		select {
		case r := <-s.arrived:
			s.pending, s.readErr = r.p, r.err
			if len(r.p) == 0 && r.err == nil {
				s.consumed <- struct{}{} // an empty read: wait for the next
			}
		case <-s.readDL.expired():
			return 0, os.ErrDeadlineExceeded
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
	if len(s.pending) == 0 {
		return 0, s.readErr
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 && s.readErr == nil {
		s.consumed <- struct{}{} // pump may read into its buffer again
	}
	return n, nil
}

func (s *h2Stream) Write(p []byte) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// writing is set before the deadline is looked at, so that a deadline
	// expiring from now on finds the write in progress and aborts it.
	s.writing.Store(true)
	defer s.writing.Store(false)
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	case <-s.writeDL.expired():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if s.aborted.Load() {
		return 0, s.abortErr()
	}
	if s.ctx != nil && s.ctx.Err() != nil {
		return 0, errH2StreamEnded
	}
	n, err := s.w.Write(p)
	if err == nil && s.flush != nil {
		err = s.flush()
	}
	if err != nil && s.aborted.Load() {
		err = s.abortErr()
	}
	return n, err
}

// expireWrite runs when the write deadline expires: a write in progress
// cannot be stopped part way, so the stream is reset.
func (s *h2Stream) expireWrite() {
	if s.writing.Load() {
		s.timedOut.Store(true)
		s.abortOnce()
	}
}

func (s *h2Stream) abortOnce() {
	if !s.aborted.Swap(true) {
		s.abort()
	}
}

func (s *h2Stream) abortErr() error {
	if s.timedOut.Load() {
		return os.ErrDeadlineExceeded
	}
	return errH2StreamAborted
}

var (
	errH2StreamAborted = errors.New("websocket: the HTTP/2 stream was reset by this side")
	errH2StreamEnded   = errors.New("websocket: the HTTP/2 stream has ended: the peer reset it, its connection was lost, or the handler that accepted it returned")
)

// CloseWrite ends this side of the stream with END_STREAM, where it can;
// close.go's halfClose looks for it.
func (s *h2Stream) CloseWrite() error {
	if s.closeWrite == nil {
		return errors.ErrUnsupported
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.closeWrite()
}

// Close ends the stream: a write in progress gets h2WriteGrace to finish
// (it may be the close frame, going out as the reader ends the
// connection) and is then aborted (reset); the body is closed, which
// stops pump, and pump is waited for. Close returns only when no write is
// in progress: on the server, the handler that returns next ends the
// stream, which must not happen under a write (net/http forbids it).
func (s *h2Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.writing.Load() && !s.waitWrites(h2WriteGrace) {
			s.abortOnce()
		}
		s.body.Close()
		<-s.pumpDone
		s.waitWrites(-1) // an aborted write returns at once
		s.readDL.set(time.Time{})
		s.writeDL.set(time.Time{})
		if s.release != nil {
			s.release()
		}
	})
	return nil
}

// h2WriteGrace is how long Close lets a write in progress finish before
// it resets the stream to stop it.
const h2WriteGrace = 50 * time.Millisecond

// waitWrites waits up to d (d < 0: without limit) for a Write in progress
// to return, and reports whether none is in progress. Writes that start
// after Close has begun fail at once (closed), so this ends.
func (s *h2Stream) waitWrites(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !s.writeMu.TryLock() {
		if d >= 0 && time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	s.writeMu.Unlock()
	return true
}

func (s *h2Stream) LocalAddr() net.Addr  { return s.local }
func (s *h2Stream) RemoteAddr() net.Addr { return s.remote }

func (s *h2Stream) SetDeadline(t time.Time) error {
	s.readDL.set(t)
	s.writeDL.set(t)
	return nil
}

func (s *h2Stream) SetReadDeadline(t time.Time) error  { s.readDL.set(t); return nil }
func (s *h2Stream) SetWriteDeadline(t time.Time) error { s.writeDL.set(t); return nil }

// h2Deadline is a deadline as a channel closed when it passes.
type h2Deadline struct {
	mu       sync.Mutex
	timer    *time.Timer
	gen      uint64        // counts calls of set; a timer of an older one does nothing
	done     chan struct{} // closed while the deadline has passed
	onExpire func()        // called, outside mu, when the deadline passes
}

func (d *h2Deadline) init() { d.done = make(chan struct{}) }

// set sets the deadline; the zero time removes it.
func (d *h2Deadline) set(t time.Time) {
	d.mu.Lock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop() // if it fired already, its gen is now stale
		d.timer = nil
	}
	passed := isClosedChan(d.done)
	wait := time.Until(t)
	if t.IsZero() || wait > 0 {
		if passed {
			d.done = make(chan struct{})
		}
		if !t.IsZero() {
			gen := d.gen
			d.timer = time.AfterFunc(wait, func() { d.expire(gen) })
		}
		d.mu.Unlock()
		return
	}
	if !passed {
		close(d.done)
	}
	d.mu.Unlock()
	if d.onExpire != nil {
		d.onExpire()
	}
}

// expire closes done for the timer of the set call numbered gen, unless a
// later call has replaced it.
func (d *h2Deadline) expire(gen uint64) {
	d.mu.Lock()
	if d.gen != gen || isClosedChan(d.done) {
		d.mu.Unlock()
		return
	}
	close(d.done)
	d.timer = nil
	d.mu.Unlock()
	if d.onExpire != nil {
		d.onExpire()
	}
}

// expired returns a channel closed while the deadline has passed.
func (d *h2Deadline) expired() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

func isClosedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// h2Addr is the address of one end of an HTTP/2 connection a stream runs
// on, or of the server's host when it is not known.
type h2Addr string

func (a h2Addr) Network() string { return "h2" }
func (a h2Addr) String() string  { return string(a) }

// addrOf returns a's address as an h2Addr, or the zero h2Addr for nil.
func addrOf(a net.Addr) net.Addr {
	if a == nil {
		return h2Addr("")
	}
	return h2Addr(a.String())
}
