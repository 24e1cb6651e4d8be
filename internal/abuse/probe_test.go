package abuse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// probe is the healthy client: from its own address, it measures round
// trips one after another for as long as the case runs. Against serve a
// round trip is a publication to its own channel until it comes back
// (command, broker, fan-out, queue, writer); against echo, a message
// until its echo.
//
// It runs in a process of its own (this test binary, started again with
// DUPLEX_ABUSE_PROBE set; see probeMain), as a healthy client on another
// machine would: in the test process its reads would wait behind the
// attacker's goroutines in the Go scheduler, and the server would be
// charged with the attacker's CPU.
type probe struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.Closer
	done    chan struct{} // closed when the process has exited and its output is read
	mu      sync.Mutex
	samples []time.Duration
	errs    []error
	stopped bool
}

// probeTimeout is the longest round trip the probe waits for; one that
// takes longer counts as this long, and as an error.
const probeTimeout = 5 * time.Second

// probeInterval is the pause between round trips: at most about 80 a
// second, enough samples for a p99, too few to load the server, and
// inside the default command rate (100 a second) that some cases attack.
const probeInterval = 12 * time.Millisecond

// Environment of the probe process.
const (
	probeEnv        = "DUPLEX_ABUSE_PROBE" // "kind url channel source-ip"
	probeMaxRuntime = 15 * time.Minute     // it exits by itself after this
)

func (g *target) startProbe(t *testing.T) *probe {
	t.Helper()
	if g.probeChannel == "" {
		g.probeChannel = "health:probe"
	}
	url := "ws://" + g.addr + "/"
	if g.kind == "serve" {
		url = "ws://" + g.addr + "/ws"
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := prioritized(self)
	cmd.Env = append(os.Environ(), probeEnv+"="+strings.Join([]string{g.kind, url, g.probeChannel, healthyIP.String()}, " "))
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &probe{t: t, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan error, 1)
	go p.read(stdout, ready)
	t.Cleanup(p.close)
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("healthy client: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("healthy client: not ready after 20 s")
	}
	return p
}

// read takes the probe process's lines: "ready" or "fail <error>" first,
// then one per round trip, "<nanoseconds>" or "<nanoseconds> <error>".
func (p *probe) read(stdout io.Reader, ready chan<- error) {
	defer close(p.done)
	defer p.cmd.Wait()
	sc := bufio.NewScanner(stdout)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if line != "ready" {
				ready <- errors.New(strings.TrimPrefix(line, "fail "))
				return
			}
			ready <- nil
			continue
		}
		ns, msg, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			msg = "probe said " + strconv.Quote(line)
		}
		d := time.Duration(n)
		p.mu.Lock()
		if msg != "" {
			p.errs = append(p.errs, errors.New(msg))
			d = max(d, probeTimeout)
		}
		p.samples = append(p.samples, d)
		p.mu.Unlock()
	}
	if first {
		ready <- errors.New("the probe process exited before it was ready")
		return
	}
	p.mu.Lock()
	if !p.stopped {
		p.errs = append(p.errs, errors.New("the probe process exited"))
	}
	p.mu.Unlock()
}

// close stops the probe process (its stdin closes) and waits for it.
func (p *probe) close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// probeMain is the probe process: it connects, says "ready", and makes a
// round trip every probeInterval until its stdin closes.
func probeMain(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 4 {
		fmt.Printf("fail %s=%q: want kind, URL, channel and source address\n", probeEnv, spec)
		return 2
	}
	kind, url, channel, ip := f[0], f[1], f[2], net.ParseIP(f[3])
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := probeDial(ctx, kind, url, channel, ip)
	cancel()
	if err != nil {
		fmt.Printf("fail %v\n", err)
		return 1
	}
	defer conn.CloseNow()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	limit := time.After(probeMaxRuntime)
	for seq := 3; ; seq++ {
		select {
		case <-stop:
			return 0
		case <-limit:
			return 0
		case <-t.C:
		}
		start := time.Now()
		err := probeRoundTrip(conn, kind, channel, seq)
		d := time.Since(start)
		if err != nil {
			fmt.Fprintf(out, "%d %s\n", d, strings.ReplaceAll(err.Error(), "\n", " "))
			out.Flush()
			return 1 // the connection is unusable
		}
		fmt.Fprintf(out, "%d\n", d)
		out.Flush()
	}
}

