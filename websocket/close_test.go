package websocket

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// TestClose: Close from either side, with the peer reading, completes the
// handshake promptly: the peer's Read returns the code and reason, Close
// returns nil, and both sides are done.
func TestClose(t *testing.T) {
	for _, closerReads := range []bool{false, true} {
		name := "closer idle"
		if closerReads {
			name = "closer reading"
		}
		t.Run(name, func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				a, b := newSides(t, client, nil, nil)
				ctx := context.Background()
				peer := readAsync(ctx, b)
				var own <-chan readResult
				if closerReads {
					own = readAsync(ctx, a)
				}
				start := time.Now()
				if err := a.Close(StatusNormalClosure, "bye"); err != nil {
					t.Fatalf("Close = %v", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Fatalf("Close took %v", d)
				}
				r := waitResult(t, peer, 5*time.Second, "the peer's Read")
				var ce *CloseError
				if !errors.As(r.err, &ce) || *ce != (CloseError{StatusNormalClosure, "bye"}) {
					t.Fatalf("the peer's Read = %v, want CloseError{1000, bye}", r.err)
				}
				if own != nil {
					if r := waitResult(t, own, 5*time.Second, "the closer's Read"); r.err == nil {
						t.Fatal("the closer's Read succeeded")
					}
				}
				if _, _, err := a.Read(ctx); err == nil {
					t.Fatal("Read after Close succeeded")
				}
				if _, _, err := b.Read(ctx); CloseStatus(err) != StatusNormalClosure {
					t.Fatalf("the peer's second Read = %v, want the same close", err)
				}
			})
		})
	}
}

// TestCloseSimultaneous: both sides close at once; each sees the other's
// close frame, so both handshakes succeed.
func TestCloseSimultaneous(t *testing.T) {
	a, b := newPair(t, nil, nil)
	errs := make(chan error, 2)
	go func() { errs <- a.Close(StatusNormalClosure, "client") }()
	go func() { errs <- b.Close(StatusGoingAway, "server") }()
	for range 2 {
		if err := waitResult(t, errs, 5*time.Second, "Close"); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
}

// TestCloseTimeout: a peer that reads but never answers the close frame
// holds Close for the close timeout only.
func TestCloseTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	forRoles(t, func(t *testing.T, client bool) {
		a, peer := newRawPeer(t, client, &sideOptions{CloseTimeout: timeout})
		frames := make(chan frame.Opcode, 10)
		go func() {
			defer close(frames)
			for {
				h, _, err := peer.readFrame()
				if err != nil {
					return
				}
				frames <- h.Opcode
			}
		}()
		start := time.Now()
		err := a.Close(StatusNormalClosure, "bye")
		d := time.Since(start)
		if err == nil {
			t.Fatal("Close = nil, though the peer never answered")
		}
		if d < timeout || d > timeout+time.Second {
			t.Fatalf("Close returned after %v, want about %v", d, timeout)
		}
		if op := <-frames; op != frame.OpClose {
			t.Fatalf("the peer got %v, want the close frame", op)
		}
		// The network connection is closed: the peer sees the end.
		select {
		case op, ok := <-frames:
			if ok {
				t.Fatalf("the peer got a %v frame after the close frame", op)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the connection was not closed")
		}
	})
}

// TestCloseNow: CloseNow unblocks a blocked Read and a blocked Write
// promptly; a second CloseNow reports net.ErrClosed.
func TestCloseNow(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, peer := newRawPeer(t, client, nil)
		read := readAsync(context.Background(), a)
		written := make(chan error, 1)
		go func() {
			// More than the socket buffers hold, with the peer not reading.
			written <- a.Write(context.Background(), MessageBinary, make([]byte, 48<<20))
		}()
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-written:
			t.Fatalf("Write of 48 MiB to a peer that does not read returned %v", err)
		case r := <-read:
			t.Fatalf("Read returned %v", r.err)
		default:
		}
		start := time.Now()
		if err := a.CloseNow(); err != nil {
			t.Fatalf("CloseNow = %v", err)
		}
		r := waitResult(t, read, time.Second, "Read")
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Read = %v, want an error wrapping net.ErrClosed", r.err)
		}
		if err := waitResult(t, written, time.Second, "Write"); err == nil {
			t.Fatal("Write succeeded")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("CloseNow took %v to unblock", d)
		}
		if err := a.CloseNow(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second CloseNow = %v, want an error wrapping net.ErrClosed", err)
		}
		// No closing handshake: the peer sees the end of the stream.
		peer.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, peer.conn); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("the peer's read = %v, want the end of the stream", err)
		}
	})
}

