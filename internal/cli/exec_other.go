//go:build !unix

package cli

import (
	"errors"
	"os/exec"
	"time"
)

// errExecUnsupported says why duplex exec does not run here: it ends each
// program with its children through process groups and signals.
var errExecUnsupported = errors.New("duplex exec runs programs on Unix systems only")

func setProcessGroup(*exec.Cmd) {}

func endProcessGroup(int, <-chan struct{}, time.Duration) {}
