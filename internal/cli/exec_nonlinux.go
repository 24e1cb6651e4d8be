//go:build !linux

package cli

import "errors"

// memoryLimitSupported reports whether --max-memory is enforced here: on
// Linux only, where RLIMIT_AS bounds what a process can map.
const memoryLimitSupported = false

func execWithMemoryLimit(uint64, string, []string) error {
	return errors.New("--max-memory is supported on Linux only")
}

// groupGoneProc is for Linux only: elsewhere ok is false.
func groupGoneProc(int) (gone, ok bool) { return false, false }
