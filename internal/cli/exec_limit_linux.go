package cli

import (
	"os"
	"os/exec"
	"syscall"
)

// memoryLimitSupported reports whether --max-memory is enforced here.
const memoryLimitSupported = true

// execWithMemoryLimit replaces duplex with program, after limiting the
// address space (RLIMIT_AS) to limit bytes, which exec keeps. It is the
// first step of each program run under --max-memory, so that the limit
// holds from the program's first instruction, which a prlimit(2) from
// outside after the start could not promise. It returns only on failure.
func execWithMemoryLimit(limit uint64, program string, args []string) error {
	path, err := exec.LookPath(program)
	if err != nil {
		return err
	}
	argv := append([]string{program}, args...)
	env := os.Environ()
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		return err
	}
	return syscall.Exec(path, argv, env)
}
