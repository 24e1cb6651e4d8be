package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
	"github.com/duplexws/duplex/internal/testgateway"
	"github.com/duplexws/duplex/internal/testnats"
	"github.com/duplexws/duplex/internal/testredis"
)

// testBroker is a broker server a test started, with the faults it can
// suffer.
type testBroker struct {
	url     string
	restart func(t *testing.T, persist bool)
	pause   func(t *testing.T)
	resume  func(t *testing.T)
	pids    func() []int
}

// brokerKind starts one kind of broker server for a test.
type brokerKind struct {
	name  string
	start func(t *testing.T) *testBroker
}

var brokerKinds = []brokerKind{
	{"redis", func(t *testing.T) *testBroker {
		s := testredis.Start(t, testredis.Options{})
		return &testBroker{
			url: "redis://" + s.Addr() + "/0", restart: s.Restart, pause: s.Pause, resume: s.Resume,
			pids: func() []int { return []int{s.PID()} },
		}
	}},
	{"redis-cluster", func(t *testing.T) *testBroker {
		c := testredis.StartCluster(t, testredis.Options{})
		return &testBroker{
			url: c.URL(), restart: c.Restart, pause: c.Pause, resume: c.Resume,
			pids: func() []int {
				var pids []int
				for _, n := range c.Nodes() {
					pids = append(pids, n.PID())
				}
				return pids
			},
		}
	}},
	{"nats", func(t *testing.T) *testBroker {
		s := testnats.Start(t, testnats.Options{})
		return &testBroker{
			url: s.URL(), restart: s.Restart, pause: s.Pause, resume: s.Resume,
			pids: func() []int { return []int{s.PID()} },
		}
	}},
}

// forEachBroker runs f as a subtest for every kind of broker.
func forEachBroker(t *testing.T, f func(t *testing.T, kind brokerKind)) {
	for _, kind := range brokerKinds {
		t.Run(kind.name, func(t *testing.T) { f(t, kind) })
	}
}

// The configuration every node of a test cluster shares. Namespace room
// has history, presence and join/leave and lets clients publish; crowd is
// for connect storms: presence with counts above 100 members.
const configTemplate = `
demo: false
api_key: %[1]s
drain_window: 500ms
presence_ttl: %[4]s
presence_interval: 100ms
log:
  level: info
auth:
  algorithm: HS256
  secret: %[2]s
  anonymous: true
limits:
  max_connections_per_user: %[5]d
  message_rate: 100000
  max_channels: 16
  max_queue_bytes: 16777216
broker:
  url: %[3]q
namespaces:
  - name: room
    anonymous: true
    publish: authenticated
    history_size: 20000
    history_ttl: 10m
    presence: true
    join_leave: true
  - name: crowd
    anonymous: true
    publish: server
    history_size: 100
    history_ttl: 10m
    presence: true
    join_leave: true
    presence_count_above: 100
`

// Per-test settings of the configuration.
const (
	presenceTTL = 3 * time.Second
	userLimit   = 3
)

// cluster is a set of duplex serve processes on one broker.
type cluster struct {
	t      *testing.T
	broker *testBroker
	bin    string
	config string
	apiKey string
	secret string
	nodes  []*testgateway.Node
	ctx    context.Context // ends with the test, bounding every wait in it
}

// startCluster starts a broker of kind and n nodes on it.
func startCluster(t *testing.T, kind brokerKind, n int) *cluster {
	t.Helper()
	return startClusterWith(t, kind, n, presenceTTL, "")
}

