//go:build !linux

package cli

// memoryLimitSupported reports whether --max-memory is enforced here: on
// Linux only, where RLIMIT_AS bounds what a process can map.
const memoryLimitSupported = false

// groupGoneProc is for Linux only: elsewhere ok is false.
func groupGoneProc(int) (gone, ok bool) { return false, false }
