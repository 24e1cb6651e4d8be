package websocket

import (
	"context"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/duplexws/duplex/internal/frame"
)

// The benchmarks measure one Conn over loopback TCP whose peer costs as
// little as possible: for writing, a goroutine that drains the socket into
// one buffer; for reading, a goroutine that writes the same pre-encoded
// frames again and again.

var benchSizes = []struct {
	name string
	size int
}{{"16B", 16}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// benchContexts are the two kinds of context a call may get: one that
// cannot end, and one that can (and does not).
var benchContexts = []string{"background", "cancelable"}

func benchContext(tb testing.TB, kind string) context.Context {
	if kind == "background" {
		return context.Background()
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return ctx
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		a.Close()
		tb.Fatal("accept failed")
	}
	return a, b
}

// newBenchConn returns a Conn in the role client says over loopback TCP,
// its peer's end, and a channel closed when the peer goroutine run(peer)
// ends. Cleanup closes both ends and waits for it.
func newBenchConn(tb testing.TB, client bool, run func(peer net.Conn)) *Conn {
	tb.Helper()
	nc, peer := tcpPair(tb)
	cfg := newConnConfig(0, 0, 0, 0, 0)
	c := newConn(nc, nil, client, "", cfg)
	c.SetReadLimit(-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(peer)
	}()
	tb.Cleanup(func() {
		c.CloseNow()
		peer.Close()
		<-done
	})
	return c
}

// drain reads everything that arrives into one buffer.
func drain(peer net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := peer.Read(buf); err != nil {
			return
		}
	}
}

// feeder returns a peer that sends messages of size bytes forever, as the
// peer of a Conn in the role client says.
func feeder(client bool, size int) func(net.Conn) {
	msg := pattern(size, size)
	var wire []byte
	for len(wire) < 256<<10 {
		wire = appendTestFrame(wire, true, frame.OpBinary, !client, msg)
	}
	return func(peer net.Conn) {
		for {
			if _, err := peer.Write(wire); err != nil {
				return
			}
		}
	}
}

// readToEOF reads one message through Reader into buf.
func readToEOF(ctx context.Context, c *Conn, buf []byte) (int, error) {
	_, r, err := c.Reader(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// forBenchMatrix runs f for each role, size and context kind.
func forBenchMatrix(b *testing.B, contexts []string, f func(b *testing.B, client bool, size int, ctx context.Context)) {
	for _, client := range []bool{false, true} {
		b.Run(roleName(client), func(b *testing.B) {
			for _, s := range benchSizes {
				b.Run(s.name, func(b *testing.B) {
					for _, kind := range contexts {
						b.Run(kind, func(b *testing.B) {
							f(b, client, s.size, benchContext(b, kind))
						})
					}
				})
			}
		})
	}
}

// BenchmarkWrite: Write of one message. Steady state: 0 allocs/op.
func BenchmarkWrite(b *testing.B) {
	forBenchMatrix(b, benchContexts, func(b *testing.B, client bool, size int, ctx context.Context) {
		c := newBenchConn(b, client, drain)
		msg := pattern(1, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Write(ctx, MessageBinary, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWriter: the same message through a Writer.
func BenchmarkWriter(b *testing.B) {
	forBenchMatrix(b, benchContexts[:1], func(b *testing.B, client bool, size int, ctx context.Context) {
		c := newBenchConn(b, client, drain)
		msg := pattern(1, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			w, err := c.Writer(ctx, MessageBinary)
			if err != nil {
				b.Fatal(err)
			}
			w.Write(msg)
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReader: Reader, read to io.EOF into a reused buffer. Steady
// state: 0 allocs/op.
func BenchmarkReader(b *testing.B) {
	forBenchMatrix(b, benchContexts, func(b *testing.B, client bool, size int, ctx context.Context) {
		c := newBenchConn(b, client, feeder(client, size))
		buf := make([]byte, 32<<10)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			if n, err := readToEOF(ctx, c, buf); err != nil || n != size {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		}
	})
}

// BenchmarkRead: Read, which returns a new payload: 1 alloc/op.
func BenchmarkRead(b *testing.B) {
	forBenchMatrix(b, benchContexts, func(b *testing.B, client bool, size int, ctx context.Context) {
		c := newBenchConn(b, client, feeder(client, size))
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			if _, msg, err := c.Read(ctx); err != nil || len(msg) != size {
				b.Fatalf("read %d bytes, %v", len(msg), err)
			}
		}
	})
}

// TestZeroAllocs holds the steady state of Write and of reading through
// Reader to zero allocations, in both roles, with a context that cannot
// end and one that can. (Under the race detector, sync.Pool drops a
// quarter of what it is given; AllocsPerRun's integer average still counts
// that as 0, and a real allocation per call as 1 or more.)
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over loopback TCP")
	}
	for _, client := range []bool{false, true} {
		for _, s := range benchSizes {
			for _, kind := range benchContexts {
				name := roleName(client) + "/" + s.name + "/" + kind
				t.Run("Write/"+name, func(t *testing.T) {
					c := newBenchConn(t, client, drain)
					ctx := benchContext(t, kind)
					msg := pattern(1, s.size)
					allocs := testing.AllocsPerRun(200, func() {
						if err := c.Write(ctx, MessageBinary, msg); err != nil {
							t.Fatal(err)
						}
					})
					if allocs != 0 {
						t.Errorf("Write: %v allocs per call, want 0", allocs)
					}
				})
				t.Run("Reader/"+name, func(t *testing.T) {
					c := newBenchConn(t, client, feeder(client, s.size))
					ctx := benchContext(t, kind)
					buf := make([]byte, 4096)
					allocs := testing.AllocsPerRun(200, func() {
						if n, err := readToEOF(ctx, c, buf); err != nil || n != s.size {
							t.Fatalf("read %d bytes, %v", n, err)
						}
					})
					if allocs != 0 {
						t.Errorf("Reader: %v allocs per message, want 0", allocs)
					}
				})
			}
		}
	}
}

// TestReadAllocs: Read allocates the payload it returns, and nothing else.
func TestReadAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations over loopback TCP")
	}
	for _, client := range []bool{false, true} {
		for _, size := range []int{16, 1 << 10} {
			t.Run(roleName(client)+"/"+strconv.Itoa(size), func(t *testing.T) {
				c := newBenchConn(t, client, feeder(client, size))
				ctx := benchContext(t, "cancelable")
				allocs := testing.AllocsPerRun(200, func() {
					if _, msg, err := c.Read(ctx); err != nil || len(msg) != size {
						t.Fatalf("read %d bytes, %v", len(msg), err)
					}
				})
				// Under the race detector the payload's slices.Grow is not
				// optimised into one allocation.
				if allocs != 1 && !(raceEnabled() && allocs == 2) {
					t.Errorf("Read: %v allocs per message, want 1", allocs)
				}
			})
		}
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}
