package conformance

import (
	"testing"

	"github.com/duplexws/duplex/internal/leakcheck"
)

// TestMain fails the run if a case leaves a goroutine of the library or of
// the harness behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }
