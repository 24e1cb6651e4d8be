package websocket

import (
	"context"
	"errors"
	"sync/atomic"
)

var errLockClosed = errors.New("websocket: connection closed while waiting")

// ctxMutex is a mutex whose lock gives up when a context ends. Taking a
// free one and releasing one nobody waits for are single atomic operations;
// a goroutine that must wait sleeps on a channel of one slot, through
// which unlock wakes a waiter, so waiting costs no allocation either.
type ctxMutex struct {
	held    atomic.Bool
	waiters atomic.Int32  // goroutines in lock's slow path
	wake    chan struct{} // capacity 1: unlock's signal to a waiter
}

func newCtxMutex() ctxMutex { return ctxMutex{wake: make(chan struct{}, 1)} }

// lock takes the mutex, or gives up with ctx's error when ctx ends, or
// with errLockClosed when closed is closed first. A free mutex is taken
// even if ctx has ended.
func (m *ctxMutex) lock(ctx context.Context, closed <-chan struct{}) error {
	if m.held.CompareAndSwap(false, true) {
		return nil
	}
	// Counted before trying again: an unlock that follows either sees the
	// count and wakes someone, or came first and left the mutex free for
	// the try below.
	m.waiters.Add(1)
	defer m.waiters.Add(-1)
	for {
		if m.held.CompareAndSwap(false, true) {
			return nil
		}
		select {
		case <-m.wake: // try again; another goroutine may have been faster
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			return errLockClosed
		}
	}
}

// tryLock takes the mutex if it is free.
func (m *ctxMutex) tryLock() bool { return m.held.CompareAndSwap(false, true) }

func (m *ctxMutex) unlock() {
	m.held.Store(false)
	if m.waiters.Load() > 0 {
		select {
		case m.wake <- struct{}{}:
		default: // a wake is pending already
		}
	}
}
