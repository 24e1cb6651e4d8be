// Command gwbench measures the gateway (duplex serve, run as its own
// process) with many real client connections on loopback: memory per idle
// connection (WebSocket, and the fallback transports' sessions over HTTP
// streaming and Server-Sent Events), publications delivered per second to 10,000 subscribers of
// one channel and to 10,000 channels of one subscriber, and the latency
// from publishing (backend API) to receipt. Run it with `make bench-gateway`;
// it prints a markdown table.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

func main() {
	bin := flag.String("bin", "", "duplex binary (default: build one)")
	conns := flag.Int("conns", 10000, "client connections per case")
	duration := flag.Duration("duration", 10*time.Second, "publishing time per throughput case")
	inflight := flag.Int("inflight", 4, "API publishes in flight")
	idleOnly := flag.Bool("idle-only", false, "measure idle memory only")
	transports := flag.String("transports", "websocket,http_stream,sse", "the transports whose idle sessions are measured, comma-separated: websocket, http_stream, sse (the throughput cases use WebSocket)")
	flag.DurationVar(&broadcastSettle, "settle", 10*time.Second, "how long after one publication to all subscribers of one channel their memory is measured")
	flag.StringVar(&heapProfile, "heap-profile", "", "save the gateway's heap profile, taken with the idle connections open, to this file")
	flag.Parse()
	log.SetFlags(0)

	if *bin == "" {
		dir, err := os.MkdirTemp("", "gwbench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "duplex")
		out, err := exec.Command("go", "build", "-o", *bin, "./cmd/duplex").CombinedOutput()
		if err != nil {
			log.Fatalf("go build: %v\n%s", err, out)
		}
	}
	var rows []string
	for _, tr := range strings.Split(*transports, ",") {
		switch tr {
		case "websocket":
			rows = append(rows, runCase(*bin, "idle", *conns, func(g *gateway, clients []*client) string { return "" }))
		case "http_stream", "sse":
			rows = append(rows, runFallbackIdle(*bin, tr, *conns))
		default:
			log.Fatalf("-transports: unknown transport %q (websocket, http_stream, sse)", tr)
		}
	}
	if *idleOnly {
		fmt.Printf("\n| case | connections | result |\n|---|---|---|\n")
		for _, r := range rows {
			fmt.Println(r)
		}
		return
	}
	rows = append(rows, runCase(*bin, "one channel", *conns, func(g *gateway, clients []*client) string {
		return g.publishLoop(clients, *duration, *inflight, func(i int) []string { return []string{"bench:all"} })
	}))
	rows = append(rows, runCase(*bin, "channel per connection", *conns, func(g *gateway, clients []*client) string {
		const batch = 100
		return g.publishLoop(clients, *duration, *inflight, func(i int) []string {
			chans := make([]string, batch)
			for j := range chans {
				chans[j] = "bench:c" + strconv.Itoa((i*batch+j)%len(clients))
			}
			return chans
		})
	}))
	fmt.Printf("\n| case | connections | result |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("\n%s, %d CPUs, %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().Format("2006-01-02"))
	if n := lostDeliveries.Load(); n > 0 {
		log.Fatalf("gwbench: %d deliveries lost", n)
	}
}

// lostDeliveries counts publications some client never received; any
// makes the run fail, as the gateway must not lose them silently.
var lostDeliveries atomic.Int64

const config = `listen: 127.0.0.1:0
demo: false
auth:
  anonymous: true
limits:
  message_rate: 1000
  max_channels: 4
  max_connections_per_ip: -1  # thousands of clients from 8 loopback addresses
  handshake_rate: -1
  fallback_send_rate: -1      # thousands of fallback clients' POSTs from 8 loopback addresses
namespaces:
  - name: bench
    anonymous: true
    publish: server
`

type gateway struct {
	cmd   *exec.Cmd
	base  string
	debug string // the profiler's base URL
	dir   string
}

// startGateway runs duplex serve with config and its profiler on loopback.
func startGateway(bin string) *gateway {
	dir, _ := os.MkdirTemp("", "gwbench")
	cfgPath := filepath.Join(dir, "duplex.yaml")
	os.WriteFile(cfgPath, []byte(config), 0o600)
	debugAddr := freeAddr()
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "warn", "--debug-listen", debugAddr)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	g := &gateway{cmd: cmd, debug: "http://" + debugAddr, dir: dir}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		g.stop()
		log.Fatalf("duplex serve: %v", err)
	}
	m := regexp.MustCompile(`(http://[^/]+)/`).FindStringSubmatch(line)
	if m == nil {
		g.stop()
		log.Fatalf("duplex serve said %q", line)
	}
	go io.Copy(io.Discard, stdout)
	g.base = m[1]
	return g
}

