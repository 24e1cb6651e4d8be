package testredis

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters without replicas, each a
// Server of this package, slots spread evenly by redis-cli --cluster
// create.
type Cluster struct {
	opts  Options
	nodes []*Server
}

// ClusterSize is the number of masters of a Cluster.
const ClusterSize = 3

// StartCluster starts a Cluster for tb and stops it in tb's cleanup. It
// skips or fails tb as Require does when the servers are not installed.
func StartCluster(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	Require(tb)
	c, err := NewCluster(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// NewCluster starts a Cluster, for a caller that manages its lifetime
// itself: the caller must Close it. Options.TLS is not supported.
func NewCluster(opts Options) (*Cluster, error) {
	opts.cluster = true
	c := &Cluster{opts: opts, nodes: make([]*Server, ClusterSize)}
	errs := make([]error, ClusterSize)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.nodes[i], errs[i] = New(opts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.Command("redis-cli", args...)
	if opts.Password != "" {
		// REDISCLI_AUTH keeps the password off the command line.
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+opts.Password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("testredis: redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.waitOK(60 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node reports cluster_state:ok and knows every
// other. A node that still misses one after meetAgain is told to meet the
// others again: on a loaded machine a cluster-bus handshake can time out,
// and a node it dropped then waited for gossip that did not bring it back
// within a minute (CI, once in many runs).
func (c *Cluster) waitOK(timeout time.Duration) error {
	const meetAgain = 3 * time.Second
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		nextMeet := time.Now().Add(meetAgain)
		for {
			info, err := n.Do("CLUSTER", "INFO")
			s, _ := info.(string)
			if err == nil && strings.Contains(s, "cluster_state:ok") &&
				strings.Contains(s, fmt.Sprintf("cluster_known_nodes:%d", ClusterSize)) {
				break
			}
			if time.Now().After(nextMeet) {
				c.meet(n) // a node it knows already is left as it is
				nextMeet = time.Now().Add(meetAgain)
			}
			if time.Now().After(deadline) {
				var state []string
				for _, line := range strings.Fields(s) {
					if strings.HasPrefix(line, "cluster_state:") || strings.HasPrefix(line, "cluster_known_nodes:") ||
						strings.HasPrefix(line, "cluster_slots_") {
						state = append(state, line)
					}
				}
				return fmt.Errorf("testredis: cluster not ok after %v: node %s: %v %s", timeout, n.Addr(), err, strings.Join(state, " "))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// meet asks n to meet every other node of the cluster (CLUSTER MEET).
func (c *Cluster) meet(n *Server) {
	for _, o := range c.nodes {
		if o == n {
			continue
		}
		host, port, err := net.SplitHostPort(o.Addr())
		if err != nil {
			continue
		}
		n.Do("CLUSTER", "MEET", host, port, strconv.Itoa(o.bus))
	}
}

// Nodes returns the masters.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL returns redis://[:password@]host1:port1,host2:port2,host3:port3, the
// form of the broker's ParseURL for a Cluster.
func (c *Cluster) URL() string {
	u := url.URL{Scheme: "redis", Host: strings.Join(c.Addrs(), ",")}
	if c.opts.Password != "" {
		u.User = url.UserPassword("", c.opts.Password)
	}
	return u.String()
}

// Cut breaks every client connection to every node, on all nodes at
// once: a client that reconnects quickly must not see one fault per node.
func (c *Cluster) Cut(t *testing.T) {
	t.Helper()
	admins := make([]*adminConn, len(c.nodes))
	for i, n := range c.nodes {
		a, err := dialAdmin(n.Addr(), n.TLSConfig(), n.opts.Password, 5*time.Second)
		if err != nil {
			t.Fatalf("testredis: Cut: %v", err)
		}
		defer a.close()
		admins[i] = a
	}
	errs := make([]error, len(admins))
	var wg sync.WaitGroup
	for i, a := range admins {
		wg.Go(func() { errs[i] = a.kill() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// Restart stops every node and starts them again on their ports, keeping
// their data with persist, empty otherwise; the nodes keep their slots. It
// returns when the cluster is ok again.
func (c *Cluster) Restart(t *testing.T, persist bool) {
	t.Helper()
	for _, n := range c.nodes {
		if err := n.shutdown(persist); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitOK(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// Pause stops every node's process (SIGSTOP).
func (c *Cluster) Pause(t *testing.T) {
	t.Helper()
	for _, n := range c.nodes {
		n.Pause(t)
	}
}

// Resume continues every node (SIGCONT).
func (c *Cluster) Resume(t *testing.T) {
	t.Helper()
	for _, n := range c.nodes {
		n.Resume(t)
	}
}

// Close stops every node. It may be called again.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
