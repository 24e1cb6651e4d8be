// Package leakcheck fails a test binary that leaves goroutines running.
// Each package whose code starts goroutines calls it from TestMain.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and then checks that every goroutine they started
// has ended, allowing stragglers a few seconds to finish. It exits the
// process with the tests' status, or 1 when goroutines are left.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := Check(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Check waits up to wait for the goroutines other than the test binary's
// own to end, and returns the stacks of those still running, or "".
func Check(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		leaked := interesting()
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func interesting() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if g == "" || isStandard(g) {
			continue
		}
		out = append(out, g)
	}
	return out
}

// isStandard reports whether g is a goroutine of the runtime or the testing
// package rather than one the tests started.
func isStandard(g string) bool {
	for _, s := range []string{
		"leakcheck.interesting(", // this goroutine
		"testing.(*M).",
		"testing.tRunner(",
		"testing.runFuzzing(",
		"testing.(*F).Fuzz",
		"runtime.goexit0",
		"created by runtime.gc",
		"created by os/signal.Notify",
		"signal.signal_recv",
		"runtime.ensureSigM",
		"runtime/trace.Start",
	} {
		if strings.Contains(g, s) {
			return true
		}
	}
	return false
}