// stop ends the gateway and waits for it.
func (g *gateway) stop() {
	g.cmd.Process.Signal(os.Interrupt)
	g.cmd.Wait()
	os.RemoveAll(g.dir)
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCase starts a gateway, connects n clients (each subscribed to
// bench:all when the case is "one channel", else to its own channel),
// measures idle memory, and runs f.
func runCase(bin, name string, n int, f func(*gateway, []*client) string) string {
	g := startGateway(bin)
	defer g.stop()

	// Warm up with a few connections so that the baseline includes the
	// runtime's fixed costs.
	warm := g.connect(10, func(i int) string { return "bench:warm" })
	for _, c := range warm {
		c.close()
	}
	time.Sleep(time.Second)
	before := g.memory()
	start := time.Now()
	clients := g.connect(n, func(i int) string {
		if name == "one channel" {
			return "bench:all"
		}
		return "bench:c" + strconv.Itoa(i)
	})
	connectTime := time.Since(start)
	time.Sleep(2 * time.Second)
	after := g.memory()
	if name == "idle" && heapProfile != "" {
		g.saveHeapProfile(heapProfile)
	}
	result := fmt.Sprintf("| %s | %d | connected in %v; RSS %.1f KiB/conn, Go heap objects %.1f KiB/conn, stacks %.1f KiB/conn, goroutines %.2f/conn",
		name, n, connectTime.Round(time.Millisecond),
		(after.rss-before.rss)/float64(n)/1024, (after.heap-before.heap)/float64(n)/1024,
		(after.stacks-before.stacks)/float64(n)/1024, (after.goroutines-before.goroutines)/float64(n))
	if name == "one channel" {
		result += "; " + g.afterBroadcast(clients, before)
	}
	if extra := f(g, clients); extra != "" {
		result += "; " + extra
	}
	for _, c := range clients {
		c.close()
	}
	return result + " |"
}

// broadcastSettle is how long after one publication to every client the
// gateway's memory is measured again (issue 14: what the fan-out's
// goroutines left behind stayed in the RSS); -settle.
var broadcastSettle time.Duration

// api calls the gateway's API method with body through httpc, and exits
// the benchmark unless it answered 200.
func (g *gateway) api(httpc *http.Client, method string, body []byte) {
	resp, err := httpc.Post(g.base+"/api/"+method, "application/json", bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		log.Fatalf("%s: %s", method, resp.Status)
	}
}

// afterBroadcast publishes once to bench:all, waits until every client has
// it, and reports the gateway's memory per connection broadcastSettle
// later, against before (the memory before the clients connected).
func (g *gateway) afterBroadcast(clients []*client, before memory) string {
	body := fmt.Sprintf(`{"channel":"bench:all","data":{"t":%d}}`, time.Now().UnixNano())
	g.api(http.DefaultClient, "publish", []byte(body))
	var got int64
	for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		got = 0
		for _, c := range clients {
			got += c.received.Load()
		}
		if got >= int64(len(clients)) {
			break
		}
	}
	if got != int64(len(clients)) {
		lostDeliveries.Add(int64(len(clients)) - got)
	}
	for _, c := range clients {
		c.mu.Lock()
		c.latencies = nil
		c.mu.Unlock()
		c.received.Store(0)
	}
	time.Sleep(broadcastSettle)
	// As an operator sees it, then after a collection as the idle figure
	// is taken (a collection frees the stacks of goroutines that ended).
	asIs := g.rss()
	m := g.memory()
	n := float64(len(clients))
	return fmt.Sprintf("%v after one publication to all: RSS %.1f KiB/conn (%.1f KiB/conn after a GC), stacks %.1f KiB/conn, goroutines %.2f/conn",
		broadcastSettle, (asIs-before.rss)/n/1024, (m.rss-before.rss)/n/1024, (m.stacks-before.stacks)/n/1024, (m.goroutines-before.goroutines)/n)
}

// rss reads the gateway's resident memory, in bytes.
func (g *gateway) rss() float64 {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if r := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); r != nil {
		kb, _ := strconv.ParseFloat(string(r[1]), 64)
		return kb * 1024
	}
	return 0
}

// cpuSeconds returns the user and system CPU time the gateway has used.
func (g *gateway) cpuSeconds() float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses:
	// utime and stime are the 12th and 13th, in clock ticks (100 a second
	// on Linux).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100
}

// heapProfile is where to save the idle case's heap profile, if anywhere.
var heapProfile string

func (g *gateway) saveHeapProfile(path string) {
	resp, err := http.Get(g.debug + "/debug/pprof/heap")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		log.Fatal(err)
	}
}

type memory struct{ rss, heap, stacks, goroutines float64 }

