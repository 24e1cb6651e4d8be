package abuse

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// target is a duplex process under attack.
type target struct {
	t      *testing.T
	kind   string // "serve" or "echo"
	cmd    *exec.Cmd
	addr   string // host:port of the listener
	base   string // http://addr
	debug  string // the profiler's base URL (serve only)
	stderr *lockedBuffer
	exited chan struct{}
	http   *http.Client
	// probeChannel is the healthy client's channel (serve). Default:
	// health:probe, of baseConfig.
	probeChannel string
}

// lockedBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// firstLine sends the first line written to it on line and discards
// the rest.
type firstLine struct {
	line chan string
	mu   sync.Mutex
	buf  []byte
	sent bool
}

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.line <- string(w.buf[:i])
		w.sent, w.buf = true, nil
	}
	return len(p), nil
}

// config is a duplex serve configuration, as YAML.
type config map[string]any

// limits returns the configuration's limits section.
func (c config) limits() map[string]any {
	l, _ := c["limits"].(map[string]any)
	if l == nil {
		l = map[string]any{}
		c["limits"] = l
	}
	return l
}

// baseConfig is the configuration every serve case starts from: anonymous
// connections, generous command rates (the cases that test the rate say
// so), no per-address connection cap or handshake rate (the attackers of
// most cases share one address, and the defaults of duplex serve would
// refuse them before the attack under test; TestDefaultsProtect attacks
// the defaults), and one namespace per use.
func baseConfig() config {
	open := func(name string, extra map[string]any) map[string]any {
		ns := map[string]any{"name": name, "anonymous": true, "publish": "authenticated"}
		for k, v := range extra {
			ns[k] = v
		}
		return ns
	}
	return config{
		"listen": "127.0.0.1:0",
		"demo":   false,
		"auth":   map[string]any{"anonymous": true},
		"limits": map[string]any{"message_rate": 1000, "message_burst": 2000, "max_connections_per_ip": -1, "handshake_rate": -1},
		"namespaces": []map[string]any{
			open("health", nil), // the healthy client's own channel
			open("chat", map[string]any{"history_size": 100, "history_ttl": "10m", "presence": true, "join_leave": true}),
			open("drop", map[string]any{"history_size": 10, "slow_consumer": "drop_oldest"}),
			open("disc", map[string]any{"history_size": 10, "slow_consumer": "disconnect"}),
			open("last", map[string]any{"history_size": 10, "slow_consumer": "latest"}),
			open("big", map[string]any{"history_size": 100, "history_ttl": "10m"}),
		},
	}
}

// startServe starts duplex serve with cfg (nil: no configuration file,
// the demo defaults) and the profiler on a free port.
func startServe(t *testing.T, cfg config, args ...string) *target {
	t.Helper()
	// Info is the level that logs the profiler's address; serve logs
	// nothing per connection at it.
	argv := []string{"serve", "--listen", "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--log-level", "info"}
	if cfg != nil {
		data, err := yaml.Marshal(map[string]any(cfg))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "duplex.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, "--config", path)
	}
	g := start(t, "serve", `^duplex serve listening on http://(127\.0\.0\.1:\d+)/$`, append(argv, args...)...)
	re := regexp.MustCompile(`msg="profiler listening" addr=(\S+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(g.stderr.String()); m != nil {
			g.debug = "http://" + m[1]
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("duplex serve logged no profiler address; stderr:\n%s", g.stderr)
		}
	}
}

// startEcho starts duplex echo with args.
func startEcho(t *testing.T, args ...string) *target {
	t.Helper()
	return start(t, "echo", `^duplex echo listening on ws://(127\.0\.0\.1:\d+)$`,
		append([]string{"echo", "--listen", "127.0.0.1:0"}, args...)...)
}

func start(t *testing.T, kind, firstLinePattern string, args ...string) *target {
	t.Helper()
	g := &target{t: t, kind: kind, stderr: new(lockedBuffer), exited: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:     localDialer(healthyIP).DialContext,
			MaxIdleConns:    4,
			IdleConnTimeout: 5 * time.Second,
		}}}
	g.cmd = prioritized(duplexBin, args...)
	stdout := &firstLine{line: make(chan string, 1)}
	g.cmd.Stdout = stdout
	g.cmd.Stderr = g.stderr
	g.cmd.WaitDelay = time.Second
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := stdout.line
	go func() {
		g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Signal(os.Interrupt)
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			g.cmd.Process.Kill()
			<-g.exited
		}
		g.http.CloseIdleConnections()
		if t.Failed() {
			if s := g.stderr.String(); s != "" {
				t.Logf("duplex %s stderr (last 4 KiB):\n%s", kind, s[max(0, len(s)-4096):])
			}
		}
	})
	select {
	case line := <-lines:
		m := regexp.MustCompile(firstLinePattern).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("duplex %s said %q; stderr:\n%s", kind, line, g.stderr)
		}
		g.addr = m[1]
		g.base = "http://" + g.addr
	case <-g.exited:
		t.Fatalf("duplex %s exited before listening (%v); stderr:\n%s", kind, g.cmd.ProcessState, g.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("duplex %s printed no address; stderr:\n%s", kind, g.stderr)
	}
	return g
}

