package wstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// pairForTest returns a NewConnPair closed when the test ends.
func pairForTest(t *testing.T) (a, b net.Conn) {
	t.Helper()
	a, b = NewConnPair()
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// within fails the test unless f returns within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestConnPairReadWrite(t *testing.T) {
	a, b := pairForTest(t)
	if n, err := a.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	// A short buffer reads part; the rest stays.
	p := make([]byte, 3)
	if n, err := b.Read(p); n != 3 || err != nil || string(p) != "hel" {
		t.Fatalf("Read = %d, %v, %q", n, err, p[:n])
	}
	if n, err := b.Read(p); n != 2 || err != nil || string(p[:n]) != "lo" {
		t.Fatalf("Read = %d, %v, %q", n, err, p[:n])
	}
	// The other direction, and zero-length calls.
	if n, err := b.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty Write = %d, %v", n, err)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}
	b.Write([]byte("world"))
	if got, err := io.ReadAll(io.LimitReader(a, 5)); err != nil || string(got) != "world" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

// Both ends stream more than a buffer holds at the same time; what each
// reads is exactly what the other wrote, in order.
func TestConnPairFullDuplex(t *testing.T) {
	a, b := pairForTest(t)
	const size = 3*ConnPairBufferSize + 12345
	data := func(seed uint64) []byte {
		p := make([]byte, size)
		r := rand.New(rand.NewPCG(seed, 0))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		return p
	}
	fromA, fromB := data(1), data(2)
	var wg sync.WaitGroup
	var gotA, gotB []byte
	var errs [4]error
	wg.Go(func() { _, errs[0] = a.Write(fromA) })
	wg.Go(func() { _, errs[1] = b.Write(fromB) })
	wg.Go(func() { gotB, errs[2] = io.ReadAll(io.LimitReader(a, size)) })
	wg.Go(func() { gotA, errs[3] = io.ReadAll(io.LimitReader(b, size)) })
	within(t, 10*time.Second, "full-duplex transfer", wg.Wait)
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if !bytes.Equal(gotA, fromA) || !bytes.Equal(gotB, fromB) {
		t.Fatal("data differs from what was written")
	}
}

// net.Pipe deadlocks here: both ends write before either reads.
func TestConnPairSimultaneousWrites(t *testing.T) {
	a, b := pairForTest(t)
	msg := bytes.Repeat([]byte("x"), 64<<10)
	within(t, time.Second, "simultaneous writes", func() {
		var wg sync.WaitGroup
		wg.Go(func() { a.Write(msg) })
		wg.Go(func() { b.Write(msg) })
		wg.Wait()
	})
}

// Concurrent writes are not interleaved: each arrives contiguous.
func TestConnPairWritesAreContiguous(t *testing.T) {
	a, b := pairForTest(t)
	const writers, size = 4, ConnPairBufferSize / 2
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { a.Write(bytes.Repeat([]byte{byte('a' + i)}, size)) })
	}
	got, err := io.ReadAll(io.LimitReader(b, writers*size))
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(got); off += size {
		if chunk := got[off : off+size]; bytes.Count(chunk, chunk[:1]) != size {
			t.Fatalf("write at %d is interleaved with another", off)
		}
	}
}

