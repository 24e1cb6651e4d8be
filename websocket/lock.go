package websocket

import (
	"context"
	"errors"
	"sync/atomic"
)

var errLockClosed = errors.New("websocket: connection closed while waiting")

// ctxMutex is a mutex whose lock gives up when a context ends; its zero
// value is unlocked. Taking a free one and releasing one nobody waits for
// are single atomic operations; a goroutine that must wait sleeps on a
// channel of one slot, through which unlock wakes a waiter. The channel is
// made at the first wait, not before: most of a Conn's mutexes never see
// one, and an idle connection would hold three channels (about 100 bytes
// each) for nothing. Later waits cost no allocation.
type ctxMutex struct {
	held    atomic.Bool
	waiters atomic.Int32                  // goroutines in lock's slow path
	wake    atomic.Pointer[chan struct{}] // capacity 1: unlock's signal to a waiter; nil until a wait
}

// wakeChan returns the channel of the mutex's wake signal, made by the
// first caller.
func (m *ctxMutex) wakeChan() chan struct{} {
	if p := m.wake.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{}, 1)
	if m.wake.CompareAndSwap(nil, &ch) {
		return ch
	}
	return *m.wake.Load()
}

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
	wake := m.wakeChan()
	for {
		if m.held.CompareAndSwap(false, true) {
			return nil
		}
		select {
		case <-wake: // try again; another goroutine may have been faster
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
		case m.wakeChan() <- struct{}{}:
		default: // a wake is pending already
		}
	}
}
