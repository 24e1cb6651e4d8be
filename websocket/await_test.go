package websocket

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// awaitRead awaits the next message on c and reads it, returning what Read
// returned on a channel.
func awaitRead(t *testing.T, c *Conn) <-chan readResult {
	t.Helper()
	out := make(chan readResult, 1)
	read := func() {
		typ, msg, err := c.Read(context.Background())
		out <- readResult{typ, msg, err}
	}
	ready, err := c.Await(read)
	if err != nil {
		t.Fatalf("Await: %v", err)
	}
	if ready {
		go read()
	}
	return out
}

// A message wakes an Await, in both roles; pings that come first are
// answered without waking it; a second Await while one waits is refused.
func TestAwaitMessage(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, peer := newRawPeer(t, client, nil)
		got := awaitRead(t, a)
		if _, err := a.Await(func() {}); err != errAwaitBusy {
			t.Errorf("a second Await = %v, want errAwaitBusy", err)
		}
		peer.writeFrame(true, frame.OpPing, []byte("p1"))
		h, p, err := peer.readFrame()
		if err != nil || h.Opcode != frame.OpPong || string(p) != "p1" {
			t.Fatalf("peer read %v %q, %v; want the pong", h.Opcode, p, err)
		}
		select {
		case r := <-got:
			t.Fatalf("a ping woke the Await: Read returned %q, %v", r.msg, r.err)
		case <-time.After(50 * time.Millisecond):
		}
		// A control frame cut in two, then a message in three pieces.
		ping := frameBytes(peer.client, true, frame.OpPing, []byte("p2"))
		peer.write(ping[:3])
		time.Sleep(10 * time.Millisecond)
		peer.write(ping[3:])
		if h, p, err := peer.readFrame(); err != nil || h.Opcode != frame.OpPong || string(p) != "p2" {
			t.Fatalf("peer read %v %q, %v; want the second pong", h.Opcode, p, err)
		}
		msg := frameBytes(peer.client, true, frame.OpText, []byte("hello"))
		peer.write(msg[:1])
		time.Sleep(10 * time.Millisecond)
		peer.write(msg[1:4])
		time.Sleep(10 * time.Millisecond)
		peer.write(msg[4:])
		r := waitResult(t, got, 5*time.Second, "the awaited Read")
		if r.err != nil || r.typ != MessageText || string(r.msg) != "hello" {
			t.Fatalf("Read = %v %q, %v", r.typ, r.msg, r.err)
		}
		// Already there: Await says so and calls nothing.
		peer.writeFrame(true, frame.OpBinary, []byte{1, 2})
		time.Sleep(200 * time.Millisecond) // on loopback it has arrived
		ready, err := a.Await(func() { t.Error("f called for a message that was there") })
		if err != nil || !ready {
			t.Fatalf("Await = %v, %v with a message waiting; want ready", ready, err)
		}
		if typ, msg, err := a.Read(context.Background()); err != nil || typ != MessageBinary || len(msg) != 2 {
			t.Fatalf("Read = %v %v, %v", typ, msg, err)
		}
	})
}

// frameBytes encodes one frame as a peer in the given role sends it.
func frameBytes(client, fin bool, op frame.Opcode, payload []byte) []byte {
	h := frame.Header{Fin: fin, Opcode: op, Length: int64(len(payload)), Masked: client}
	if client {
		h.MaskKey = [4]byte{1, 2, 3, 4}
	}
	b := frame.AppendHeader(nil, h)
	start := len(b)
	b = append(b, payload...)
	if client {
		frame.Mask(h.MaskKey, 0, b[start:])
	}
	return b
}

