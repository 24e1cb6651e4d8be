package websocket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// fastClose is the close timeout of these tests: failing a connection
// lingers for it, waiting for a raw peer that never closes.
const fastClose = 200 * time.Millisecond

// wantLimitFailure checks that err is the ProtocolError of limit, with
// StatusPolicyViolation, and that the peer was sent that code.
func wantLimitFailure(t *testing.T, err error, limit error, peer *rawPeer) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != StatusPolicyViolation || !errors.Is(err, limit) {
		t.Fatalf("Read = %v, want a ProtocolError with StatusPolicyViolation matching %v", err, limit)
	}
	peer.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, p, err := peer.readFrame()
		if err != nil {
			t.Fatalf("the peer got no close frame: %v", err)
		}
		if h.Opcode != frame.OpClose {
			continue // pongs
		}
		code, reason, _ := frame.ParseClosePayload(p)
		if StatusCode(code) != StatusPolicyViolation {
			t.Fatalf("the peer got close code %d (%q), want 1008", code, reason)
		}
		t.Logf("the peer got 1008 %q", reason)
		return
	}
}

// The attack of defect 6: a frame header announcing 64 KiB and one byte of
// its payload. Before, Read allocated the announced size at once, so 200
// such connections held 13 MB; now the message costs what has arrived
// (minGrow), not what was announced.
func TestPartialMessageCostsWhatArrived(t *testing.T) {
	if !canReadRaw {
		t.Skip("this platform reads through net.Conn, which keeps its buffer")
	}
	const n = 200
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	peers := make([]net.Conn, n)
	conns := make([]*Conn, n)
	done := make(chan error, n)
	header := frame.AppendHeader(nil, frame.Header{Fin: true, Opcode: frame.OpBinary, Length: 64 << 10, Masked: true, MaskKey: testMaskKey})
	for i := range n {
		s, p := tcpPair(t)
		peers[i] = p
		conns[i] = newConn(s, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
		conns[i].SetReadLimit(1 << 20)
	}
	defer func() {
		for i := range n {
			conns[i].CloseNow()
			peers[i].Close()
		}
	}()
	before := heap()
	for i := range n {
		go func() {
			_, _, err := conns[i].Read(context.Background())
			done <- err
		}()
		peers[i].Write(append(header, 'x'))
	}
	time.Sleep(300 * time.Millisecond) // every reader has its byte and waits
	perConn := float64(heap()-before) / n
	for i := range n {
		conns[i].CloseNow()
	}
	for range n {
		<-done
	}
	t.Logf("a message announcing 64 KiB with 1 byte received costs %.0f bytes of heap", perConn)
	if perConn > 8<<10 {
		t.Fatalf("a message announcing 64 KiB with 1 byte received costs %.0f bytes of heap, want under 8 KiB", perConn)
	}
}

// Growing as bytes arrive must not change what Read returns: messages of
// one and several frames trickled in pieces of every size.
func TestReadGrowsAsBytesArrive(t *testing.T) {
	for _, chunk := range []int{1, 7, 1000, 4096, 70_000} {
		for _, frames := range []int{1, 3} {
			c, peer := acceptFromRawClient(t, nil)
			c.SetReadLimit(-1)
			const size = 150_000
			msg := pattern(chunk, size)
			var wire []byte
			for i := range frames {
				part := msg[i*size/frames : (i+1)*size/frames]
				op := frame.OpBinary
				if i > 0 {
					op = frame.OpContinuation
				}
				wire = appendTestFrame(wire, i == frames-1, op, true, part)
			}
			go func() {
				for b := wire; len(b) > 0; {
					k := min(chunk, len(b))
					if _, err := peer.conn.Write(b[:k]); err != nil {
						return
					}
					b = b[k:]
					if chunk >= 1000 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			_, got, err := c.Read(context.Background())
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("chunks of %d, %d frames: read %d bytes, %v", chunk, frames, len(got), err)
			}
		}
	}
}

// A peer that sends part of a message and stops fails the connection with
// 1008 once the message timeout passes; time between messages is not
// counted.
func TestMessageTimeout(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		c, peer := newRawPeer(t, client, &sideOptions{MessageTimeout: 300 * time.Millisecond, CloseTimeout: fastClose})
		ctx := context.Background()

		// Idle for longer than the timeout, then a whole message: fine.
		go func() {
			time.Sleep(500 * time.Millisecond)
			peer.writeFrame(true, frame.OpText, []byte("late but whole"))
		}()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "late but whole" {
			t.Fatalf("Read after an idle wait = %q, %v", msg, err)
		}

		// A ping that comes in two pieces, then idle time: still fine.
		go func() {
			ping := appendTestFrame(nil, true, frame.OpPing, peer.client, []byte("ping"))
			peer.write(ping[:3])
			time.Sleep(100 * time.Millisecond)
			peer.write(ping[3:])
			time.Sleep(500 * time.Millisecond)
			peer.writeFrame(true, frame.OpText, []byte("after a ping"))
		}()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "after a ping" {
			t.Fatalf("Read after a split ping and an idle wait = %q, %v", msg, err)
		}

		// Part of a message, then nothing.
		wire := appendTestFrame(nil, true, frame.OpText, peer.client, bytes.Repeat([]byte("a"), 1000))
		peer.write(wire[:20])
		start := time.Now()
		_, _, err := c.Read(ctx)
		elapsed := time.Since(start)
		wantLimitFailure(t, err, ErrMessageTimeout, peer)
		if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
			t.Fatalf("the stalled message failed after %v, want about 300ms", elapsed)
		}
	})
}

