package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/leakcheck"
	"github.com/duplexws/duplex/internal/testgateway"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if leaked := leakcheck.Check(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// duplexBinary builds cmd/duplex once for the whole run, or returns
// DUPLEX_BIN when the environment names a binary already built.
func duplexBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts duplex serve processes")
	}
	binOnce.Do(func() {
		if p := os.Getenv("DUPLEX_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "duplex-cluster-")
		if binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, binErr = testgateway.Build(ctx, binDir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
