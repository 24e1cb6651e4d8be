package websocket

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serveMemory opens n connections to a server that Accepts each in its
// handler, Serves it and returns, as peers/bench/servers/duplex does, and
// returns the heap and goroutine stacks the server holds per connection,
// each idle after one message (idleMemory).
func serveMemory(tb testing.TB, n int) (heap, stack float64) {
	tb.Helper()
	return idleMemory(tb, n, func(c *Conn, delivered, ends *sync.WaitGroup) error {
		return c.Serve(func(MessageType, []byte) { delivered.Done() }, func(error) { ends.Done() })
	})
}

// idleMemory opens n connections to a server that Accepts each in its
// handler, starts reading it with start and returns, and returns the heap
// and goroutine stacks the server holds per connection, each idle after
// one message. start marks each message read Done in delivered, and
// the end of reading, once the Conn is closed, in ends; when it returns
// an error, it marks neither. The clients are sockets made with syscalls,
// outside the runtime's poller, so that the heap measured is the server's
// alone. With DUPLEX_SERVEMEM_PROFILE set, it writes a heap profile of
// every allocation live at the measurement to that file.
func idleMemory(tb testing.TB, n int, start func(c *Conn, delivered, ends *sync.WaitGroup) error) (heap, stack float64) {
	tb.Helper()
	profile := os.Getenv("DUPLEX_SERVEMEM_PROFILE")
	if profile != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	var delivered sync.WaitGroup
	var ends sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			return
		}
		ends.Add(1)
		if err := start(c, &delivered, &ends); err != nil {
			c.CloseNow()
			ends.Done()
		}
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().(*net.TCPAddr)
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())

	heap0, stack0 := heapAndStacks()
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		ends.Wait() // every Conn ended, so that no loop outlives the test
	}()
	resp := make([]byte, 512)
	delivered.Add(n)
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		fds = append(fds, fd)
		if err := syscall.Connect(fd, sa); err != nil {
			tb.Fatal(err)
		}
		if _, err := syscall.Write(fd, []byte(memHandshake)); err != nil {
			tb.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(resp[:got], []byte("\r\n\r\n")) {
			k, err := syscall.Read(fd, resp[got:])
			if err != nil || k == 0 {
				tb.Fatalf("reading the handshake response: %d bytes, %v", k, err)
			}
			got += k
		}
		if _, err := syscall.Write(fd, memFrame); err != nil {
			tb.Fatal(err)
		}
	}
	delivered.Wait()
	time.Sleep(100 * time.Millisecond) // every handler returned
	heap1, stack1 := heapAndStacks()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			tb.Fatal(err)
		}
	}
	return float64(int64(heap1-heap0)) / float64(n), float64(int64(stack1-stack0)) / float64(n)
}

// maxServeHeap bounds the heap of an idle served connection, measured
// by serveMemory: 761 to 812 bytes on linux/amd64 with Go 1.27.3 (of
// which about 300 are net's: its netFD, TCPConn and the two addresses),
// against 2,270 before issue 14. The margin, about 10%, absorbs the noise
// of a shared machine and is smaller than each of the larger parts an idle
// served Conn no longer holds: its read buffer's bookkeeping (about 200
// bytes), its read state (320), the wake channels of its three mutexes
// (336), or the copy of the configuration, the context watches and the
// ping state, which together would take the Conn from the 352-byte size
// class to the 640-byte one.
const maxServeHeap = 900

// TestServeMemory: an idle connection served with Serve holds at most
// maxServeHeap bytes of heap, and no goroutine.
func TestServeMemory(t *testing.T) { testIdleMemory(t, "idle in Serve", serveMemory, maxServeHeap) }

// BenchmarkServeMemory reports the heap and stack bytes an idle connection
// served with Serve holds, at 2,000 connections.
func BenchmarkServeMemory(b *testing.B) { benchIdleMemory(b, serveMemory, 2000) }