// A peer trickling a message a byte at a time cannot keep Read waiting past
// the timeout either.
func TestMessageTimeoutTrickle(t *testing.T) {
	c, peer := acceptFromRawClient(t, &sideOptions{MessageTimeout: 300 * time.Millisecond, CloseTimeout: fastClose})
	wire := appendTestFrame(nil, true, frame.OpText, true, bytes.Repeat([]byte("a"), 1000))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range wire {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := peer.conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	_, _, err := c.Read(context.Background())
	wantLimitFailure(t, err, ErrMessageTimeout, peer)
}

// The timeout bounds each call of a Reader's Read, so an application that
// streams a long message at its own pace is not cut off, but a stalled peer
// is.
func TestMessageTimeoutReader(t *testing.T) {
	c, peer := acceptFromRawClient(t, &sideOptions{MessageTimeout: 300 * time.Millisecond, CloseTimeout: fastClose})
	ctx := context.Background()
	peer.write(appendTestFrame(nil, true, frame.OpBinary, true, make([]byte, 10))[:8])
	_, r, err := c.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the application's own pace
	buf := make([]byte, 100)
	if n, err := r.Read(buf); n == 0 || err != nil {
		t.Fatalf("reader's Read of what had arrived = %d, %v", n, err)
	}
	_, err = io.ReadFull(r, buf[:10])
	wantLimitFailure(t, err, ErrMessageTimeout, peer)
}

// A cancelled context still ends the call, not the connection, while the
// message clock runs.
func TestMessageTimeoutWithContext(t *testing.T) {
	c, peer := acceptFromRawClient(t, &sideOptions{MessageTimeout: 2 * time.Second, CloseTimeout: fastClose})
	wire := appendTestFrame(nil, true, frame.OpText, true, []byte("hello, world"))
	peer.write(wire[:8])
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := c.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with an ending context = %v, want its error", err)
	}
	peer.write(wire[8:])
	if _, msg, err := c.Read(context.Background()); err != nil || string(msg) != "hello, world" {
		t.Fatalf("resumed Read = %q, %v", msg, err)
	}
}

