package websocket

import (
	"syscall"
	"unsafe"
)

// kernelQueued returns the bytes the kernel holds for a socket, received
// and not yet read, or 0 when it cannot tell.
func kernelQueued(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}

// kernelUnsent returns the bytes written to a TCP socket that its peer has
// not yet acknowledged, -1 when it cannot tell.
func kernelUnsent(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}
