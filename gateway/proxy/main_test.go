package proxy_test

import (
	"testing"

	"github.com/duplexws/duplex/internal/leakcheck"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }
