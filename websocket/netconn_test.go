package websocket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// netConnPair returns a, the side under test, and b as net.Conns.
func netConnPair(t *testing.T, client bool) (a, b *Conn, na, nb net.Conn) {
	a, b = newSides(t, client, nil, nil)
	ctx := context.Background()
	return a, b, NetConn(ctx, a, MessageBinary), NetConn(ctx, b, MessageBinary)
}

func TestNetConnRoundTrip(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, _, na, nb := netConnPair(t, client)
		if na.LocalAddr() == nil || na.RemoteAddr() == nil || na.LocalAddr().String() != nb.RemoteAddr().String() {
			t.Fatalf("addresses %v %v / %v %v", na.LocalAddr(), na.RemoteAddr(), nb.LocalAddr(), nb.RemoteAddr())
		}
		for _, dir := range []struct{ w, r net.Conn }{{na, nb}, {nb, na}} {
			// Messages read as one stream, whatever the sizes of the reads.
			for _, s := range []string{"hello", "", ", ", "world"} {
				if n, err := dir.w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			buf := make([]byte, 12)
			if _, err := io.ReadFull(dir.r, buf); err != nil || string(buf) != "hello, world" {
				t.Fatalf("read %q, %v", buf, err)
			}
			dir.w.Write([]byte("abcdef"))
			small := make([]byte, 4)
			if n, err := dir.r.Read(small); err != nil || string(small[:n]) != "abcd"[:n] {
				t.Fatalf("read %q, %v", small[:n], err)
			}
		}
		_ = a
	})
}

// TestNetConnCopy streams 1 MiB through io.Copy each way; the end of the
// stream is the writer's Close.
func TestNetConnCopy(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx := context.Background()
		b.SetReadLimit(2 << 20) // bytes.Reader writes it as one message
		na, nb := NetConn(ctx, a, MessageBinary), NetConn(ctx, b, MessageBinary)
		data := pattern(9, 1<<20)
		copied := make(chan error, 1)
		go func() {
			_, err := io.Copy(na, bytes.NewReader(data))
			if err == nil {
				err = na.Close()
			}
			copied <- err
		}()
		h := sha256.New()
		n, err := io.Copy(h, nb)
		if err != nil || n != int64(len(data)) {
			t.Fatalf("copied %d bytes, %v", n, err)
		}
		if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("the stream arrived corrupted")
		}
		if err := waitResult(t, copied, 5*time.Second, "the writer"); err != nil {
			t.Fatalf("writer: %v", err)
		}
		// io.EOF again.
		if n, err := nb.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end = %d, %v", n, err)
		}
	})
}

// TestNetConnCopyPieces: the same through a reader that hides WriterTo, so
// that io.Copy writes many messages.
func TestNetConnCopyPieces(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx := context.Background()
		na, nb := NetConn(ctx, a, MessageBinary), NetConn(ctx, b, MessageBinary)
		data := pattern(10, 1<<20)
		copied := make(chan error, 1)
		go func() {
			_, err := io.CopyBuffer(na, struct{ io.Reader }{bytes.NewReader(data)}, make([]byte, 20_000))
			if err == nil {
				err = na.Close()
			}
			copied <- err
		}()
		got, err := io.ReadAll(nb)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
		if err := waitResult(t, copied, 5*time.Second, "the writer"); err != nil {
			t.Fatalf("writer: %v", err)
		}
	})
}

func isTimeoutErr(err error) bool {
	return err != nil && os.IsTimeout(err) && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestNetConnReadDeadline(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		_, _, na, nb := netConnPair(t, client)
		buf := make([]byte, 10)

		// A deadline in the past.
		na.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := na.Read(buf); !isTimeoutErr(err) {
			t.Fatalf("Read past the deadline = %v, want a timeout", err)
		}
		na.SetReadDeadline(time.Time{})
		nb.Write([]byte("one"))
		if n, err := na.Read(buf); err != nil || string(buf[:n]) != "one" {
			t.Fatalf("Read after clearing the deadline = %q, %v", buf[:n], err)
		}

		// A deadline set while Read is blocked.
		read := make(chan error, 1)
		go func() {
			_, err := na.Read(buf)
			read <- err
		}()
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		na.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if err := waitResult(t, read, 2*time.Second, "Read"); !isTimeoutErr(err) {
			t.Fatalf("Read = %v, want a timeout", err)
		}
		if d := time.Since(start); d < 40*time.Millisecond {
			t.Fatalf("the deadline fired after %v", d)
		}

		// A deadline in the future that is moved away.
		na.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		na.SetReadDeadline(time.Now().Add(time.Hour))
		go func() {
			time.Sleep(80 * time.Millisecond)
			nb.Write([]byte("two"))
		}()
		if n, err := na.Read(buf); err != nil || string(buf[:n]) != "two" {
			t.Fatalf("Read = %q, %v", buf[:n], err)
		}
	})
}

