package websocket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// wrappedConn embeds a *net.TCPConn, so it has SyscallConn, but reads
// through its own Read, which the buffer must not bypass.
type wrappedConn struct {
	*net.TCPConn
	reads int
}

func (w *wrappedConn) Read(p []byte) (int, error) {
	w.reads++
	return w.TCPConn.Read(p)
}

// A TCP connection reads from its descriptor; a wrapper of one, which may
// count or transform what it reads, is read through its Read.
func TestReadBufferReadsThroughWrappers(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	if rb := newReadBuffer(b, 4096, nil); rb.raw == nil && canReadRaw {
		t.Error("a TCP connection reads through net.Conn")
	}
	w := &wrappedConn{TCPConn: b.(*net.TCPConn)}
	wb := newReadBuffer(w, 4096, nil)
	if wb.raw != nil {
		t.Fatal("a wrapper of a TCP connection would be read around")
	}
	a.Write([]byte("x"))
	if p, err := wb.Peek(1); err != nil || string(p) != "x" || w.reads == 0 {
		t.Fatalf("Peek = %q, %v after %d reads through the wrapper", p, err, w.reads)
	}
}

// Early bytes, smaller or larger than the buffer, come first, then the
// network's; a read as large as the buffer goes straight into the caller's
// slice; the end of the stream is io.EOF.
func TestReadBufferEarlyBytes(t *testing.T) {
	for _, early := range []string{"early", string(bytes.Repeat([]byte("e"), 300))} {
		for _, wrap := range []bool{false, true} {
			a, b := tcpPair(t)
			var src net.Conn = b
			if wrap {
				src = &wrappedConn{TCPConn: b.(*net.TCPConn)}
			}
			rb := newReadBuffer(src, 256, []byte(early))
			go func() {
				a.Write([]byte("late"))
				a.Close()
			}()
			got, err := io.ReadAll(struct{ io.Reader }{rb})
			if err != nil || string(got) != early+"late" {
				t.Errorf("wrapped %v: read %q, %v; want the early bytes, then the rest", wrap, got, err)
			}
			b.Close()
		}
	}
}

// A deadline interrupts a wait and the next read works; bytes read so far
// stay buffered.
func TestReadBufferDeadline(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	rb := newReadBuffer(b, 4096, nil)
	a.Write([]byte("ab"))
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	p, err := rb.Peek(4)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Peek past the deadline = %q, %v; want a timeout", p, err)
	}
	if string(p) != "ab" || rb.Buffered() != 2 {
		t.Fatalf("Peek returned %q with %d buffered; want the 2 bytes that came", p, rb.Buffered())
	}
	b.SetReadDeadline(time.Time{})
	a.Write([]byte("cd"))
	if p, err := rb.Peek(4); err != nil || string(p) != "abcd" {
		t.Fatalf("Peek after the deadline = %q, %v", p, err)
	}
	b.Close()
	if _, err := rb.Discard(5); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Discard on a closed connection = %v, want net.ErrClosed", err)
	}
}

// Reading with a buffer per idle connection costs nothing to keep: 1,000
// idle server connections waiting in Read hold under 1 KiB of heap each
// besides their Conn (the buffer alone would be 4 KiB).
func TestIdleConnHoldsNoReadBuffer(t *testing.T) {
	if !canReadRaw {
		t.Skip("this platform reads through net.Conn")
	}
	const n = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var clients, servers []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		for _, c := range servers {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	conns := make([]*Conn, n)
	done := make(chan error, n)
	for i, s := range servers {
		conns[i] = newConn(s, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
		go func() {
			_, _, err := conns[i].Read(context.Background())
			done <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // every reader is waiting
	perConn := float64(heap()-before) / n
	for _, c := range conns {
		c.CloseNow()
	}
	for range n {
		<-done
	}
	if perConn > 3*1024 {
		t.Fatalf("an idle Conn holds %.0f bytes of heap; its read buffer is back in the pool", perConn)
	}
	t.Logf("an idle Conn holds %.0f bytes of heap", perConn)
}
