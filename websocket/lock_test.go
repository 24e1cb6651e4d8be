package websocket

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// ctxMutex excludes: goroutines that take it in turn, some giving up on a
// context, never overlap, and the ones that did not give up all get it.
func TestCtxMutexExcludes(t *testing.T) {
	var m ctxMutex
	closed := make(chan struct{})
	var inside, count int // under m
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				if (g+i)%5 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Microsecond)
				}
				err := m.lock(ctx, closed)
				cancel()
				if err != nil {
					continue // gave up
				}
				inside++
				if inside != 1 {
					t.Error("two goroutines hold the mutex")
				}
				count++
				inside--
				m.unlock()
			}
		}()
	}
	wg.Wait()
	if !m.tryLock() {
		t.Fatal("the mutex is held after everyone left")
	}
	m.unlock()
	if count < 8*2000*4/5 {
		t.Fatalf("%d locks taken, want at least every one without a deadline", count)
	}
}

// A waiter gives up when its context ends or the connection closes, and
// wakes when the holder unlocks.
func TestCtxMutexWaits(t *testing.T) {
	var m ctxMutex
	closed := make(chan struct{})
	if !m.tryLock() || m.tryLock() {
		t.Fatal("tryLock: want the first to win and the second to fail")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := m.lock(ctx, closed); err != context.DeadlineExceeded {
		t.Fatalf("lock of a held mutex past the deadline = %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- m.lock(context.Background(), closed) }()
	time.Sleep(10 * time.Millisecond)
	m.unlock()
	if err := waitResult(t, got, 5*time.Second, "the waiter"); err != nil {
		t.Fatalf("the waiter got %v after unlock", err)
	}
	go func() { got <- m.lock(context.Background(), closed) }()
	time.Sleep(10 * time.Millisecond)
	close(closed)
	if err := waitResult(t, got, 5*time.Second, "the waiter"); err != errLockClosed {
		t.Fatalf("the waiter got %v after close, want errLockClosed", err)
	}
	// A free mutex is taken even under an ended context.
	m.unlock()
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := m.lock(done, closed); err != nil {
		t.Fatalf("lock of a free mutex under an ended context = %v", err)
	}
}

// The uncontended path every write takes twice (msgMu, frameMu).
func BenchmarkCtxMutex(b *testing.B) {
	var m ctxMutex
	ctx := context.Background()
	closed := make(chan struct{})
	for b.Loop() {
		m.lock(ctx, closed)
		m.unlock()
	}
}

// A mutex nobody has waited for holds no channel, and a wait makes the one
// channel every later wait shares: after the first, contention allocates
// nothing.
func TestCtxMutexWakeChannelLazy(t *testing.T) {
	var m ctxMutex
	ctx := context.Background()
	closed := make(chan struct{})
	m.lock(ctx, closed)
	m.unlock()
	if m.wake.Load() != nil {
		t.Fatal("an uncontended lock and unlock made the wake channel")
	}
	contend := func() {
		m.lock(ctx, closed)
		got := make(chan error, 1)
		go func() { got <- m.lock(ctx, closed) }()
		for m.waiters.Load() == 0 {
			runtime.Gosched()
		}
		m.unlock()
		if err := waitResult(t, got, 5*time.Second, "the waiter"); err != nil {
			t.Fatalf("the waiter got %v", err)
		}
		m.unlock()
	}
	contend()
	first := m.wake.Load()
	if first == nil {
		t.Fatal("a wait left no wake channel")
	}
	contend()
	if m.wake.Load() != first {
		t.Fatal("a second wait made another wake channel")
	}
}

// The contended path: goroutines taking turns, waiters woken by unlock.
func BenchmarkCtxMutexContended(b *testing.B) {
	var m ctxMutex
	ctx := context.Background()
	closed := make(chan struct{})
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.lock(ctx, closed)
			m.unlock()
		}
	})
}