// TestNetConnDeadlineMidMessage: a deadline that fires in the middle of a
// message, then is cleared, leaves the rest of the message readable.
func TestNetConnDeadlineMidMessage(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, &sideOptions{WriteBufferSize: 256})
		ctx := context.Background()
		na := NetConn(ctx, a, MessageBinary)
		msg := pattern(11, 600)
		w, err := b.Writer(ctx, MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(msg[:300]) // one frame of 256 bytes goes out
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(na, buf[:256]); err != nil || !bytes.Equal(buf[:256], msg[:256]) {
			t.Fatalf("read %v", err)
		}
		na.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if _, err := na.Read(buf); !isTimeoutErr(err) {
			t.Fatalf("Read = %v, want a timeout", err)
		}
		na.SetReadDeadline(time.Time{})
		sent := make(chan error, 1)
		go func() {
			time.Sleep(50 * time.Millisecond) // Read is waiting by then
			w.Write(msg[300:])
			sent <- w.Close()
		}()
		if _, err := io.ReadFull(na, buf[256:600]); err != nil || !bytes.Equal(buf[:600], msg) {
			t.Fatalf("read the rest: %v", err)
		}
		if err := waitResult(t, sent, 5*time.Second, "the writer"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNetConnWriteDeadline(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		_, _, na, nb := netConnPair(t, client)
		na.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := na.Write([]byte("late")); !isTimeoutErr(err) {
			t.Fatalf("Write past the deadline = %v, want a timeout", err)
		}
		na.SetWriteDeadline(time.Time{})
		if _, err := na.Write([]byte("fine")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if n, err := nb.Read(buf); err != nil || string(buf[:n]) != "fine" {
			t.Fatalf("Read = %q, %v; want only the write after the deadline", buf[:n], err)
		}
	})
}

// TestNetConnEOF: the peer's normal close is the end of the stream; an
// abnormal one is an error.
func TestNetConnEOF(t *testing.T) {
	for _, tc := range []struct {
		code StatusCode
		eof  bool
	}{{StatusNormalClosure, true}, {StatusGoingAway, true}, {StatusInternalError, false}} {
		t.Run(tc.code.String(), func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				_, b, na, _ := netConnPair(t, client)
				read := make(chan error, 1)
				go func() {
					_, err := na.Read(make([]byte, 10))
					read <- err
				}()
				if err := b.Close(tc.code, ""); err != nil {
					t.Fatal(err)
				}
				err := waitResult(t, read, 5*time.Second, "Read")
				if tc.eof && err != io.EOF || !tc.eof && (err == io.EOF || CloseStatus(err) != tc.code) {
					t.Fatalf("Read = %v", err)
				}
			})
		})
	}
}

// TestNetConnWrongType: a message of the other type fails the connection
// with StatusUnsupportedData.
func TestNetConnWrongType(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		_, b, na, _ := netConnPair(t, client)
		ctx := context.Background()
		if err := b.Write(ctx, MessageText, []byte("text")); err != nil {
			t.Fatal(err)
		}
		peer := readAsync(ctx, b)
		if _, err := na.Read(make([]byte, 10)); err == nil || err == io.EOF {
			t.Fatalf("Read of a text message = %v, want an error", err)
		}
		if r := waitResult(t, peer, 5*time.Second, "the peer's Read"); CloseStatus(r.err) != StatusUnsupportedData {
			t.Fatalf("the peer's Read = %v, want CloseStatus 1003", r.err)
		}
	})
}

// TestNetConnContext: the context passed to NetConn governs the net.Conn.
func TestNetConnContext(t *testing.T) {
	a, b := newPair(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	na := NetConn(ctx, a, MessageBinary)
	read := make(chan error, 1)
	go func() {
		_, err := na.Read(make([]byte, 10))
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := waitResult(t, read, 2*time.Second, "Read"); err == nil || os.IsTimeout(err) {
		t.Fatalf("Read after the context ended = %v", err)
	}
	if _, err := na.Write([]byte("x")); err == nil {
		t.Fatal("Write after the context ended succeeded")
	}
	_ = b
}

// TestNetConnCloseWhileReading: Close with a Read blocked in another
// goroutine, the usual shape of a proxy, completes the closing handshake
// promptly and ends the Read.
func TestNetConnCloseWhileReading(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		_, b, na, _ := netConnPair(t, client)
		peer := drainUntilError(b)
		read := make(chan error, 1)
		go func() {
			_, err := na.Read(make([]byte, 10))
			read <- err
		}()
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		if err := na.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Close took %v", d)
		}
		if err := waitResult(t, read, time.Second, "Read"); err == nil {
			t.Fatal("Read succeeded after Close")
		}
		if err := waitResult(t, peer, time.Second, "the peer's Read"); CloseStatus(err) != StatusNormalClosure {
			t.Fatalf("the peer's Read = %v", err)
		}
	})
}