// Endless empty continuation frames: a message of more fragments than the
// cap fails with 1008 (defect 7); the cap can be raised or removed.
func TestMaxFragments(t *testing.T) {
	send := func(peer *rawPeer, fragments int) {
		wire := appendTestFrame(nil, false, frame.OpText, peer.client, []byte("a"))
		for i := 1; i < fragments; i++ {
			wire = appendTestFrame(wire, i == fragments-1, frame.OpContinuation, peer.client, nil)
		}
		go peer.conn.Write(wire)
	}
	forRoles(t, func(t *testing.T, client bool) {
		t.Run("default", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{CloseTimeout: fastClose})
			send(peer, defaultMaxFragments)
			if _, msg, err := c.Read(context.Background()); err != nil || string(msg) != "a" {
				t.Fatalf("a message of %d fragments: %q, %v", defaultMaxFragments, msg, err)
			}
			send(peer, defaultMaxFragments+1)
			_, _, err := c.Read(context.Background())
			wantLimitFailure(t, err, ErrTooManyFragments, peer)
		})
		t.Run("set", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{MaxFragments: 10, CloseTimeout: fastClose})
			send(peer, 11)
			_, _, err := c.Read(context.Background())
			wantLimitFailure(t, err, ErrTooManyFragments, peer)
		})
		t.Run("none", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{MaxFragments: -1, CloseTimeout: fastClose})
			send(peer, 5000)
			if _, msg, err := c.Read(context.Background()); err != nil || string(msg) != "a" {
				t.Fatalf("a message of 5000 fragments without a cap: %q, %v", msg, err)
			}
		})
		t.Run("from the read limit", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{CloseTimeout: fastClose})
			c.SetReadLimit(1 << 20) // 4,096 fragments
			send(peer, 4096)
			if _, _, err := c.Read(context.Background()); err != nil {
				t.Fatalf("a message of 4,096 fragments with a 1 MiB read limit: %v", err)
			}
			send(peer, 4097)
			_, _, err := c.Read(context.Background())
			wantLimitFailure(t, err, ErrTooManyFragments, peer)
		})
	})
}

// A ping flood, a flood of empty frames and a flood of bytes each fail the
// connection with 1008 once over ReadRate (defect 7); a peer within it is
// served.
func TestReadRate(t *testing.T) {
	flood := func(peer *rawPeer, op frame.Opcode, payload []byte, n int) {
		var wire []byte
		for range n {
			wire = appendTestFrame(wire, true, op, peer.client, payload)
		}
		go peer.conn.Write(wire)
	}
	forRoles(t, func(t *testing.T, client bool) {
		t.Run("pings", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Frames: 100, FrameBurst: 100}, CloseTimeout: fastClose})
			flood(peer, frame.OpPing, []byte("p"), 1000)
			_, _, err := c.Read(context.Background())
			wantLimitFailure(t, err, ErrRateLimited, peer)
		})
		t.Run("empty messages", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Frames: 100, FrameBurst: 100}, CloseTimeout: fastClose})
			flood(peer, frame.OpBinary, nil, 1000)
			err := <-drainUntilError(c)
			wantLimitFailure(t, err, ErrRateLimited, peer)
		})
		t.Run("bytes", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Bytes: 64 << 10, ByteBurst: 64 << 10}, CloseTimeout: fastClose})
			flood(peer, frame.OpBinary, make([]byte, 8<<10), 40)
			err := <-drainUntilError(c)
			wantLimitFailure(t, err, ErrRateLimited, peer)
		})
		// Controls tells a ping flood from a fast client: as many data
		// frames pass.
		t.Run("pings over Controls", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Controls: 100, ControlBurst: 100}, CloseTimeout: fastClose})
			flood(peer, frame.OpPing, []byte("p"), 1000)
			_, _, err := c.Read(context.Background())
			wantLimitFailure(t, err, ErrRateLimited, peer)
			if !strings.Contains(err.Error(), "control frames") {
				t.Errorf("error %q does not name the control-frame rate", err)
			}
		})
		t.Run("data under Controls", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Controls: 100, ControlBurst: 100}, CloseTimeout: fastClose})
			flood(peer, frame.OpBinary, []byte("d"), 1000)
			for i := range 1000 {
				if _, _, err := c.Read(context.Background()); err != nil {
					t.Fatalf("data message %d under a control-frame rate: %v", i, err)
				}
			}
		})
		t.Run("within", func(t *testing.T) {
			c, peer := newRawPeer(t, client, &sideOptions{ReadRate: RateLimit{Frames: 100, FrameBurst: 100, Bytes: 64 << 10, ByteBurst: 64 << 10}, CloseTimeout: fastClose})
			flood(peer, frame.OpPing, []byte("p"), 50)
			flood(peer, frame.OpBinary, make([]byte, 8<<10), 5)
			for i := range 5 {
				if _, _, err := c.Read(context.Background()); err != nil {
					t.Fatalf("message %d within the rate: %v", i, err)
				}
			}
		})
	})
}

