package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// serveEcho serves c, echoing every message; the returned channel gets
// the error onEnd is called with.
func serveEcho(t testing.TB, c *Conn) <-chan error {
	t.Helper()
	ended := make(chan error, 1)
	err := c.Serve(func(typ MessageType, p []byte) {
		if err := c.Write(context.Background(), typ, p); err != nil {
			t.Errorf("echo: %v", err)
		}
	}, func(err error) { ended <- err })
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return ended
}

// Served connections echo messages of every size, whole (those larger
// than the read buffer grow it, those over maxServeBuffer go through a
// goroutine and come back to the loop),
// refuse a second reader, and end with the peer's close
// frame, whose code onEnd reports.
func TestServeEcho(t *testing.T) {
	const conns = 16
	sizes := []int{0, 1, 16, 125, 126, 1024, 4000, 4096, 10 << 10, 16, 70 << 10, 3, 300 << 10, 5}
	var wg sync.WaitGroup
	for i := range conns {
		client, server := newPair(t, nil, nil)
		server.SetReadLimit(1 << 20)
		client.SetReadLimit(1 << 20)
		ended := serveEcho(t, server)
		if _, err := server.Await(func() {}); err != errAwaitBusy {
			t.Errorf("Await while serving = %v, want errAwaitBusy", err)
		}
		if err := server.Serve(func(MessageType, []byte) {}, func(error) {}); err != errServeBusy {
			t.Errorf("a second Serve = %v, want errServeBusy", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for round := range 3 {
				for j, n := range sizes {
					typ := MessageBinary
					msg := pattern(i*100+round*10+j, n)
					if j%3 == 1 {
						typ, msg = MessageText, bytes.Repeat([]byte("é"), n/2)
					}
					if err := client.Write(ctx, typ, msg); err != nil {
						t.Errorf("conn %d: Write: %v", i, err)
						return
					}
					gotTyp, got, err := client.Read(ctx)
					if err != nil || gotTyp != typ || !bytes.Equal(got, msg) {
						t.Errorf("conn %d size %d: echo %v %d bytes, %v; want %v %d bytes", i, n, gotTyp, len(got), err, typ, len(msg))
						return
					}
				}
			}
			if err := client.Close(StatusNormalClosure, "bye"); err != nil {
				t.Errorf("conn %d: Close: %v", i, err)
			}
			select {
			case err := <-ended:
				var ce *CloseError
				if !errors.As(err, &ce) || ce.Code != StatusNormalClosure || ce.Reason != "bye" {
					t.Errorf("conn %d: onEnd(%v), want the peer's close 1000 bye", i, err)
				}
			case <-ctx.Done():
				t.Errorf("conn %d: onEnd not called", i)
			}
		}()
	}
	wg.Wait()
}

// Many messages sent at once in one write arrive together: each is
// delivered, in order, from the one read.
func TestServeBatched(t *testing.T) {
	client, server := newPair(t, nil, nil)
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	if err := server.Serve(func(_ MessageType, p []byte) {
		mu.Lock()
		got = append(got, string(p))
		if len(got) == 200 {
			close(done)
		}
		mu.Unlock()
	}, func(error) {}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := client.Writer(ctx, MessageText) // frames of one message, then others
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("frag"))
	w.Close()
	for i := 1; i < 200; i++ {
		if err := client.Write(ctx, MessageText, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not every message was delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range got {
		want := fmt.Sprintf("m%d", i)
		if i == 0 {
			want = "frag"
		}
		if s != want {
			t.Fatalf("message %d = %q, want %q", i, s, want)
		}
	}
}

// CloseNow from another goroutine ends serving: onEnd is called once,
// the peer sees the connection end, and Read afterwards fails.
func TestServeCloseNow(t *testing.T) {
	client, server := newPair(t, nil, nil)
	ended := serveEcho(t, server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Write(ctx, MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Read(ctx); err != nil {
		t.Fatal(err)
	}
	server.CloseNow()
	select {
	case err := <-ended:
		if err == nil {
			t.Error("onEnd(nil) after CloseNow")
		}
	case <-ctx.Done():
		t.Fatal("onEnd not called after CloseNow")
	}
	if _, _, err := client.Read(ctx); err == nil {
		t.Error("the peer still reads after CloseNow")
	}
	if _, _, err := server.Read(ctx); err == nil {
		t.Error("Read after serving ended succeeded")
	}
}

// Pings are answered while served, also one cut in two and one between
// the frames of a message, and the message still arrives whole.
func TestServePing(t *testing.T) {
	a, peer := newRawPeer(t, false, nil)
	got := make(chan string, 1)
	if err := a.Serve(func(_ MessageType, p []byte) { got <- string(p) }, func(error) {}); err != nil {
		t.Fatal(err)
	}
	pong := func(want string) {
		t.Helper()
		h, p, err := peer.readFrame()
		if err != nil || h.Opcode != frame.OpPong || string(p) != want {
			t.Fatalf("peer read %v %q, %v; want the pong %q", h.Opcode, p, err, want)
		}
	}
	peer.writeFrame(true, frame.OpPing, []byte("p1"))
	pong("p1")
	ping := frameBytes(peer.client, true, frame.OpPing, []byte("p2"))
	peer.write(ping[:3])
	time.Sleep(10 * time.Millisecond)
	peer.write(ping[3:])
	pong("p2")
	peer.writeFrame(false, frame.OpText, []byte("hel"))
	peer.writeFrame(true, frame.OpPing, []byte("p3"))
	pong("p3")
	peer.writeFrame(true, frame.OpContinuation, []byte("lo"))
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("delivered %q, want hello", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not delivered")
	}
}

// A peer that breaks the protocol is failed with the right close code
// while served.
func TestServeProtocolError(t *testing.T) {
	a, peer := newRawPeer(t, false, nil)
	ended := make(chan error, 1)
	if err := a.Serve(func(MessageType, []byte) {}, func(err error) { ended <- err }); err != nil {
		t.Fatal(err)
	}
	peer.write([]byte{0x83, 0x80, 0, 0, 0, 0}) // opcode 3 is reserved
	h, p, err := peer.readFrame()
	if err != nil || h.Opcode != 8 || len(p) < 2 || StatusCode(int(p[0])<<8|int(p[1])) != StatusProtocolError {
		t.Fatalf("peer read %v %x, %v; want a close frame with 1002", h.Opcode, p, err)
	}
	peer.conn.Close()
	// Within less than the close timeout.
	if code, peerClosed, err := awaitEnd(t, ended, 3*time.Second); peerClosed || code != StatusProtocolError {
		t.Fatalf("onEnd(%v), want a protocol error 1002", err)
	}
}

// Idle served connections hold no goroutine, and a message to each still
// comes back.
func TestServeHoldsNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux has the loops")
	}
	const n = 500
	clients, servers := serverConns(t, n)
	before := runtime.NumGoroutine()
	for _, c := range servers {
		serveEcho(t, c)
	}
	if grew := runtime.NumGoroutine() - before; grew > runtime.GOMAXPROCS(0) {
		t.Fatalf("%d goroutines for %d served connections, want the loops' alone", grew, n)
	}
	msg := frameBytes(true, true, frame.OpText, []byte("wake"))
	for _, c := range clients {
		c.Write(msg)
	}
	want := frameBytes(false, true, frame.OpText, []byte("wake"))
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("conn %d: echo %x, %v; want %x", i, got, err, want)
		}
	}
}

// Echoing through Serve allocates nothing per message, in the whole
// process: the served side's loop and write, and the client's Write and
// Reader.
func TestServeAllocs(t *testing.T) {
	if testing.Short() || raceEnabled() {
		t.Skip("counts allocations over loopback TCP")
	}
	client, server := newPair(t, nil, nil)
	client.SetReadLimit(1 << 20)
	server.SetReadLimit(1 << 20)
	serveEcho(t, server)
	ctx := context.Background()
	for _, size := range []int{16, 1024, 64 << 10} {
		msg := pattern(size, size)
		buf := make([]byte, max(size, 4096))
		echo := func() {
			if err := client.Write(ctx, MessageBinary, msg); err != nil {
				t.Fatal(err)
			}
			if n, err := readToEOF(ctx, client, buf); err != nil || n != size {
				t.Fatalf("echo of %d bytes: %d, %v", size, n, err)
			}
		}
		echo()
		if allocs := testing.AllocsPerRun(500, echo); allocs != 0 {
			t.Errorf("%d bytes: %v allocations per echoed message, want 0", size, allocs)
		}
	}
}

// BenchmarkServeEcho echoes messages through a served connection; the
// client reads the echo into a buffer of the message's size, as the
// side-by-side load generator does (peers/bench). Steady state: 0 allocs/op.
func BenchmarkServeEcho(b *testing.B) {
	for _, size := range []int{16, 1024, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			client, server := newPair(b, nil, nil)
			client.SetReadLimit(1 << 20)
			server.SetReadLimit(1 << 20)
			serveEcho(b, server)
			benchEcho(b, client, size)
		})
	}
}

