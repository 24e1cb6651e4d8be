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
func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
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
