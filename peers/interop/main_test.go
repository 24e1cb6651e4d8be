package interop

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/leakcheck"
)

// TestMain runs the tests, prints the versions of the peers that ran, and
// fails the run when the tests leave goroutines behind. (internal/leakcheck
// is importable here: Go's internal rule goes by import path, and
// github.com/duplexws/duplex/peers lies under github.com/duplexws/duplex.)
func TestMain(m *testing.M) {
	code := m.Run()
	if s := versions.String(); s != "" {
		fmt.Println("interop peers:", s)
	}
	if code == 0 {
		if leaked := leakcheck.Check(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// versions records which version of each peer ran.
var versions versionLog

type versionLog struct {
	mu sync.Mutex
	m  map[string]string
}

// recordVersion logs the version of a peer and keeps it for the summary
// TestMain prints.
func recordVersion(t *testing.T, peer, version string) {
	t.Logf("peer version: %s %s", peer, version)
	versions.mu.Lock()
	defer versions.mu.Unlock()
	if versions.m == nil {
		versions.m = make(map[string]string)
	}
	versions.m[peer] = version
}

func (v *versionLog) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var parts []string
	for peer, version := range v.m {
		parts = append(parts, peer+" "+version)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// moduleVersion returns the version go.mod selects of a module. (A test
// binary's build information lists no dependencies.)
func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	return commandOutput(t, "go", "list", "-m", "-f", "{{.Version}}", path)
}