// Loopback source addresses: attackers come from attackerIP, the healthy
// client from healthyIP, so that per-address limits tell them apart.
var (
	attackerIP = net.IPv4(127, 0, 0, 1)
	healthyIP  = net.IPv4(127, 0, 0, 2)
)

// localDialer dials from ip.
func localDialer(ip net.IP) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
}

// get fetches path from the server as the healthy client.
func (g *target) get(path string) (int, string, error) {
	resp, err := g.http.Get(g.base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), nil
}

// metrics returns the samples of /metrics, by series (name{labels}).
func (g *target) metrics() map[string]float64 {
	g.t.Helper()
	code, body, err := g.get("/metrics")
	if err != nil || code != http.StatusOK {
		g.t.Fatalf("GET /metrics: %d %v", code, err)
	}
	m := make(map[string]float64)
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// metric returns one series of /metrics, 0 when absent.
func (g *target) metric(series string) float64 { return g.metrics()[series] }

// memory is the server's memory at one moment.
type memory struct {
	rss  uint64 // VmRSS
	heap uint64 // go_heap_objects_bytes; 0 for echo, which has no metrics
}

// rss reads the process's resident set size.
func (g *target) rss() uint64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return kb << 10
}

// memory reads the server's memory; with gc, after collecting its garbage
// (the profiler's heap endpoint runs a collection first).
func (g *target) memory(gc bool) memory {
	g.t.Helper()
	m := memory{rss: g.rss()}
	if g.kind != "serve" {
		return m
	}
	if gc {
		for range 2 {
			resp, err := g.http.Get(g.debug + "/debug/pprof/heap?gc=1")
			if err != nil {
				g.t.Fatalf("profiler: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		m.rss = g.rss()
	}
	m.heap = uint64(g.metric("go_heap_objects_bytes"))
	return m
}

// sampler records the highest memory seen while it runs.
type sampler struct {
	g    *target
	stop chan struct{}
	done chan struct{}
	max  memory
}

func (g *target) sample(every time.Duration) *sampler {
	s := &sampler{g: g, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.max.rss = max(s.max.rss, g.rss())
			if g.kind == "serve" {
				if code, body, err := g.get("/metrics"); err == nil && code == 200 {
					if m := regexp.MustCompile(`(?m)^go_heap_objects_bytes (\S+)$`).FindStringSubmatch(body); m != nil {
						v, _ := strconv.ParseFloat(m[1], 64)
						s.max.heap = max(s.max.heap, uint64(v))
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() memory {
	close(s.stop)
	<-s.done
	return s.max
}

// waitConnections waits until the server counts n client connections.
func (g *target) waitConnections(n float64, within time.Duration) {
	g.t.Helper()
	if g.kind != "serve" {
		return
	}
	deadline := time.Now().Add(within)
	for {
		v := g.metric("duplex_connections")
		if v == n {
			return
		}
		if time.Now().After(deadline) {
			g.t.Errorf("duplex_connections = %v %v after the attack, want %v", v, within, n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive fails the test if the server exited.
func (g *target) alive() {
	g.t.Helper()
	select {
	case <-g.exited:
		g.t.Fatalf("duplex %s exited: %v; stderr:\n%s", g.kind, g.cmd.ProcessState, g.stderr)
	default:
	}
}

// prioritized is the command of a process the attacker must not slow by
// its own CPU: the server under attack and the healthy client. On these
// machines the attacker shares the cores with them; on the internet it
// runs elsewhere. So, where the system lets us (as root), they run at a
// higher priority than the test process, which attacks: the server then
// pays for what the attack makes it do, and no more. nice(1) sets it
// before the program starts, so every thread of its runtime has it.
func prioritized(name string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("nice", append([]string{"-n", "-10", name}, args...)...)
}