// benchEcho is an echo benchmark's loop: client writes a message of size
// bytes and reads its echo into a buffer of the message's size, as the
// side-by-side load generator does (peers/bench).
func benchEcho(b *testing.B, client *Conn, size int) {
	ctx := context.Background()
	msg := pattern(size, size)
	buf := make([]byte, max(size, 4096))
	b.ReportAllocs()
	b.SetBytes(int64(size))
	cpu := startCPU()
	for b.Loop() {
		if err := client.Write(ctx, MessageBinary, msg); err != nil {
			b.Fatal(err)
		}
		if n, err := readToEOF(ctx, client, buf); err != nil || n != size {
			b.Fatalf("echo of %d bytes: %d, %v", size, n, err)
		}
	}
	cpu.report(b)
}

// cpuMeter measures the process's CPU time over a benchmark's loop: on
// the project's shared two cores, wall time per echo mostly measures the
// wait for the other side, and CPU time is what a change saves.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	t, ok := processCPU()
	return cpuMeter{t, ok}
}

// report adds cpu-ns/op, the CPU time of both ends and the runtime per
// echo, to b's results.
func (m cpuMeter) report(b *testing.B) {
	if t, ok := processCPU(); ok && m.ok && b.N > 0 {
		b.ReportMetric(float64(t-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkServeEchoConns echoes 64 KiB messages on 64 served
// connections at once, as the side-by-side echo case does: with the
// loop's drainer busy, a connection's whole message has arrived by the
// time it is read.
func BenchmarkServeEchoConns(b *testing.B) {
	const conns, size = 64, 64 << 10
	clients := make(chan *Conn, conns)
	for range conns {
		client, server := newPair(b, nil, nil)
		client.SetReadLimit(1 << 20)
		server.SetReadLimit(1 << 20)
		serveEcho(b, server)
		clients <- client
	}
	msg := pattern(size, size)
	b.ReportAllocs()
	b.SetBytes(size)
	b.SetParallelism(conns / runtime.GOMAXPROCS(0))
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		client := <-clients
		ctx := context.Background()
		buf := make([]byte, size)
		for pb.Next() {
			if err := client.Write(ctx, MessageBinary, msg); err != nil {
				b.Error(err)
				return
			}
			if n, err := readToEOF(ctx, client, buf); err != nil || n != size {
				b.Errorf("echo: %d bytes, %v", n, err)
				return
			}
		}
	})
	cpu.report(b)
}

// BenchmarkHandlerEcho echoes messages through a server that reads and
// writes in a goroutine, as the README's handler does: Read allocates each
// message, 1 alloc/op.
func BenchmarkHandlerEcho(b *testing.B) {
	for _, size := range []int{1024, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			client, server := newPair(b, nil, nil)
			client.SetReadLimit(1 << 20)
			server.SetReadLimit(1 << 20)
			ctx := context.Background()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					typ, p, err := server.Read(ctx)
					if err != nil || server.Write(ctx, typ, p) != nil {
						return
					}
				}
			}()
			b.Cleanup(func() {
				server.CloseNow()
				<-done
			})
			benchEcho(b, client, size)
		})
	}
}

