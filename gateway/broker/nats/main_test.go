package nats_test

import (
	"testing"

	"github.com/duplexws/duplex/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
