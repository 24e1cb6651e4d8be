package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
	"github.com/duplexws/duplex/websocket"
)

// The connect storm of issue 11: N clients connect at once to one
// presence channel with join/leave on, spread over the nodes. Pushed one
// by one, every join reaches every member (N² pushes) and the storm fails
// with dial and subscribe timeouts, 1008 pong timeouts and a publish API
// that times out. The gateway batches join/leave per interval and sends
// counts above presence_count_above (100 in namespace crowd), so every
// client connects and subscribes, none is closed, and the API answers.
//
// N is 2,000 by default (make test); CLUSTER_FULL=1 (make cluster) runs
// the 10,000, or STORM_CLIENTS sets it.

// stormClients is N.
func stormClients(t *testing.T) int {
	if s := os.Getenv("STORM_CLIENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("STORM_CLIENTS=%q: want a positive number", s)
		}
		return n
	}
	if os.Getenv("CLUSTER_FULL") == "1" {
		return 10_000
	}
	return 2_000
}

const (
	// stormInFlight bounds the handshakes under way at once: a storm, but
	// within the listen backlog.
	stormInFlight = 1000
	// stormSources is how many loopback addresses (127.0.0.2 on) the
	// clients dial from: each stays far below the server's cap on
	// connections from one address that have not upgraded yet (256), as
	// clients behind many addresses would.
	stormSources = 64
	// stormConfig pings every client during the storm, so that a node too
	// busy to answer in time shows as 1008 closes.
	stormConfig = "ping_interval: 3s\npong_timeout: 10s\n"
	// stormPresenceTTL: each node adds its members again every third of
	// the presence TTL. The 3 s of the fault tests would make that 10,000
	// writes a second to the broker for the whole storm, which is the
	// refresh load of a 10,000-member channel at that TTL, not the storm's.
	stormPresenceTTL = 30 * time.Second
)

// memoryKind is a single node on the in-memory broker.
var memoryKind = brokerKind{"memory", func(t *testing.T) *testBroker {
	return &testBroker{url: ""}
}}

// TestPresenceStormOneNode: the storm on one node, on the memory broker.
func TestPresenceStormOneNode(t *testing.T) {
	t.Run(memoryKind.name, func(t *testing.T) { runStorm(t, memoryKind, 1) })
}

// TestPresenceStormAcrossNodes: the storm over three nodes, for every
// broker.
func TestPresenceStormAcrossNodes(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) { runStorm(t, kind, 3) })
}

// stormClient is one client of a storm and what it received.
type stormClient struct {
	cl    *testgateway.Client
	pubs  atomic.Int64
	other atomic.Int64 // presence pushes: join, leave, presence_count
}

func runStorm(t *testing.T, kind brokerKind, nodes int) {
	n := stormClients(t)
	raiseFileLimit(t, n)
	c := startClusterWith(t, kind, nodes, stormPresenceTTL, stormConfig)
	const channel = "crowd:storm"

	clients := make([]*stormClient, n)
	var (
		mu       sync.Mutex
		failures = map[string]int{}
		slowest  time.Duration
	)
	fail := func(what string, err error) {
		mu.Lock()
		failures[what+": "+failureKind(err)]++
		mu.Unlock()
	}
	sem := make(chan struct{}, stormInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sc := &stormClient{}
			ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
			defer cancel()
			began := time.Now()
			cl, err := testgateway.Dial(ctx, c.nodes[i%nodes].WebSocketURL(), &testgateway.DialOptions{
				LocalIP: net.IPv4(127, 0, 0, byte(2+i%stormSources)),
				OnPush: func(line []byte) {
					if bytes.HasPrefix(line, []byte(`{"push":"pub"`)) {
						sc.pubs.Add(1)
					} else {
						sc.other.Add(1)
					}
				},
			})
			if err != nil {
				fail("dial", err)
				return
			}
			sc.cl = cl
			clients[i] = sc
			if _, err := cl.Subscribe(ctx, channel, nil); err != nil {
				fail("subscribe", err)
				return
			}
			d := time.Since(began)
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
		})
	}
	defer closeAll(clients)
	wg.Wait()
	connected := time.Since(start)
	if len(failures) != 0 {
		t.Fatalf("%d clients on %d node(s): failures %v after %v", n, nodes, failures, connected.Round(time.Millisecond))
	}
	t.Logf("%d clients connected and subscribed to %s on %d node(s) in %v (slowest client %v)",
		n, channel, nodes, connected.Round(time.Millisecond), slowest.Round(time.Millisecond))

	// Every node counts every member, from the broker's view.
	c.eventually(30*time.Second, "presence counting every client on every node", func() error {
		for i := range c.nodes {
			var st struct {
				Clients int `json:"clients"`
			}
			if err := c.nodes[i].API(c.ctx, "presence_stats", map[string]any{"channel": channel}, &st); err != nil {
				return err
			}
			if st.Clients != n {
				return fmt.Errorf("node %d counts %d clients", i, st.Clients)
			}
		}
		return nil
	})
	counted := time.Since(start)

	// The publish API answers, and its publication reaches every member.
	pubStart := time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	_, err := c.nodes[0].Publish(ctx, channel, map[string]any{"after": "storm"})
	cancel()
	if err != nil {
		t.Fatalf("publish to %d members: %v", n, err)
	}
	answered := time.Since(pubStart)
	c.eventually(30*time.Second, "the publication reaching every member", func() error {
		missing := 0
		for _, sc := range clients {
			if sc.pubs.Load() != 1 {
				missing++
			}
		}
		if missing != 0 {
			return fmt.Errorf("%d members without exactly one publication", missing)
		}
		return nil
	})
	fanout := time.Since(pubStart)

	// Past the first pings: nobody was closed (1008 is a pong timeout).
	if wait := 3*time.Second - time.Since(start); wait > 0 {
		time.Sleep(wait + time.Second)
	}
	closed := map[string]int{}
	var pushes int64
	for _, sc := range clients {
		pushes += sc.other.Load()
		select {
		case <-sc.cl.Done():
			closed[strconv.Itoa(int(websocket.CloseStatus(sc.cl.Err())))]++
		default:
		}
	}
	if len(closed) != 0 {
		t.Errorf("connections closed during the storm, by close code: %v", closed)
	}
	// Count-only above 100 members: each member gets the joins of the
	// first hundred and a count per interval, not a join per other
	// member (about n/2 each).
	if perClient := float64(pushes) / float64(n); perClient > float64(n)/4 {
		t.Errorf("%.0f presence pushes per client: join/leave are not batched into counts", perClient)
	}
	t.Logf("storm of %d on %d node(s) [%s]: connected+subscribed %v, presence counted on every node %v, publish API answered in %v, delivered to all in %v, %.1f presence pushes per client",
		n, nodes, kind.name, connected.Round(time.Millisecond), counted.Round(time.Millisecond),
		answered.Round(time.Millisecond), fanout.Round(time.Millisecond), float64(pushes)/float64(n))
}

// closeAll closes the clients in parallel.
func closeAll(clients []*stormClient) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, sc := range clients {
		if sc == nil || sc.cl == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sc.cl.Close()
		})
	}
	wg.Wait()
}

// raiseFileLimit raises this process's open-file limit to its hard limit,
// which the nodes inherit, and skips the test if that cannot hold n client
// sockets with room to spare.
func raiseFileLimit(t *testing.T, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
		lim = raised
	}
	if need := uint64(n) + 1000; lim.Cur < need {
		t.Skipf("%d clients need about %d open files; the limit is %d", n, need, lim.Cur)
	}
}