// A served connection's buffer is the pool's between messages of the
// buffer's size and below, grows for a larger one and goes back after it:
// at once, or, as deliver guesses that a message as large comes next,
// after one read that would have fit the pool's buffer.
func TestServeBufferSize(t *testing.T) {
	client, server := newPair(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The read buffer is looked at during onMessage only: between
	// messages an idle served Conn has none.
	sizes := make(chan [3]int, 1)
	if err := server.Serve(func(_ MessageType, p []byte) {
		sizes <- [3]int{len(p), len(server.br.buf), server.br.Size()}
	}, func(error) {}); err != nil {
		t.Fatal(err)
	}
	prev := 0
	for _, n := range []int{16, 1024, 20 << 10, 16, 16} {
		// Two messages in one write: the first is delivered with the
		// second still buffered, so the buffer is still there to measure.
		for range 2 {
			if err := client.Write(ctx, MessageBinary, make([]byte, n)); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			var got [3]int
			select {
			case got = <-sizes:
			case <-ctx.Done():
				t.Fatal("message not delivered")
			}
			if got[0] != n {
				t.Fatalf("delivered %d bytes, want %d", got[0], n)
			}
			justGrown := prev > got[2]
			if want := got[2]; n < want && got[1] != want && got[1] != 0 && !justGrown {
				t.Fatalf("a %d-byte message read with a %d-byte buffer, want %d", n, got[1], want)
			}
		}
		prev = n
	}
}

// Random streams of messages, fragmented at random with pings between
// their frames, sent in chunks cut at random points: Serve delivers every
// message whole and in order, answers every ping, and grows its buffer
// for the messages past its size (up to 20 KiB here).
func TestServeRandomStreams(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 14))
			a, peer := newRawPeer(t, false, nil)
			a.SetReadLimit(1 << 20)
			got := make(chan []byte, 1000)
			ended := make(chan error, 1)
			if err := a.Serve(func(_ MessageType, p []byte) {
				got <- bytes.Clone(p)
			}, func(err error) { ended <- err }); err != nil {
				t.Fatal(err)
			}
			pongs := make(chan int, 1)
			go func() { // the peer reads the pongs, then the close frame
				n := 0
				for {
					h, _, err := peer.readFrame()
					if err != nil || h.Opcode == frame.OpClose {
						peer.conn.Close() // as a client does once the server's close frame is in
						pongs <- n
						return
					}
					if h.Opcode == frame.OpPong {
						n++
					}
				}
			}()
			var wire []byte
			var want [][]byte
			pings := 0
			for i := range 60 {
				size := rng.IntN(300)
				if rng.IntN(5) == 0 {
					size = rng.IntN(20 << 10)
				}
				msg := pattern(int(seed)*1000+i, size)
				want = append(want, msg)
				frags := 1 + rng.IntN(4)
				for f := range frags {
					lo, hi := f*size/frags, (f+1)*size/frags
					op := frame.OpContinuation
					if f == 0 {
						op = frame.OpBinary
					}
					wire = append(wire, frameBytes(true, f == frags-1, op, msg[lo:hi])...)
					if rng.IntN(4) == 0 {
						wire = append(wire, frameBytes(true, true, frame.OpPing, []byte("p"))...)
						pings++
					}
				}
			}
			for len(wire) > 0 {
				n := min(len(wire), 1+rng.IntN(9000))
				peer.write(wire[:n])
				wire = wire[n:]
				if rng.IntN(3) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			for i, w := range want {
				select {
				case m := <-got:
					if !bytes.Equal(m, w) {
						t.Fatalf("message %d: %d bytes delivered, want %d (or different bytes)", i, len(m), len(w))
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("message %d of %d not delivered", i, len(want))
				}
			}
			peer.write(frameBytes(true, true, frame.OpClose, closePayload(StatusNormalClosure, "")))
			if code, peerClosed, err := awaitEnd(t, ended, 10*time.Second); !peerClosed || code != StatusNormalClosure {
				t.Fatalf("onEnd(%v), want the peer's 1000", err)
			}
			if n := <-pongs; n != pings {
				t.Fatalf("%d pongs for %d pings", n, pings)
			}
		})
	}
}

