//go:build unix

package websocket

import (
	"errors"
	"syscall"
)

const canReadRaw = true

var errWouldBlock = errors.New("websocket: would block")

// readFD reads once from a non-blocking descriptor: errWouldBlock when
// nothing has arrived.
func readFD(fd uintptr, p []byte) (int, error) { return onceFD(syscall.Read, fd, p) }

// writeFD writes once to a non-blocking descriptor: errWouldBlock when the
// socket has no room (TryWritePrepared).
func writeFD(fd uintptr, p []byte) (int, error) { return onceFD(syscall.Write, fd, p) }

// onceFD calls op once on a non-blocking descriptor, again if a signal
// interrupted it.
func onceFD(op func(int, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	for {
		n, err := op(int(fd), p)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, err
	}
}
