package websocket

import (
	"context"
	"sync"
	"testing"
)

// awaiter reads a Conn as the gateway does (gateway/transport.go): it
// reads while messages come and then Awaits the next, with resume as the
// function Await calls, bound once.
type awaiter struct {
	c               *Conn
	resumeFn        func()
	delivered, ends *sync.WaitGroup
}

func (a *awaiter) resume() {
	for {
		ready, err := a.c.Await(a.resumeFn)
		if err != nil {
			a.c.CloseNow()
			a.ends.Done()
			return
		}
		if !ready {
			return
		}
		if _, _, err := a.c.Read(context.Background()); err != nil {
			a.c.CloseNow()
			a.ends.Done()
			return
		}
		a.delivered.Done()
	}
}

// awaitMemory is serveMemory for connections read as awaiter reads them:
// the heap and goroutine stacks per connection parked in Await after one
// message. The awaiter and its bound resume, 32 and 16 bytes, count.
func awaitMemory(tb testing.TB, n int) (heap, stack float64) {
	tb.Helper()
	return idleMemory(tb, n, func(c *Conn, delivered, ends *sync.WaitGroup) error {
		a := &awaiter{c: c, delivered: delivered, ends: ends}
		a.resumeFn = a.resume
		a.resume()
		return nil
	})
}

// maxAwaitHeap bounds the heap of a connection parked in Await, measured
// by awaitMemory: 824 to 845 bytes on linux/amd64 with Go 1.27.3, against
// 1,272 to 1,308 when a parked Conn kept its read state and its read
// buffer's bookkeeping. The margin, about 12%, absorbs the noise of a
// shared machine and is smaller than each of those parts: the read
// buffer's bookkeeping (192 bytes with its size class's rounding) and the
// read state (288).
const maxAwaitHeap = 950

// TestAwaitMemory: a connection parked in Await holds at most
// maxAwaitHeap bytes of heap, and no goroutine.
func TestAwaitMemory(t *testing.T) { testIdleMemory(t, "parked in Await", awaitMemory, maxAwaitHeap) }

// BenchmarkAwaitMemory reports the heap and stack bytes a connection
// parked in Await holds, at 2,000 connections.
func BenchmarkAwaitMemory(b *testing.B) { benchIdleMemory(b, awaitMemory, 2000) }