// memory collects the gateway's garbage (through the profiler, whose heap
// profile runs a GC first, which also shrinks idle goroutines' stacks) and
// reads its memory.
func (g *gateway) memory() memory {
	for range 2 {
		resp, err := http.Get(g.debug + "/debug/pprof/heap?gc=1")
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	m := memory{rss: g.rss()}
	resp, err := http.Get(g.base + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := func(name string) float64 {
		r := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
		if r == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(string(r[1]), 64)
		return v
	}
	m.heap = metric("go_heap_objects_bytes")
	m.stacks = metric("go_stack_bytes")
	m.goroutines = metric("go_goroutines")
	return m
}

type client struct {
	conn      *websocket.Conn
	received  atomic.Int64
	latencies []time.Duration // under mu
	mu        sync.Mutex
	done      chan struct{}
}

func (c *client) close() {
	c.conn.CloseNow()
	<-c.done
}

// inParallel calls f(0) … f(n-1), 64 at a time, and waits for them all.
func inParallel(n int, f func(i int)) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// subscribeCommands is a client's first message: connect, then subscribe
// to channel.
func subscribeCommands(channel string) string {
	return fmt.Sprintf(`{"id":1,"method":"connect"}`+"\n"+`{"id":2,"method":"subscribe","channel":%q}`, channel)
}

// connect opens n clients, 64 handshakes at a time, over several loopback
// source addresses.
func (g *gateway) connect(n int, channel func(i int) string) []*client {
	url := "ws" + strings.TrimPrefix(g.base, "http") + "/ws"
	clients := make([]*client, n)
	inParallel(n, func(i int) {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}
		d := &net.Dialer{LocalAddr: src}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			Subprotocols:   []string{"duplex.v1.json"},
			NetDialContext: d.DialContext,
		})
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		conn.SetReadLimit(-1)
		cmds := subscribeCommands(channel(i))
		if err := conn.Write(ctx, websocket.MessageText, []byte(cmds)); err != nil {
			log.Fatalf("client %d: %v", i, err)
		}
		for replies := 0; replies < 2; {
			_, data, err := conn.Read(ctx)
			if err != nil {
				log.Fatalf("client %d: %v", i, err)
			}
			if bytes.Contains(data, []byte(`"error"`)) {
				log.Fatalf("client %d: %s", i, data)
			}
			replies += bytes.Count(data, []byte(`"id":`))
		}
		c := &client{conn: conn, done: make(chan struct{})}
		clients[i] = c
		go c.readLoop()
	})
	return clients
}

// readLoop records the latency of every publication, whose data carries
// the time it was published.
func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			i := bytes.Index(line, []byte(`"data":{"t":`))
			if i < 0 {
				continue
			}
			rest := line[i+len(`"data":{"t":`):]
			j := bytes.IndexAny(rest, ",}")
			sent, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
			c.received.Add(1)
			c.mu.Lock()
			c.latencies = append(c.latencies, time.Duration(now-sent))
			c.mu.Unlock()
		}
	}
}

// publishLoop publishes for d with inflight concurrent API calls, each
// publication to the channels chans(i) returns, and reports deliveries per
// second and latency percentiles.
func (g *gateway) publishLoop(clients []*client, d time.Duration, inflight int, chans func(i int) []string) string {
	var published atomic.Int64 // deliveries expected
	var seq atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	cpuStart := g.cpuSeconds()
	var wg sync.WaitGroup
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: inflight}}
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(seq.Add(1))
				channels := chans(i)
				data := fmt.Sprintf(`{"t":%d,"p":"%s"}`, time.Now().UnixNano(), strings.Repeat("x", 32))
				var body []byte
				method := "publish"
				if len(channels) == 1 {
					body, _ = json.Marshal(map[string]any{"channel": channels[0], "data": json.RawMessage(data)})
				} else {
					method = "broadcast"
					body, _ = json.Marshal(map[string]any{"channels": channels, "data": json.RawMessage(data)})
				}
				g.api(httpc, method, body)
				if len(channels) == 1 && channels[0] == "bench:all" {
					published.Add(int64(len(clients)))
				} else {
					published.Add(int64(len(channels)))
				}
			}
		}()
	}
	wg.Wait()
	// Wait for the deliveries to arrive, up to 10 s.
	want := published.Load()
	var got int64
	for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(50 * time.Millisecond) {
		got = 0
		for _, c := range clients {
			got += c.received.Load()
		}
		if got >= want {
			break
		}
	}
	elapsed := time.Since(start)
	cpu := g.cpuSeconds() - cpuStart
	var all []time.Duration
	for _, c := range clients {
		c.mu.Lock()
		all = append(all, c.latencies...)
		c.latencies = nil
		c.mu.Unlock()
		c.received.Store(0)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))].Round(10 * time.Microsecond)
	}
	if got != want {
		lostDeliveries.Add(want - got)
	}
	perCPU := 0.0
	if cpu > 0 {
		perCPU = float64(got) / cpu
	}
	return fmt.Sprintf("%d deliveries (%d expected, %d lost) at %.0f/s, %.0f per gateway CPU-second; latency p50 %v p99 %v max %v",
		got, want, want-got, float64(got)/elapsed.Seconds(), perCPU, pct(0.5), pct(0.99), pct(1))
}
