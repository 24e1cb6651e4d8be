package websocket

import (
	"context"
	"errors"
)

var errLockClosed = errors.New("websocket: connection closed while waiting")

// ctxMutex is a mutex whose Lock gives up when a context ends. It is a
// channel of one slot, so waiting on it costs no allocation.
type ctxMutex struct {
	ch chan struct{}
}

func newCtxMutex() ctxMutex { return ctxMutex{ch: make(chan struct{}, 1)} }

// lock takes the mutex, or gives up with ctx's error when ctx ends, or
// with errLockClosed when closed is closed first.
func (m *ctxMutex) lock(ctx context.Context, closed <-chan struct{}) error {
	select {
	case m.ch <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return errLockClosed
	}
}

// tryLock takes the mutex if it is free.
func (m *ctxMutex) tryLock() bool {
	select {
	case m.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

func (m *ctxMutex) unlock() { <-m.ch }