// Whatever ends the connection during an Await calls f, whose Read says
// why: the peer's close frame, CloseNow, a keepalive without a pong, the
// peer vanishing.
func TestAwaitEnd(t *testing.T) {
	t.Run("peer close", func(t *testing.T) {
		a, peer := newRawPeer(t, false, nil)
		got := awaitRead(t, a)
		peer.writeFrame(true, frame.OpClose, frame.AppendClosePayload(nil, 4001, "bye"))
		if h, _, err := peer.readFrame(); err != nil || h.Opcode != frame.OpClose {
			t.Fatalf("peer read %v, %v; want the close frame back", h.Opcode, err)
		}
		peer.conn.Close() // the server waits for the client to close TCP
		r := waitResult(t, got, 5*time.Second, "Read")
		var ce *CloseError
		if !errors.As(r.err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
			t.Fatalf("Read = %v, want the peer's close", r.err)
		}
	})
	t.Run("CloseNow", func(t *testing.T) {
		a, _ := newRawPeer(t, false, nil)
		got := awaitRead(t, a)
		a.CloseNow()
		if r := waitResult(t, got, 5*time.Second, "Read"); !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Read = %v, want net.ErrClosed", r.err)
		}
	})
	t.Run("keepalive", func(t *testing.T) {
		a, _ := newRawPeer(t, false, &sideOptions{PingInterval: 30 * time.Millisecond, CloseTimeout: 100 * time.Millisecond})
		got := awaitRead(t, a)
		r := waitResult(t, got, 5*time.Second, "Read")
		var pe *ProtocolError
		if !errors.As(r.err, &pe) || pe.Code != StatusPolicyViolation || !strings.Contains(pe.Reason, "no pong") {
			t.Fatalf("Read = %v, want the keepalive's failure", r.err)
		}
	})
	t.Run("peer gone", func(t *testing.T) {
		a, peer := newRawPeer(t, true, nil)
		got := awaitRead(t, a)
		peer.conn.Close()
		if r := waitResult(t, got, 5*time.Second, "Read"); r.err == nil {
			t.Fatal("Read returned a message from a closed connection")
		}
	})
	t.Run("Close", func(t *testing.T) {
		a, b := newSides(t, false, nil, nil)
		got := awaitRead(t, a)
		peerRead := readAsync(context.Background(), b) // answers the close
		if err := a.Close(StatusNormalClosure, "done"); err != nil {
			t.Fatalf("Close during an Await = %v", err)
		}
		if r := waitResult(t, got, 5*time.Second, "Read"); CloseStatus(r.err) != StatusNormalClosure {
			t.Fatalf("Read = %v, want the close handshake's end", r.err)
		}
		waitResult(t, peerRead, 5*time.Second, "the peer's Read")
	})
}

// A connection read through a wrapper awaits with a goroutine, and works
// the same.
func TestAwaitWrapped(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	w := &wrappedConn{TCPConn: b.(*net.TCPConn)}
	c := newConn(w, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
	defer c.CloseNow()
	got := awaitRead(t, c)
	a.Write(frameBytes(true, true, frame.OpText, []byte("wrapped")))
	if r := waitResult(t, got, 5*time.Second, "Read"); r.err != nil || string(r.msg) != "wrapped" {
		t.Fatalf("Read = %q, %v", r.msg, r.err)
	}
	got = awaitRead(t, c)
	c.CloseNow()
	waitResult(t, got, 5*time.Second, "Read after CloseNow")
}

// 1,000 server connections awaiting hold no goroutine: the poller's one
// goroutine waits for all of them. Each then gets its message.
func TestAwaitHoldsNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's")
	}
	const n = 1000
	clients, servers := serverConns(t, n)
	before := runtime.NumGoroutine()
	results := make(chan readResult, n)
	for _, c := range servers {
		ready, err := c.Await(func() {
			typ, msg, err := c.Read(context.Background())
			results <- readResult{typ, msg, err}
		})
		if ready || err != nil {
			t.Fatalf("Await = %v, %v on an idle connection", ready, err)
		}
	}
	if grew := runtime.NumGoroutine() - before; grew > 1 {
		t.Fatalf("%d goroutines for %d awaiting connections, want the poller's alone", grew, n)
	}
	msg := frameBytes(true, true, frame.OpText, []byte("wake"))
	for _, c := range clients {
		c.Write(msg)
	}
	for range n {
		r := waitResult(t, results, 10*time.Second, "a woken Read")
		if r.err != nil || string(r.msg) != "wake" {
			t.Fatalf("Read = %q, %v", r.msg, r.err)
		}
	}
}