// TestCloseInvalid: a code that may not be sent, or a reason too long or
// not UTF-8, makes Close fail and do nothing.
func TestCloseInvalid(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		for _, code := range []StatusCode{1004, 1005, 1006, 1015, 999, 5000, 0, -1, 2999, 1 << 16, 1<<16 + 1000} {
			if err := a.Close(code, ""); err == nil {
				t.Fatalf("Close(%d) succeeded", code)
			}
		}
		for _, reason := range []string{strings.Repeat("x", 124), strings.Repeat("é", 62), "bad \xff utf-8", "\xe2\x82"} {
			if err := a.Close(StatusNormalClosure, reason); err == nil {
				t.Fatalf("Close with reason %q succeeded", reason)
			}
		}
		// Still usable both ways.
		ctx := context.Background()
		if err := a.Write(ctx, MessageText, []byte("still")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := b.Read(ctx); err != nil || string(msg) != "still" {
			t.Fatalf("Read = %q, %v", msg, err)
		}
		if err := b.Write(ctx, MessageText, []byte("open")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := a.Read(ctx); err != nil || string(msg) != "open" {
			t.Fatalf("Read = %q, %v", msg, err)
		}
		// The longest reason and the largest code go through.
		reason := strings.Repeat("é", 61) + "x"
		peer := readAsync(ctx, b)
		if err := a.Close(4999, reason); err != nil {
			t.Fatalf("Close(4999, 123 bytes) = %v", err)
		}
		r := waitResult(t, peer, 5*time.Second, "the peer's Read")
		var ce *CloseError
		if !errors.As(r.err, &ce) || ce.Code != 4999 || ce.Reason != reason {
			t.Fatalf("the peer's Read = %v", r.err)
		}
	})
}

// TestCloseRead: CloseRead reads for an application that only writes:
// pings are answered, a data message closes with StatusPolicyViolation,
// the returned context ends with the connection, and Read fails.
func TestCloseRead(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx := context.Background()
		done := a.CloseRead(ctx)
		time.Sleep(20 * time.Millisecond) // CloseRead's goroutine is reading

		start := time.Now()
		readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, _, err := a.Read(readCtx); !errors.Is(err, errReadClosed) {
			t.Fatalf("Read after CloseRead = %v", err)
		}
		if _, _, err := a.Reader(readCtx); !errors.Is(err, errReadClosed) {
			t.Fatalf("Reader after CloseRead = %v", err)
		}
		if _, _, err := a.Read(ctx); err == nil {
			t.Fatal("Read after CloseRead succeeded")
		}
		if _, _, err := a.Reader(ctx); err == nil {
			t.Fatal("Reader after CloseRead succeeded")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Read after CloseRead took %v to fail", d)
		}

		got := make(chan readResult, 10)
		go func() {
			for {
				typ, msg, err := b.Read(ctx)
				got <- readResult{typ, msg, err}
				if err != nil {
					return
				}
			}
		}()
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for range 3 {
			if err := b.Ping(pingCtx); err != nil {
				t.Fatalf("the peer's Ping = %v", err)
			}
		}
		if err := a.Write(ctx, MessageText, []byte("from a")); err != nil {
			t.Fatal(err)
		}
		if r := waitResult(t, got, 5*time.Second, "Read"); r.err != nil || string(r.msg) != "from a" {
			t.Fatalf("the peer read %q, %v", r.msg, r.err)
		}
		if done.Err() != nil {
			t.Fatal("CloseRead's context ended while the connection is up")
		}

		if err := b.Write(ctx, MessageText, []byte("unexpected")); err != nil {
			t.Fatal(err)
		}
		r := waitResult(t, got, 5*time.Second, "Read")
		if CloseStatus(r.err) != StatusPolicyViolation {
			t.Fatalf("the peer's Read = %v, want CloseStatus 1008", r.err)
		}
		waitResult(t, done.Done(), 5*time.Second, "CloseRead's context")
		if err := a.Write(ctx, MessageText, []byte("late")); err == nil {
			t.Fatal("Write after the connection closed succeeded")
		}
	})
}