// startClusterWith is startCluster with the nodes' presence_ttl set to ttl
// and extra top-level YAML appended to their configuration.
func startClusterWith(t *testing.T, kind brokerKind, n int, ttl time.Duration, extra string) *cluster {
	t.Helper()
	bin := duplexBinary(t)
	c := &cluster{t: t, bin: bin, apiKey: randomHex(16), secret: randomHex(32)}
	var cancel context.CancelFunc
	c.ctx, cancel = context.WithTimeout(context.Background(), testTimeout(t))
	t.Cleanup(cancel)
	c.broker = kind.start(t)
	c.config = filepath.Join(t.TempDir(), "duplex.yaml")
	cfg := fmt.Sprintf(configTemplate, c.apiKey, c.secret, c.broker.url, ttl, userLimit) + extra
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.nodes = make([]*testgateway.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { c.nodes[i], errs[i] = c.newNode() })
	}
	wg.Wait()
	for i, n := range c.nodes {
		if n != nil {
			t.Cleanup(func() { c.stopNode(i) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return c
}

// testTimeout bounds a whole test: the -timeout's deadline less a margin
// for cleanups, at most three minutes.
func testTimeout(t *testing.T) time.Duration {
	d := 3 * time.Minute
	if dl, ok := t.Deadline(); ok {
		d = min(d, time.Until(dl)-10*time.Second)
	}
	return d
}

func (c *cluster) newNode() (*testgateway.Node, error) {
	return testgateway.StartNode(c.ctx, testgateway.NodeOptions{Bin: c.bin, Config: c.config, APIKey: c.apiKey})
}

// stopNode ends node i, logging its output when the test failed.
func (c *cluster) stopNode(i int) {
	n := c.nodes[i]
	select {
	case <-n.Exited():
	default:
		n.Kill()
	}
	if c.t.Failed() {
		c.t.Logf("node %d (PID %d) logged:\n%s", i, n.PID(), lastLines(n.Log(), 40))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// token signs a connection token for user.
func (c *cluster) token(user string) string {
	tok, err := jwt.Sign(jwt.HS256, []byte(c.secret), "", map[string]any{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// dial connects a client of user ("" for anonymous) to node i; the client
// is closed when the test ends.
func (c *cluster) dial(i int, user string) *testgateway.Client {
	c.t.Helper()
	cl, err := c.tryDial(i, user)
	if err != nil {
		c.t.Fatalf("dial node %d as %q: %v", i, user, err)
	}
	return cl
}

func (c *cluster) tryDial(i int, user string) (*testgateway.Client, error) {
	opts := &testgateway.DialOptions{}
	if user != "" {
		opts.Token = c.token(user)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	cl, err := testgateway.Dial(ctx, c.nodes[i].WebSocketURL(), opts)
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(cl.Close)
	return cl, nil
}

// subscribe subscribes cl to channel, failing the test on an error.
func (c *cluster) subscribe(cl *testgateway.Client, channel string, since *testgateway.Position) testgateway.SubscribeResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	res, err := cl.Subscribe(ctx, channel, since)
	if err != nil {
		c.t.Fatalf("subscribe %s: %v", channel, err)
	}
	return res
}

// api calls the backend API of node i, failing the test on an error.
func (c *cluster) api(i int, method string, req, result any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	if err := c.nodes[i].API(ctx, method, req, result); err != nil {
		c.t.Fatalf("node %d: api %s: %v", i, method, err)
	}
}

// waitReady waits until every running node's /readyz answers want.
func (c *cluster) waitReady(want int, within time.Duration) {
	c.t.Helper()
	for i, n := range c.nodes {
		if err := waitReadyz(c.ctx, n, want, within); err != nil {
			c.t.Fatalf("node %d: %v", i, err)
		}
	}
}

func waitReadyz(ctx context.Context, n *testgateway.Node, want int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	last := 0
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		status, err := n.Ready(rctx)
		rcancel()
		if err == nil {
			last = status
			if status == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("/readyz answered %d, not %d, for %v", last, want, within)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// eventually retries f every 20 ms until it returns nil, for at most
// within; it fails the test with f's last error.
func (c *cluster) eventually(within time.Duration, what string, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || c.ctx.Err() != nil {
			c.t.Fatalf("%s: still %v after %v", what, err, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port nothing listens on (for a moment).
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// isUnavailable reports whether err is the API's answer while the broker
// is unreachable: HTTP 503 with error 113.
func isUnavailable(err error) bool {
	var e *testgateway.APIError
	return errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && e.Code == 113
}

// subscriber is a client subscribed to the channel under test, with the
// position its subscribe reply gave.
type subscriber struct {
	cl    *testgateway.Client
	node  int
	start position
}

// subscribeOn connects perNode clients to each of nodes and subscribes
// them to channel.
func (c *cluster) subscribeOn(channel string, perNode int, nodes ...int) []*subscriber {
	c.t.Helper()
	var subs []*subscriber
	for _, i := range nodes {
		for range perNode {
			cl := c.dial(i, "")
			res := c.subscribe(cl, channel, nil)
			subs = append(subs, &subscriber{cl: cl, node: i, start: position{Offset: res.Offset, Epoch: res.Epoch}})
		}
	}
	return subs
}

// apiPublisher publishes to channel through node i's API.
func (c *cluster) apiPublisher(i int, channel string) publishFunc {
	return func(ctx context.Context, data any) (position, error) { return c.nodes[i].Publish(ctx, channel, data) }
}

// clientPublisher publishes to channel from cl.
func clientPublisher(cl *testgateway.Client, channel string) publishFunc {
	return func(ctx context.Context, data any) (position, error) { return cl.Publish(ctx, channel, data) }
}

// streamEnd reads the channel's position through node i's API.
func (c *cluster) streamEnd(i int, channel string) position {
	c.t.Helper()
	var h struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	c.api(i, "history", map[string]any{"channel": channel, "limit": 0}, &h)
	return position{Offset: h.Offset, Epoch: h.Epoch}
}

// lastPosition is where the last pub or gap event of events leaves a
// subscriber.
func lastPosition(events []testgateway.Event) position {
	for i := len(events) - 1; i >= 0; i-- {
		switch e := events[i]; e.Push {
		case "pub":
			return position{Offset: e.Offset, Epoch: e.Epoch}
		case "gap":
			return position{Offset: e.To, Epoch: e.Epoch}
		}
	}
	return position{}
}

// verifySubscribers waits (up to within) for every subscriber to reach the
// channel's end, read through node from, and checks what each received
// against pubs. It returns the reports, by subscriber.
func (c *cluster) verifySubscribers(subs []*subscriber, channel string, from int, pubs *published, within time.Duration) []*streamReport {
	c.t.Helper()
	final := c.streamEnd(from, channel)
	ctx, cancel := context.WithTimeout(c.ctx, within)
	defer cancel()
	reports := make([]*streamReport, len(subs))
	for i, s := range subs {
		err := s.cl.Wait(ctx, channel, func(ev []testgateway.Event) bool { return lastPosition(ev) == final })
		events := s.cl.Events(channel)
		r := checkStream(events, s.start)
		reports[i] = r
		if err != nil {
			c.t.Errorf("subscriber %d on node %d: not at the stream's end %d/%s: %v; %s", i, s.node, final.Offset, final.Epoch, err, r.summary())
		}
		if problems := r.verify(pubs, final); len(problems) > 0 {
			c.t.Errorf("subscriber %d on node %d (%s):\n\t%s", i, s.node, r.summary(), strings.Join(problems, "\n\t"))
		}
		for _, e := range events {
			if e.Push == "malformed" {
				c.t.Errorf("subscriber %d on node %d: malformed push %s", i, s.node, e.Data)
			}
		}
	}
	return reports
}