func TestConnPairDeadlines(t *testing.T) {
	t.Run("past", func(t *testing.T) {
		a, b := pairForTest(t)
		b.Write([]byte("x"))
		// An expired deadline fails the call even with data waiting.
		a.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := a.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("Read after the deadline: %v", err)
		}
		a.SetWriteDeadline(time.Unix(1, 0))
		if _, err := a.Write([]byte("x")); !isTimeout(err) {
			t.Fatalf("Write after the deadline: %v", err)
		}
		// Moving the deadline makes the connection usable again.
		a.SetDeadline(time.Time{})
		if n, err := a.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("Read after clearing the deadline: %d, %v", n, err)
		}
		if _, err := a.Write([]byte("y")); err != nil {
			t.Fatalf("Write after clearing the deadline: %v", err)
		}
	})
	t.Run("blocked read", func(t *testing.T) {
		a, _ := pairForTest(t)
		a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := a.Read(make([]byte, 1))
		if !isTimeout(err) {
			t.Fatalf("Read: %v", err)
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
			t.Fatalf("Read timed out after %v, want about 50ms", d)
		}
	})
	t.Run("set while blocked", func(t *testing.T) {
		a, b := pairForTest(t)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Read(make([]byte, 1))
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		a.SetReadDeadline(time.Now()) // as http.Server does to abort a background read
		select {
		case err := <-errc:
			if !isTimeout(err) {
				t.Fatalf("Read: %v", err)
			}
		case <-time.After(time.Second):
			t.Fatal("setting a past deadline did not wake Read")
		}
		// A deadline extended before it expires does not fire.
		a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		a.SetReadDeadline(time.Now().Add(time.Hour))
		go func() {
			time.Sleep(100 * time.Millisecond)
			b.Write([]byte("z"))
		}()
		if n, err := a.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("Read with an extended deadline: %d, %v", n, err)
		}
	})
	t.Run("blocked write", func(t *testing.T) {
		a, b := pairForTest(t)
		a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		big := make([]byte, ConnPairBufferSize+100)
		n, err := a.Write(big)
		if !isTimeout(err) || n != ConnPairBufferSize {
			t.Fatalf("Write = %d, %v; want %d and a timeout", n, err, ConnPairBufferSize)
		}
		// Another writer waiting for the first times out as well.
		a.SetWriteDeadline(time.Time{})
		go a.Write(big) // blocks on the full buffer
		time.Sleep(10 * time.Millisecond)
		a.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := a.Write([]byte("q")); !isTimeout(err) {
			t.Fatalf("queued Write: %v", err)
		}
		b.Close() // ends the blocked Write
	})
}

func TestConnPairClose(t *testing.T) {
	a, b := pairForTest(t)
	b.Write([]byte("hello"))
	a.Write([]byte("bye"))
	blocked := make(chan error, 1)
	go func() {
		a.Read(make([]byte, 100)) // takes "hello"
		_, err := a.Read(make([]byte, 100))
		blocked <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// A call blocked on the closed end returns.
	select {
	case err := <-blocked:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read: %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
	// Locally, everything fails with net.ErrClosed.
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := a.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after Close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	// The peer reads what was written, then io.EOF; its writes fail.
	if got, err := io.ReadAll(b); string(got) != "bye" || err != nil {
		t.Errorf("peer ReadAll = %q, %v", got, err)
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("peer Read: %v, want io.EOF", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("peer Write: %v, want io.ErrClosedPipe", err)
	}
}

// Close wakes the peer's blocked Read (io.EOF) and Write (an error).
func TestConnPairCloseWakesPeer(t *testing.T) {
	a, b := pairForTest(t)
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 1))
		readErr <- err
	}()
	go func() {
		_, err := b.Write(make([]byte, 2*ConnPairBufferSize))
		writeErr <- err
	}()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	for name, ch := range map[string]chan error{"Read": readErr, "Write": writeErr} {
		select {
		case err := <-ch:
			if name == "Read" && err != io.EOF || name == "Write" && !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("peer %s: %v", name, err)
			}
		case <-time.After(time.Second):
			t.Errorf("the peer's blocked %s did not return", name)
		}
	}
}

// Both ends closing at the same time completes.
func TestConnPairCloseBoth(t *testing.T) {
	for range 20 {
		a, b := NewConnPair()
		a.Write([]byte("pending"))
		within(t, time.Second, "concurrent Close", func() {
			var wg sync.WaitGroup
			wg.Go(func() { a.Close() })
			wg.Go(func() { b.Close() })
			wg.Wait()
		})
	}
}

func TestConnPairCloseWrite(t *testing.T) {
	a, b := pairForTest(t)
	a.Write([]byte("request"))
	if err := a.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after CloseWrite: %v", err)
	}
	if got, err := io.ReadAll(b); string(got) != "request" || err != nil {
		t.Fatalf("peer ReadAll = %q, %v", got, err)
	}
	// The other direction still works.
	b.Write([]byte("response"))
	b.Close()
	if got, err := io.ReadAll(a); string(got) != "response" || err != nil {
		t.Fatalf("ReadAll after CloseWrite = %q, %v", got, err)
	}
}

