//go:build unix

package websocket

import "syscall"

// writeFD writes once to a non-blocking descriptor: errWouldBlock when the
// socket has no room.
func writeFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), p)
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
