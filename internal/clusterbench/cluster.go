package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
	"github.com/duplexws/duplex/internal/testnats"
	"github.com/duplexws/duplex/internal/testredis"
)

// config is every node's configuration. Namespace bench keeps a little
// history so that every publication has an offset, by which the workers
// find a lost or repeated one; storm is the demo namespace's presence
// (presence, join/leave, counts above 1,000 members). No limit of the
// defaults is raised but the command rate, which subscribing to two
// channels at connect does not approach anyway, and the per-address
// connection cap and handshake rate of duplex serve: each of the workers'
// few loopback source addresses stands for thousands of clients. Nodes
// stop at once: no clients are left to spread their closes over time.
const config = `demo: false
drain_window: 100ms
auth:
  anonymous: true
limits:
  message_rate: 1000
  max_channels: 4
  max_connections_per_ip: -1
  handshake_rate: -1
namespaces:
  - name: bench
    anonymous: true
    publish: server
    history_size: 10
    history_ttl: 5m
  - name: storm
    anonymous: true
    publish: server
    history_size: 10
    history_ttl: 5m
    presence: true
    join_leave: true
`

// setup is a broker and a number of nodes on it.
type setup struct {
	broker string // memory, redis or nats
	nodes  int
}

func (s setup) String() string { return fmt.Sprintf("%s × %d", s.broker, s.nodes) }

// parseSetups reads "memory:1,redis:4,nats:4".
func parseSetups(list string) ([]setup, error) {
	var out []setup
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, count, _ := strings.Cut(item, ":")
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("setup %q: want broker:nodes", item)
		}
		switch name {
		case "memory":
			if n != 1 {
				return nil, fmt.Errorf("setup %q: the memory broker serves one node", item)
			}
		case "redis", "nats":
		default:
			return nil, fmt.Errorf("setup %q: broker is memory, redis or nats", item)
		}
		out = append(out, setup{name, n})
	}
	return out, nil
}

// cluster is a broker server (none for memory) and duplex serve nodes on
// it, all started by the benchmark and stopped by it.
type cluster struct {
	setup     setup
	nodes     []*testgateway.Node
	debug     []string // each node's profiler, http://host:port
	brokerPID int      // 0 for the memory broker
	closeBkr  func()
}

// startCluster starts the setup's broker and nodes.
func startCluster(ctx context.Context, bin, configPath string, s setup) (*cluster, error) {
	c := &cluster{setup: s, closeBkr: func() {}}
	var args []string
	switch s.broker {
	case "redis":
		// No persistence: the benchmark measures delivery, not disks.
		srv, err := testredis.New(testredis.Options{})
		if err != nil {
			return nil, err
		}
		c.brokerPID, c.closeBkr = srv.PID(), func() { srv.Close() }
		args = []string{"--broker", "redis://" + srv.Addr() + "/0"}
	case "nats":
		srv, err := testnats.New(testnats.Options{})
		if err != nil {
			return nil, err
		}
		c.brokerPID, c.closeBkr = srv.PID(), func() { srv.Close() }
		// The server's own address, not the test proxy's, which would put
		// this process between the nodes and the server.
		args = []string{"--broker", "nats://" + srv.ServerAddr()}
	}
	c.nodes = make([]*testgateway.Node, s.nodes)
	c.debug = make([]string, s.nodes)
	errs := make([]error, s.nodes)
	var wg sync.WaitGroup
	for i := range s.nodes {
		wg.Go(func() {
			debug, err := freeAddr(profilerIP)
			if err != nil {
				errs[i] = err
				return
			}
			c.debug[i] = "http://" + debug
			c.nodes[i], errs[i] = testgateway.StartNode(ctx, testgateway.NodeOptions{
				Bin:    bin,
				Config: configPath,
				Args:   append([]string{"--log-level", "warn", "--debug-listen", debug}, args...),
				Log:    os.Stderr,
			})
			if errs[i] == nil {
				errs[i] = waitForProfiler(c.debug[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// close stops the nodes (SIGTERM, then SIGKILL) and the broker.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n != nil {
			wg.Go(func() { n.Stop(10 * time.Second) })
		}
	}
	wg.Wait()
	c.closeBkr()
}

func (c *cluster) urls() []string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.WebSocketURL())
	}
	return urls
}

// rss collects every node's garbage (the profiler's heap profile runs a
// GC) and returns the nodes' resident memory, summed.
func (c *cluster) rss() (int64, error) {
	var sum int64
	for i, n := range c.nodes {
		for range 2 {
			resp, err := http.Get(c.debug[i] + "/debug/pprof/heap?gc=1")
			if err != nil {
				return 0, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		st, err := n.Stat()
		if err != nil {
			return 0, err
		}
		sum += st.RSS
	}
	return sum, nil
}

// waitForProfiler waits for a node's profiler, which may start listening
// after the node announced its own address.
func waitForProfiler(base string) error {
	for until := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/debug/pprof/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			// Something else answers there: the node could not listen.
			err = fmt.Errorf("%s answers %s, not the profiler", base, resp.Status)
		}
		if time.Now().After(until) {
			return err
		}
	}
}

// profilerIP is where the nodes' profilers listen: not 127.0.0.1, where
// each node's own listener takes a port of the system's choosing, which
// could be one that freeAddr had just found free for a profiler.
const profilerIP = "127.0.3.1"

// freeAddr returns an address of ip that was free a moment ago.
func freeAddr(ip string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// writeConfig writes config into dir and returns its path.
func writeConfig(dir string) (string, error) {
	path := filepath.Join(dir, "duplex.yaml")
	return path, os.WriteFile(path, []byte(config), 0o600)
}

// profile starts a CPU profile of the first node for d, to be written to
// dir as <broker>-<nodes>-<phase>.pprof, and returns a function that waits
// for it. With dir "" it does nothing. A profile that cannot be taken is
// reported on stderr; the benchmark goes on without it.
func (c *cluster) profile(dir, phase string, d time.Duration) (wait func()) {
	if dir == "" {
		return func() {}
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%d-%s.pprof", c.setup.broker, c.setup.nodes, strings.ReplaceAll(phase, " ", "-")))
	secs := max(1, int(d/time.Second)-1) // within the phase: it ends with d
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := func() error {
			resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", c.debug[0], secs))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("profiler answered %s", resp.Status)
			}
			f, err := os.Create(name)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
		if err != nil {
			fmt.Fprintf(os.Stderr, "clusterbench: profile %s: %v\n", name, err)
		}
	}()
	return func() { <-done }
}
