//go:build !linux

package websocket

// kernelQueued: only Linux tells, among the systems this package reads raw
// on; elsewhere a message grows from what the buffer holds.
func kernelQueued(fd uintptr) int { return 0 }

// kernelUnsent: elsewhere the drain after a close cannot tell whether the
// close frame has left (awaitSent).
func kernelUnsent(fd uintptr) int { return -1 }