// A peer that sends its close frame and then keeps the TCP connection
// open is drained for the close timeout, but not by the loop: the other
// connections served meanwhile still echo at once.
func TestServeLingerDoesNotBlock(t *testing.T) {
	a, peer := newRawPeer(t, false, nil)
	ended := make(chan error, 1)
	if err := a.Serve(func(MessageType, []byte) {}, func(err error) { ended <- err }); err != nil {
		t.Fatal(err)
	}
	// As many again as there are loops: one of them shares a's.
	var others []*Conn
	for range 2 * runtime.GOMAXPROCS(0) {
		client, server := newPair(t, nil, nil)
		serveEcho(t, server)
		others = append(others, client)
	}
	peer.write(frameBytes(true, true, frame.OpClose, closePayload(StatusGoingAway, "")))
	if h, _, err := peer.readFrame(); err != nil || h.Opcode != frame.OpClose {
		t.Fatalf("peer read %v, %v; want the close frame's answer", h.Opcode, err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, c := range others {
		if err := c.Write(ctx, MessageText, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("echoes took %v while a connection lingered", d)
	}
	select {
	case err := <-ended:
		t.Fatalf("onEnd(%v) before the peer closed or the close timeout", err)
	default:
	}
	peer.conn.Close()
	if code, peerClosed, err := awaitEnd(t, ended, 10*time.Second); !peerClosed || code != StatusGoingAway {
		t.Fatalf("onEnd(%v), want the peer's 1001", err)
	}
}

// awaitEnd waits up to d for serving or reading to end, failing t if it
// does not, and returns its error with the code it carries: the peer's
// close (peerClosed, a *CloseError) or the failure this end found (a
// *ProtocolError); 0 for other errors.
func awaitEnd(t *testing.T, ended <-chan error, d time.Duration) (code StatusCode, peerClosed bool, err error) {
	t.Helper()
	select {
	case err = <-ended:
	case <-time.After(d):
		t.Fatalf("reading did not end within %v", d)
	}
	var ce *CloseError
	var pe *ProtocolError
	switch {
	case errors.As(err, &ce):
		return ce.Code, true, err
	case errors.As(err, &pe):
		return pe.Code, false, err
	}
	return 0, false, err
}

// With permessage-deflate and context takeover, served messages inflate
// whole, also those whose compressed frames grow the buffer and those
// inflating past its size.
func TestServeCompressed(t *testing.T) {
	comp := CompressionOptions{Mode: CompressionContextTakeover, Threshold: 1}
	client, server := newPair(t, &AcceptOptions{Compression: comp}, &DialOptions{Compression: comp})
	server.SetReadLimit(1 << 20)
	client.SetReadLimit(1 << 20)
	ended := serveEcho(t, server)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i, n := range []int{16, 3000, 40 << 10, 200 << 10, 5, 100 << 10} {
		msg := bytes.Repeat([]byte(`{"k":"value","n":12345}`), n/23+1)[:n]
		want := MessageText
		if i >= 3 { // half random: compressed frames larger than the buffer
			want = MessageBinary
			for j := 0; j < n/2; j++ {
				msg[j] = byte(rng.Uint32())
			}
		}
		if err := client.Write(ctx, want, msg); err != nil {
			t.Fatal(err)
		}
		typ, got, err := client.Read(ctx)
		if err != nil || typ != want || !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: echo %v %d bytes, %v", n, typ, len(got), err)
		}
	}
	client.Close(StatusNormalClosure, "")
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("onEnd not called")
	}
}
