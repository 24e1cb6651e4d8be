package nats_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/gateway/brokertest"
	"github.com/duplexws/duplex/internal/testnats"
)

// testOptions are the options of the tests' brokers: the defaults, but
// reconnecting sooner.
func testOptions(s *testnats.Server, prefix string) nats.Options {
	return nats.Options{
		Servers:       []string{s.Addr()},
		Prefix:        prefix,
		ReconnectWait: 50 * time.Millisecond,
	}
}

func randomPrefix(name string) string {
	var b [4]byte
	rand.Read(b[:])
	return name + "_" + hex.EncodeToString(b[:])
}

// TestContract runs the contract suite against brokers on one
// nats-server, with the faults and the isolation of prefixes.
func TestContract(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	prefix, other := randomPrefix("contract"), randomPrefix("isolated")
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		return nats.New(testOptions(s, prefix))
	}, brokertest.Options{
		Server: s,
		NewIsolated: func(t *testing.T) broker.Broker {
			return nats.New(testOptions(s, other))
		},
	})
}