// The rate limiter's arithmetic, on its own clock.
func TestReadRateBuckets(t *testing.T) {
	r := newReadRate(RateLimit{Frames: 10, FrameBurst: 32})
	if r.settleFrames != 2 {
		t.Fatalf("settles every %d frames, want 2", r.settleFrames)
	}
	for i := range 32 {
		if !r.charge(2, false) {
			t.Fatalf("frame %d of a burst of 32 refused", i)
		}
	}
	if first, second := r.charge(2, false), r.charge(2, false); first && second {
		t.Fatal("frames past the burst accepted")
	}
	if newReadRate(RateLimit{}) != nil {
		t.Fatal("the zero RateLimit made a limiter")
	}
}

// The options' ReadLimit holds from the first message, in both roles: a
// 48 KiB message passes both ways where the default 32 KiB would refuse it,
// and a message over the server's limit fails with StatusMessageTooBig.
func TestReadLimitOption(t *testing.T) {
	const limit = 64 << 10
	_, wsURL := hsStart(t, hsServerConfig{accept: &AcceptOptions{ReadLimit: limit}})
	c, _ := hsDial(t, wsURL, &DialOptions{ReadLimit: limit})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := bytes.Repeat([]byte("x"), 48<<10)
	if err := c.Write(ctx, MessageBinary, msg); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || len(got) != len(msg) {
		t.Fatalf("48 KiB echo: %d bytes, %v", len(got), err)
	}
	if err := c.Write(ctx, MessageBinary, make([]byte, limit+1)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if got := CloseStatus(err); got != StatusMessageTooBig {
		t.Fatalf("a message over the server's ReadLimit: %v (status %v), want %v", err, got, StatusMessageTooBig)
	}
}

// A peer that keeps sending after this side failed the connection is
// drained, for the close timeout, no faster than ReadRate.Bytes: before,
// the drain read at line rate, so that a peer could go past its byte rate
// for the whole close timeout by sending after the close frame. Through
// Read in both roles, and through Serve.
func TestDrainKeepsToByteRate(t *testing.T) {
	const rate = 64 << 10
	opts := &sideOptions{ReadRate: RateLimit{Bytes: rate, ByteBurst: rate}, CloseTimeout: 2 * time.Second}
	// flood sends a frame of a reserved opcode, which fails the
	// connection with 1002, then garbage for as long as the connection
	// takes it; it returns how many bytes the peer wrote.
	flood := func(peer *rawPeer, stop <-chan struct{}) <-chan int64 {
		return keepWriting(peer.conn, frameBytes(peer.client, true, frame.Opcode(3), nil), make([]byte, 64<<10), stop)
	}
	// At most the burst and the close timeout's worth of the rate are
	// read; the socket buffers of both ends take some megabytes more.
	const bound = 24 << 20
	check := func(t *testing.T, wrote int64) {
		t.Helper()
		t.Logf("the peer wrote %d bytes after its bad frame", wrote)
		if wrote > bound {
			t.Fatalf("the peer wrote %d bytes during the drain, over %d: the drain did not keep to %d bytes/s", wrote, bound, rate)
		}
	}
	forRoles(t, func(t *testing.T, client bool) {
		c, peer := newRawPeer(t, client, opts)
		stop := make(chan struct{})
		wrote := flood(peer, stop)
		_, _, err := c.Read(context.Background())
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != StatusProtocolError {
			t.Fatalf("Read = %v, want the 1002 of a reserved opcode", err)
		}
		close(stop)
		peer.conn.Close()
		check(t, <-wrote)
	})
	t.Run("serve", func(t *testing.T) {
		c, peer := newRawPeer(t, false, opts)
		ended := make(chan error, 1)
		if err := c.Serve(func(MessageType, []byte) {}, func(err error) { ended <- err }); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		wrote := flood(peer, stop)
		if code, _, err := awaitEnd(t, ended, 10*time.Second); code != StatusProtocolError {
			t.Fatalf("serving ended with %v, want the 1002 of a reserved opcode", err)
		}
		close(stop)
		peer.conn.Close()
		check(t, <-wrote)
	})
}

// keepWriting writes first to conn, then chunk again and again, for as
// long as the connection takes them (a write the peer's full window holds
// up is tried again) and until stop is closed; it sends how many bytes it
// wrote. A write cut short leaves part of a frame: what follows is
// garbage, which suits a peer only drained by now.
func keepWriting(conn net.Conn, first, chunk []byte, stop <-chan struct{}) <-chan int64 {
	wrote := make(chan int64, 1)
	go func() {
		n, err := conn.Write(first)
		total := int64(n)
		defer func() { wrote <- total }()
		for err == nil {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			n, err = conn.Write(chunk)
			total += int64(n)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil // the peer is not reading: try again
			}
		}
	}()
	return wrote
}

