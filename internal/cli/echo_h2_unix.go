//go:build unix

package cli

import (
	"os"
	"syscall"
)

// execWithEnv replaces the process with its own program, run with the
// same arguments and the environment variable name set to value.
func execWithEnv(name, value string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := []string{name + "=" + value}
	for _, kv := range os.Environ() {
		if len(kv) <= len(name) || kv[:len(name)+1] != name+"=" {
			env = append(env, kv)
		}
	}
	return syscall.Exec(exe, os.Args, env)
}