// Many connections awaiting at once, while their peers send in bursts and
// ping, and a quarter are closed from this side at a random point:
// every message sent before a close arrives once and in order, every
// Await calls its f exactly once, and every chain ends.
func TestAwaitStress(t *testing.T) {
	const conns, msgs = 100, 50
	type side struct {
		c      *Conn
		peer   net.Conn
		got    []int
		calls  atomic.Int64 // f calls
		awaits atomic.Int64 // Awaits that returned false
		done   chan struct{}
	}
	sides := make([]*side, conns)
	for i := range sides {
		a, b := tcpPair(t)
		s := &side{c: newConn(b, nil, false, "", newConnConfig(0, 0, 0, 0, 0)), peer: a, done: make(chan struct{})}
		sides[i] = s
		var serve func()
		serve = func() {
			s.calls.Add(1)
			for {
				ready, err := s.c.Await(serve)
				if err != nil {
					t.Errorf("Await: %v", err)
					return
				}
				if !ready {
					s.awaits.Add(1)
					return
				}
				_, msg, err := s.c.Read(context.Background())
				if err != nil {
					close(s.done)
					return
				}
				n, _ := strconv.Atoi(string(msg))
				s.got = append(s.got, n)
			}
		}
		s.awaits.Add(1) // this first call stands for an Await's f
		serve()
	}
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			closeAt := -1
			if i%4 == 0 {
				closeAt = rng.IntN(msgs) // this side closes, racing the reads and waits
			}
			for n := range msgs {
				if n == closeAt {
					go s.c.CloseNow()
				}
				if rng.IntN(4) == 0 {
					s.peer.Write(frameBytes(true, true, frame.OpPing, nil))
				}
				s.peer.Write(frameBytes(true, true, frame.OpText, []byte(strconv.Itoa(n))))
				if rng.IntN(3) == 0 {
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				}
			}
			if i%4 == 0 {
				return
			}
			s.peer.Write(frameBytes(true, true, frame.OpClose, frame.AppendClosePayload(nil, 1000, "")))
			io.Copy(io.Discard, s.peer) // the pongs and the close answer, until the server closes
			s.peer.Close()
		}()
	}
	for i, s := range sides {
		waitResult(t, s.done, 20*time.Second, "the end of a connection's reads")
		if i%4 != 0 && len(s.got) != msgs {
			t.Errorf("connection %d read %d messages, want %d", i, len(s.got), msgs)
		}
		for j, n := range s.got {
			if n != j {
				t.Fatalf("connection %d: message %d is %d: lost or out of order", i, j, n)
			}
		}
		if calls, awaits := s.calls.Load(), s.awaits.Load(); calls != awaits {
			t.Errorf("connection %d: %d calls of f for %d waits", i, calls, awaits)
		}
	}
	wg.Wait()
	for _, s := range sides {
		s.c.CloseNow()
		s.peer.Close()
	}
}

// serverConns returns n TCP connections, each as a bare client socket and
// a server Conn with the default configuration, all closed when the test
// ends.
func serverConns(t *testing.T, n int) ([]net.Conn, []*Conn) {
	t.Helper()
	clients, servers := make([]net.Conn, n), make([]*Conn, n)
	for i := range n {
		a, b := tcpPair(t)
		clients[i], servers[i] = a, newConn(b, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
	}
	t.Cleanup(func() {
		for i := range n {
			clients[i].Close()
			servers[i].CloseNow()
		}
	})
	return clients, servers
}

// TestAwaitAllocs: a message that wakes a connection parked in Await and
// is read through Reader costs no allocation, with the default message
// timeout (whose watch the read buffer calls) and without one. Another
// connection stays parked meanwhile, as on a server, so that the poller's
// goroutine lives on instead of starting at each wait. (Under the race
// detector, sync.Pool drops a quarter of what it is given: the read
// state, the read buffer and its bytes, which the pools then make again
// in four allocations: about one per message, which AllocsPerRun's
// integer average counts as 1, and a real allocation per message as 2.)
func TestAwaitAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over loopback TCP")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's")
	}
	_, others := serverConns(t, 1)
	if ready, err := others[0].Await(func() {}); ready || err != nil {
		t.Fatalf("Await = %v, %v on an idle connection", ready, err)
	}
	for _, timeout := range []time.Duration{0, -1} {
		t.Run("timeout="+timeout.String(), func(t *testing.T) {
			peer, nc := tcpPair(t)
			cfg := newConnConfig(0, 0, 0, 0, 0)
			cfg.limits = newReadLimits(timeout, 0, RateLimit{})
			c := newConn(nc, nil, false, "", cfg)
			defer c.CloseNow()
			defer peer.Close()
			got := make(chan int, 1)
			buf := make([]byte, 4096)
			var resume func()
			resume = func() {
				for {
					ready, err := c.Await(resume)
					if err != nil || !ready {
						return
					}
					n, err := readToEOF(context.Background(), c, buf)
					if err != nil {
						n = -1
					}
					got <- n
					if err != nil {
						return
					}
				}
			}
			resume()
			msg := frameBytes(true, true, frame.OpBinary, []byte("a parked connection"))
			wake := func() {
				if _, err := peer.Write(msg); err != nil {
					t.Fatal(err)
				}
				if n := <-got; n != 19 { // waitResult's timer would count
					t.Fatalf("read %d bytes, want 19", n)
				}
			}
			wake()
			if allocs := testing.AllocsPerRun(200, wake); allocs != 0 && !(raceEnabled() && allocs == 1) {
				t.Errorf("%v allocations per message that wakes an Await, want 0", allocs)
			}
		})
	}
}