// A peer failed for going over its frame rate gets its close frame, but
// not its rate's worth of reading for the close timeout: the drain reads
// at most drainAfterRate bytes more, then waits, without reading, for the
// close frame to reach the peer, whose receive window the pongs to its
// flood of pings have filled, and closes. Before, a frame rate without a
// byte rate left the drain unbounded (the peer streamed into this side at
// line rate for the whole close timeout); and closing right after the
// short drain, with the peer's bytes unread, reset the connection and lost
// the close frame queued behind the pongs. Read in both roles, and Serve.
func TestDrainAfterRateIsShort(t *testing.T) {
	opts := &sideOptions{ReadRate: RateLimit{Frames: 1000, FrameBurst: 1000}, CloseTimeout: 3 * time.Second}
	// attack floods c's peer's pings until c is done, reading nothing for
	// the first half second; it returns the close code the peer read
	// (-1 for none) and how many bytes it wrote.
	attack := func(t *testing.T, peer *rawPeer, done func()) (StatusCode, int64) {
		t.Helper()
		var chunk []byte
		for len(chunk) < 64<<10 {
			chunk = append(chunk, frameBytes(peer.client, true, frame.OpPing, bytes.Repeat([]byte{'p'}, frame.MaxControlPayload))...)
		}
		stop := make(chan struct{})
		wrote := keepWriting(peer.conn, nil, chunk, stop)
		code := make(chan StatusCode, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			for {
				h, p, err := peer.readFrame()
				if err != nil {
					code <- -1
					return
				}
				if h.Opcode == frame.OpClose {
					c, _, _ := frame.ParseClosePayload(p)
					code <- StatusCode(c)
					return
				}
			}
		}()
		done()
		close(stop)
		n := <-wrote
		got := <-code
		peer.conn.Close()
		t.Logf("the peer read close code %d and wrote %d bytes", got, n)
		return got, n
	}
	// The burst of pings and what the drain reads, then the socket
	// buffers of both ends: some megabytes.
	const bound = 32 << 20
	check := func(t *testing.T, code StatusCode, wrote int64) {
		t.Helper()
		if code != StatusPolicyViolation {
			t.Errorf("the peer read close code %d, want %d: the close frame was lost", code, StatusPolicyViolation)
		}
		if wrote > bound {
			t.Errorf("the peer wrote %d bytes, over %d: the drain after the frame rate read on", wrote, bound)
		}
	}
	forRoles(t, func(t *testing.T, client bool) {
		c, peer := newRawPeer(t, client, opts)
		code, wrote := attack(t, peer, func() {
			_, _, err := c.Read(context.Background())
			if !errors.Is(err, ErrRateLimited) {
				t.Errorf("Read = %v, want the frame rate's 1008", err)
			}
		})
		check(t, code, wrote)
	})
	t.Run("serve", func(t *testing.T) {
		c, peer := newRawPeer(t, false, opts)
		ended := make(chan error, 1)
		if err := c.Serve(func(MessageType, []byte) {}, func(err error) { ended <- err }); err != nil {
			t.Fatal(err)
		}
		code, wrote := attack(t, peer, func() {
			if _, _, err := awaitEnd(t, ended, 10*time.Second); !errors.Is(err, ErrRateLimited) {
				t.Errorf("serving ended with %v, want the frame rate's 1008", err)
			}
		})
		check(t, code, wrote)
	})
}