func TestConnPairAddrs(t *testing.T) {
	a, b := pairForTest(t)
	if a.LocalAddr() != b.RemoteAddr() || a.RemoteAddr() != b.LocalAddr() || a.LocalAddr() == b.LocalAddr() {
		t.Fatalf("addresses: a %v->%v, b %v->%v", a.LocalAddr(), a.RemoteAddr(), b.LocalAddr(), b.RemoteAddr())
	}
	for _, addr := range []net.Addr{a.LocalAddr(), b.LocalAddr()} {
		if addr.Network() != "pipe" {
			t.Errorf("network %q", addr.Network())
		}
		// Code that splits RemoteAddr, as per-IP limits do, must work.
		if _, _, err := net.SplitHostPort(addr.String()); err != nil {
			t.Errorf("address %q: %v", addr, err)
		}
	}
	c, _ := pairForTest(t)
	if c.LocalAddr() == a.LocalAddr() {
		t.Errorf("two pairs share the address %v", c.LocalAddr())
	}
}

// pipeForTest returns a Pipe whose Conns are closed when the test ends.
func pipeForTest(t *testing.T, dialOpts *websocket.DialOptions, acceptOpts *websocket.AcceptOptions) (client, server *websocket.Conn) {
	t.Helper()
	client, server, err := Pipe(dialOpts, acceptOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server
}

func TestPipe(t *testing.T) {
	client, server := pipeForTest(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, pair := range []struct {
		name     string
		from, to *websocket.Conn
	}{{"client to server", client, server}, {"server to client", server, client}} {
		// Large enough that a synchronous pipe would need the reader.
		msg := bytes.Repeat([]byte("0123456789"), 3000)
		if err := pair.from.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatalf("%s: Write: %v", pair.name, err)
		}
		typ, got, err := pair.to.Read(ctx)
		if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
			t.Fatalf("%s: Read = %v, %d bytes, %v", pair.name, typ, len(got), err)
		}
	}
	if client.Subprotocol() != "" || server.Subprotocol() != "" {
		t.Fatalf("subprotocols %q, %q without any offered", client.Subprotocol(), server.Subprotocol())
	}
}

// Both ends closing at the same time complete the closing handshake
// promptly, well inside the close timeout.
func TestPipeCloseBoth(t *testing.T) {
	for range 10 {
		client, server := pipeForTest(t, nil, nil)
		var clientErr, serverErr error
		within(t, time.Second, "concurrent Close of both Conns", func() {
			var wg sync.WaitGroup
			wg.Go(func() { clientErr = client.Close(websocket.StatusNormalClosure, "client") })
			wg.Go(func() { serverErr = server.Close(websocket.StatusGoingAway, "server") })
			wg.Wait()
		})
		if clientErr != nil || serverErr != nil {
			t.Fatalf("Close: client %v, server %v", clientErr, serverErr)
		}
	}
}

func TestPipeOptions(t *testing.T) {
	dialOpts := &websocket.DialOptions{
		Subprotocols: []string{"v1", "v2"},
		HTTPHeader:   http.Header{"Origin": {"https://app.example.com"}},
		// A proxy would make Dial send CONNECT down the pipe: Pipe drops it.
		HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustParseURL(t, "http://proxy.invalid:3128"))}},
	}
	acceptOpts := &websocket.AcceptOptions{
		Subprotocols:   []string{"v2", "v1"},
		OriginPatterns: []string{"*.example.com"},
	}
	client, server := pipeForTest(t, dialOpts, acceptOpts)
	if client.Subprotocol() != "v2" || server.Subprotocol() != "v2" {
		t.Fatalf("subprotocols %q, %q; want v2 on both", client.Subprotocol(), server.Subprotocol())
	}
}

func TestPipeHandshakeRefused(t *testing.T) {
	dialOpts := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example.org"}}}
	client, server, err := Pipe(dialOpts, nil)
	if err == nil || client != nil || server != nil {
		t.Fatalf("Pipe = %v, %v, %v; want only an error", client, server, err)
	}
	if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("error %q should give the status and the server's reason", err)
	}
	// Dial fails before it dials.
	if _, _, err := Pipe(&websocket.DialOptions{Subprotocols: []string{"not a token"}}, nil); err == nil {
		t.Fatal("Pipe accepted an invalid subprotocol")
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
