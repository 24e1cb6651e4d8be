package websocket

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// handlerPatternMemory opens n connections to a server written as the
// README shows (a handler that calls Accept, then Read in a loop), each
// idle in Read after one message, and returns the server's heap and
// goroutine stacks per connection. The clients are bare sockets that
// write a handshake and one masked frame, so that what is measured is the
// server's.
func handlerPatternMemory(tb testing.TB, n int) (heap, stack float64) {
	tb.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
			wg.Done()
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	heap0, stack0 := heapAndStacks()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	wg.Add(n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := io.WriteString(c, memHandshake); err != nil {
			tb.Fatal(err)
		}
		br := bufio.NewReaderSize(c, 256)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				tb.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		if _, err := c.Write(memFrame); err != nil {
			tb.Fatal(err)
		}
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // every handler back in Read
	heap1, stack1 := heapAndStacks()
	return float64(heap1-heap0) / float64(n), float64(stack1-stack0) / float64(n)
}

// TestHandlerPatternMemory: an idle connection of the README's handler
// pattern holds under 7 KiB of heap. It held 13.5 KB while net/http's
// bufio.Reader and Writer, 4 KiB each, stayed reachable from the handler's
// connection (see releaseHijacked). Its goroutine's stack, about 8 KiB,
// is net/http's serve goroutine, which the pattern keeps.
func TestHandlerPatternMemory(t *testing.T) {
	heap, stack := handlerPatternMemory(t, 1000)
	t.Logf("per idle connection, handler pattern: %.0f B heap, %.0f B stacks", heap, stack)
	if heap > 7<<10 {
		t.Errorf("an idle connection of the handler pattern holds %.0f B of heap, want under 7 KiB", heap)
	}
}

// BenchmarkHandlerPatternMemory reports the heap and stack bytes an idle
// connection of the handler pattern holds, at 1,000 connections.
func BenchmarkHandlerPatternMemory(b *testing.B) { benchIdleMemory(b, handlerPatternMemory, 1000) }

// heapAndStacks collects garbage and reports the heap in use and the
// goroutine stacks.
func heapAndStacks() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// memHandshake opens a WebSocket of the memory tests' clients, and
// memFrame, a masked text frame "hi" (mask 0), is the message each sends.
const memHandshake = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

var memFrame = []byte{0x81, 0x82, 0, 0, 0, 0, 'h', 'i'}

// idleMeasure opens n connections served one way, lets them go idle and
// reports the heap and goroutine stack bytes each holds.
type idleMeasure func(tb testing.TB, n int) (heap, stack float64)

// benchIdleMemory reports what measure finds at n connections.
func benchIdleMemory(b *testing.B, measure idleMeasure, n int) {
	var heap, stack float64
	for b.Loop() {
		heap, stack = measure(b, n)
	}
	b.ReportMetric(heap, "heap-B/conn")
	b.ReportMetric(stack, "stack-B/conn")
	b.ReportMetric(0, "ns/op")
}

// testIdleMemory fails t if a connection idle in the way what names, as
// measure finds it at 2,000 connections, holds more than maxHeap bytes of
// heap or a goroutine.
func testIdleMemory(t *testing.T, what string, measure idleMeasure, maxHeap int) {
	t.Helper()
	if testing.Short() {
		t.Skip("opens 2,000 loopback connections")
	}
	heap, stack := measure(t, 2000)
	t.Logf("per connection %s: %.0f B heap, %.0f B stacks", what, heap, stack)
	if heap > float64(maxHeap) {
		t.Errorf("a connection %s holds %.0f B of heap, want at most %d", what, heap, maxHeap)
	}
	// A goroutine per connection would show as 2 KiB or more of stack.
	if stack > 512 {
		t.Errorf("a connection %s holds %.0f B of goroutine stacks, want none", what, stack)
	}
}