// TestCloseReadPeerCloses: CloseRead sees the peer's close, answers it,
// and its context ends.
func TestCloseReadPeerCloses(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		done := a.CloseRead(context.Background())
		if again := a.CloseRead(context.Background()); again.Err() != nil {
			// A second call has nothing to start; its context may end at
			// once, the first's must not.
			if done.Err() != nil {
				t.Fatal("the first CloseRead's context ended")
			}
		}
		if err := b.Close(StatusGoingAway, "leaving"); err != nil {
			t.Fatalf("the peer's Close = %v", err)
		}
		waitResult(t, done.Done(), 5*time.Second, "CloseRead's context")
	})
}

// TestCloseReadCancel: cancelling CloseRead's context ends its context.
func TestCloseReadCancel(t *testing.T) {
	a, _ := newPair(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := a.CloseRead(ctx)
	cancel()
	waitResult(t, done.Done(), 5*time.Second, "CloseRead's context")
}

// TestCloseConcurrent: Close and CloseNow racing from several goroutines
// on both sides neither panic nor leak.
func TestCloseConcurrent(t *testing.T) {
	for range 5 {
		a, b := newPair(t, nil, nil)
		errs := make(chan error, 8)
		for _, c := range []*Conn{a, b} {
			go func() { errs <- c.Close(StatusNormalClosure, "") }()
			go func() { errs <- c.Close(StatusGoingAway, "") }()
			go func() { errs <- c.CloseNow() }()
			go func() { _, _, err := c.Read(context.Background()); errs <- err }()
		}
		for range 8 {
			waitResult(t, errs, 5*time.Second, "a close")
		}
	}
}

// TestCloseReaderLeaves: Close while another goroutine reads, which stops
// reading before the peer's answer arrives (its context ended): Close
// reads the answer itself instead of waiting out the close timeout.
func TestCloseReaderLeaves(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		read := readAsync(ctx, a)
		time.Sleep(10 * time.Millisecond)
		start := time.Now()
		closed := make(chan error, 1)
		go func() { closed <- a.Close(StatusNormalClosure, "") }()
		time.Sleep(20 * time.Millisecond) // Close waits: a's reader is reading
		cancel()
		if r := waitResult(t, read, time.Second, "Read"); r.err == nil {
			t.Fatal("Read succeeded")
		}
		peer := drainUntilError(b) // only now does the peer answer
		if err := waitResult(t, closed, 2*time.Second, "Close"); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Close took %v", d)
		}
		if err := waitResult(t, peer, time.Second, "the peer's Read"); CloseStatus(err) != StatusNormalClosure {
			t.Fatalf("the peer's Read = %v", err)
		}
	})
}

// TestCloseTimeoutBlockedWrite: Close is bounded by the close timeout even
// when a Write holds the connection, blocked on a peer that does not read.
func TestCloseTimeoutBlockedWrite(t *testing.T) {
	const timeout = 200 * time.Millisecond
	forRoles(t, func(t *testing.T, client bool) {
		a, _ := newRawPeer(t, client, &sideOptions{CloseTimeout: timeout})
		written := make(chan error, 1)
		go func() { written <- a.Write(context.Background(), MessageBinary, make([]byte, 48<<20)) }()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		if err := a.Close(StatusNormalClosure, ""); err == nil {
			t.Fatal("Close = nil, though the peer never read")
		}
		if d := time.Since(start); d > timeout+time.Second {
			t.Fatalf("Close took %v with a close timeout of %v", d, timeout)
		}
		if err := waitResult(t, written, time.Second, "Write"); err == nil {
			t.Fatal("the blocked Write succeeded")
		}
	})
}
