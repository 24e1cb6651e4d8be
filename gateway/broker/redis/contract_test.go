package redis_test

import (
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/gateway/brokertest"
	"github.com/duplexws/duplex/internal/testredis"
)

// testOptions are quicker to notice a fault than the defaults, so that the
// Faults subtests do not wait long; they stay well above the pauses of a
// loaded test machine.
func testOptions(o redis.Options) redis.Options {
	o.HealthInterval = 250 * time.Millisecond
	o.HealthTimeout = time.Second
	o.DialTimeout = 2 * time.Second
	return o
}

// newBrokerFunc returns a brokertest newBroker that makes brokers of o.
func newBrokerFunc(o redis.Options) func(t *testing.T) broker.Broker {
	return func(t *testing.T) broker.Broker {
		b, err := redis.New(testOptions(o))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// isolated returns o under another prefix.
func isolated(o redis.Options) redis.Options {
	o.Prefix = "duplex-isolated"
	return o
}

// TestContract runs the contract suite against one standalone server: its
// faults and prefix isolation, and a database other than 0.
func TestContract(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	o := redis.Options{Addrs: []string{srv.Addr()}}
	t.Run("Standalone", func(t *testing.T) {
		brokertest.Run(t, newBrokerFunc(o), brokertest.Options{
			Server:      srv,
			NewIsolated: newBrokerFunc(isolated(o)),
		})
	})
	t.Run("FourShards", func(t *testing.T) {
		// Shards that hold no channel must come back after a fault too:
		// before they woke themselves, a node with an empty shard never
		// reported its link back.
		o := o
		o.Shards = 4
		brokertest.Run(t, newBrokerFunc(o), brokertest.Options{Server: srv})
	})
	t.Run("DB", func(t *testing.T) {
		o := o
		o.DB = 3
		brokertest.Run(t, newBrokerFunc(o), brokertest.Options{})
	})
}

// TestContractPassword: a server that requires a password, with Options
// from the URL the CLI would be given.
func TestContractPassword(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Password: "pa:ss@w/rd"})
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, newBrokerFunc(o), brokertest.Options{})
}

// TestContractTLS: a server that speaks TLS only.
func TestContractTLS(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{TLS: true})
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	o.TLS = srv.TLSConfig()
	brokertest.Run(t, newBrokerFunc(o), brokertest.Options{})
}

// TestCluster runs the contract suite against a three-master Redis
// Cluster, with its faults and prefix isolation, and the tests that need a
// Cluster: it starts slowly, so once.
func TestCluster(t *testing.T) {
	c := testredis.StartCluster(t, testredis.Options{})
	o, err := redis.ParseURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	if !o.Cluster {
		t.Fatalf("ParseURL(%q): not a Cluster", c.URL())
	}
	t.Run("Contract", func(t *testing.T) {
		brokertest.Run(t, newBrokerFunc(o), brokertest.Options{
			Server:      c,
			NewIsolated: newBrokerFunc(isolated(o)),
		})
	})
	t.Run("Layout", func(t *testing.T) { testClusterLayout(t, c) })
	t.Run("Resubscribe", func(t *testing.T) { testResubscribeMany(t, c, redis.Options{Addrs: c.Addrs()}) })
	// Last: it changes the slots' layout.
	t.Run("SlotMigration", func(t *testing.T) { testSlotMigration(t, c) })
}