// probeDial connects from ip and, against serve, subscribes to channel.
func probeDial(ctx context.Context, kind, url, channel string, ip net.IP) (*websocket.Conn, error) {
	opts := &websocket.DialOptions{NetDialContext: localDialer(ip).DialContext}
	if kind == "serve" {
		opts.Subprotocols = []string{"duplex.v1.json"}
	}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(-1)
	if kind != "serve" {
		return conn, nil
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"id":1,"method":"connect"}`+"\n"+`{"id":2,"method":"subscribe","channel":"`+channel+`"}`)); err != nil {
		conn.CloseNow()
		return nil, err
	}
	for replies := 0; replies < 2; {
		_, data, err := conn.Read(ctx)
		if err == nil && bytes.Contains(data, []byte(`"error"`)) {
			err = fmt.Errorf("%s", data)
		}
		if err != nil {
			conn.CloseNow()
			return nil, err
		}
		replies += bytes.Count(data, []byte(`"id":`))
	}
	return conn, nil
}

func probeRoundTrip(conn *websocket.Conn, kind, channel string, seq int) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if kind != "serve" {
		msg := []byte("probe " + strconv.Itoa(seq))
		if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
			return err
		}
		_, data, err := conn.Read(ctx)
		if err == nil && !bytes.Equal(data, msg) {
			err = fmt.Errorf("echo %q of %q", data, msg)
		}
		return err
	}
	cmd := fmt.Sprintf(`{"id":%d,"method":"publish","channel":%q,"data":{"seq":%d}}`, seq, channel, seq)
	if err := conn.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		return err
	}
	want := []byte(fmt.Sprintf(`"data":{"seq":%d}`, seq))
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(`"error"`)) {
			return fmt.Errorf("healthy client: %s", data)
		}
		if bytes.Contains(data, want) {
			return nil
		}
	}
}

// window returns the samples since the last call and starts a new window.
func (p *probe) window() (samples []time.Duration, errs []error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	samples, errs = p.samples, p.errs
	p.samples, p.errs = nil, nil
	return samples, errs
}

// p99 is the 99th percentile of samples, by nearest rank.
func p99(samples []time.Duration) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// p99Bound is how high the healthy client's p99 may go during an attack:
// three times its value before, as the issue asks, but at least 50 ms
// above it, because on the loaded 2-core machines the tests run on (the
// attacker and other builds share the cores with the server) a few
// milliseconds of baseline would otherwise turn one scheduling delay into
// a failure.
func p99Bound(before time.Duration) time.Duration {
	return max(3*before, before+50*time.Millisecond)
}

// attack describes one case.
type attack struct {
	// run makes the attack, bounded in time by ctx, and returns when it is
	// over and its connections are closed; it checks the close codes and
	// statuses itself (t.Errorf) and returns a short note of what it saw.
	run func(ctx context.Context, t *testing.T) string
	// timeout bounds run. Default: 2 minutes.
	timeout time.Duration

	// Bounds on the server's memory above its baseline: during the
	// attack, and once it is over and the garbage collected. Zero:
	// 64 MiB of RSS and 32 MiB of heap during; after, the heap within
	// max(4 MiB, 10 %) of its baseline and the RSS within 32 MiB (the
	// runtime returns memory to the system lazily).
	rssDuring, heapDuring uint64
	heapAfter, rssAfter   uint64

	// conns is how many client connections the server should count once
	// the attack is over: the healthy client's, unless the case keeps
	// some. Default: 1.
	conns float64
	// baseline is how long the healthy client measures before the
	// attack. Default: 0.7 s (3 s in the full run).
	baseline time.Duration
	// noProbe: the case measures no latency (the server under test is
	// one the healthy client cannot use, or the case is about config).
	noProbe bool
}

const mib = 1 << 20

// run runs a case against g: a baseline, the attack with the healthy
// client and the memory sampler running, then the checks.
func (g *target) run(t *testing.T, name string, a attack) {
	t.Helper()
	if a.rssDuring == 0 {
		a.rssDuring = 64 * mib
	}
	if a.heapDuring == 0 {
		a.heapDuring = 32 * mib
	}
	if a.rssAfter == 0 {
		a.rssAfter = 32 * mib
	}
	if a.conns == 0 {
		a.conns = 1
	}
	if a.baseline == 0 {
		a.baseline = time.Duration(size(700, 3000)) * time.Millisecond
	}
	if a.timeout == 0 {
		a.timeout = 2 * time.Minute
	}
	var p *probe
	if !a.noProbe {
		p = g.startProbe(t)
		time.Sleep(200 * time.Millisecond) // warm up
		p.window()
	} else {
		a.conns = 0
	}
	before := g.memory(true)
	if p != nil {
		time.Sleep(a.baseline)
	}
	var baseP99 time.Duration
	if p != nil {
		samples, errs := p.window()
		if len(errs) > 0 {
			t.Fatalf("healthy client before the attack: %v", errs[0])
		}
		baseP99 = p99(samples)
	}

	s := g.sample(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	start := time.Now()
	note := a.run(ctx, t)
	cancel()
	elapsed := time.Since(start)
	during := s.finish()
	g.alive()
	var duringP99 time.Duration
	var probeErrs []error
	var nSamples int
	if p != nil {
		var samples []time.Duration
		samples, probeErrs = p.window()
		duringP99, nSamples = p99(samples), len(samples)
	}

	g.waitConnections(a.conns, 15*time.Second)
	after := g.memory(true)
	// The runtime gives memory back to the system lazily: wait a little
	// for the RSS to come down.
	for deadline := time.Now().Add(5 * time.Second); after.rss > before.rss+a.rssAfter && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		after = g.memory(true)
	}
	heapAfter := a.heapAfter
	if heapAfter == 0 {
		heapAfter = max(4*mib, before.heap/10)
	}

	var fails []string
	fail := func(format string, args ...any) {
		fails = append(fails, fmt.Sprintf(format, args...))
	}
	if during.rss > before.rss+a.rssDuring {
		fail("RSS reached %s during the attack, over %s + %s", mb(during.rss), mb(before.rss), mb(a.rssDuring))
	}
	if g.kind == "serve" {
		if during.heap > before.heap+a.heapDuring {
			fail("heap reached %s during the attack, over %s + %s", mb(during.heap), mb(before.heap), mb(a.heapDuring))
		}
		if after.heap > before.heap+heapAfter {
			fail("heap %s after the attack, over %s + %s", mb(after.heap), mb(before.heap), mb(heapAfter))
		}
	}
	if after.rss > before.rss+a.rssAfter {
		fail("RSS %s after the attack, over %s + %s", mb(after.rss), mb(before.rss), mb(a.rssAfter))
	}
	if p != nil {
		if len(probeErrs) > 0 {
			fail("healthy client failed during the attack: %v", probeErrs[0])
		}
		if bound := p99Bound(baseP99); duringP99 > bound {
			fail("healthy p99 %v during the attack (%d round trips), over %v (p99 before: %v)", duringP99, nSamples, bound, baseP99)
		}
		if nSamples < 5 && elapsed > time.Second {
			fail("the healthy client made only %d round trips in %v", nSamples, elapsed.Round(time.Millisecond))
		}
	}
	for _, f := range fails {
		t.Error(f)
	}
	result := "pass"
	if t.Failed() {
		result = "FAIL"
	}
	heapCol := "–"
	if g.kind == "serve" {
		heapCol = fmt.Sprintf("%s / %s / %s", mb(before.heap), mb(during.heap), mb(after.heap))
	}
	p99Col := "–"
	if p != nil {
		p99Col = fmt.Sprintf("%v / %v", baseP99.Round(10*time.Microsecond), duringP99.Round(10*time.Microsecond))
	}
	row := fmt.Sprintf("| %s | %s: %s (%v) | %s / %s / %s | %s | %s |", name, result, note, elapsed.Round(100*time.Millisecond),
		mb(before.rss), mb(during.rss), mb(after.rss), heapCol, p99Col)
	t.Log(row)
	addSummary(row)
	ranCase(t)
}

func mb(n uint64) string { return fmt.Sprintf("%.1f", float64(n)/mib) }

// codes counts close codes or statuses seen, for a case's note.
type codes struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *codes) add(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[code]++
}

func (c *codes) get(code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[code]
}

// merge adds the counts of o, another codes.
func (c *codes) merge(o *codes) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	for k, n := range o.n {
		c.n[k] += n
	}
}

func (c *codes) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *codes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.n))
	for k := range c.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, c.n[k]))
	}
	return strings.Join(parts, " ")
}

// closeCode names how a WebSocket connection ended: its close code, or
// "none" without a close frame.
func closeCode(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return strconv.Itoa(int(code))
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return strconv.Itoa(int(ce.Code))
	}
	return "none"
}

// jsonLine encodes v as one protocol line.
func jsonLine(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
