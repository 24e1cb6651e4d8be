package main

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
)

// A worker is this program re-executed with -worker: one load-generator
// process holding at most maxPerWorker client connections, because each
// process may open only 20,000 descriptors. It reads a job, then commands,
// one JSON line each on stdin, and answers each with one JSON line on
// stdout. It ends, closing every connection, when stdin ends.

// job says which clients a worker opens.
type job struct {
	// URLs are the nodes' WebSocket URLs; client g dials URLs[g%len(URLs)].
	URLs []string `json:"urls"`
	// First and Count are the global indexes of the worker's clients.
	First int `json:"first"`
	Count int `json:"count"`
	// Channels are what every client subscribes to; "{i}" stands for the
	// client's global index, "{g}" for that index ÷ groupSize.
	Channels []string `json:"channels"`
	// Concurrency is how many clients dial and subscribe at once.
	Concurrency int `json:"concurrency"`
	// LocalAddrs spreads the clients over source addresses 127.0.0.1 to
	// 127.0.0.LocalAddrs, each of which has its own ephemeral ports.
	LocalAddrs int `json:"local_addrs"`
}

// connected is a worker's answer to its job.
type connected struct {
	Clients int      `json:"clients"` // connected and subscribed to every channel
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors,omitempty"` // the first few failures
	Seconds float64  `json:"seconds"`          // until the last client was subscribed
}

// command is what the coordinator asks of a worker after its job.
type command struct {
	// Cmd is "count" (how many publications arrived so far) or "collect"
	// (check every client against Expect and hand over the latencies).
	Cmd    string        `json:"cmd"`
	Expect []expectation `json:"expect,omitempty"`
}

// expectation says how many publications each client's subscription to
// Channel (a template of job.Channels) must have received since the start:
// its offsets must be exactly 1 … that number.
type expectation struct {
	Channel string `json:"channel"`
	// Count, for a channel every client shares: its number of publications.
	Count uint64 `json:"count"`
	// Positions, for a channel per client: the publisher published to
	// channel p mod Total for every position p below Positions (see
	// perClientCount).
	Positions uint64 `json:"positions"`
	Total     uint64 `json:"total"`
	// Group, for a channel per group of this many clients: the channel of
	// client i is i ÷ Group of Total, published to as above.
	Group uint64 `json:"group,omitempty"`
}

// perClientCount is the number of publications channel i of total got
// when positions 0 … positions-1 were published to channel p mod total.
func perClientCount(i, positions, total uint64) uint64 {
	if i >= positions {
		return 0
	}
	return (positions-i-1)/total + 1
}

// answer is a worker's answer to a command.
type answer struct {
	Received int64 `json:"received"` // publications since the last collect
	// From collect:
	Duplicates   int64   `json:"duplicates"`   // offsets at or below one already received
	Missing      int64   `json:"missing"`      // offsets skipped without a gap push, or never received by the end
	Gapped       int64   `json:"gapped"`       // offsets a gap push said are not to be had
	Extra        int64   `json:"extra"`        // offsets beyond what was published
	Disconnected int     `json:"disconnected"` // clients whose connection ended
	Pushes       int64   `json:"pushes"`       // other pushes (join, leave, presence_count, gap)
	Latencies    []int64 `json:"latencies"`    // sorted sample, nanoseconds
	Measured     int64   `json:"measured"`     // how many latencies the sample stands for
}

// maxSample bounds the latencies a worker hands over: evenly spaced ranks
// of its sorted latencies, which the coordinator weighs by Measured.
const maxSample = 20000

// benchClient is one connection and what it received.
type benchClient struct {
	conn     *testgateway.Client
	channels []string
	last     []atomic.Uint64 // the last offset received, per channel

	mu        sync.Mutex
	latencies []time.Duration
}

type worker struct {
	clients []*benchClient

	received   atomic.Int64
	duplicates atomic.Int64
	missing    atomic.Int64
	gapped     atomic.Int64
	pushes     atomic.Int64
}

func runWorker() error {
	raiseFileLimit()
	in := bufio.NewReader(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	var j job
	if err := readJSONLine(in, &j); err != nil {
		return fmt.Errorf("worker: job: %w", err)
	}
	w := &worker{}
	defer w.close()
	if err := out.Encode(w.connect(j)); err != nil {
		return err
	}
	for {
		var cmd command
		if err := readJSONLine(in, &cmd); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("worker: command: %w", err)
		}
		var a answer
		switch cmd.Cmd {
		case "count":
			a.Received, a.Gapped = w.received.Load(), w.gapped.Load()
		case "collect":
			a = w.collect(j, cmd.Expect)
		default:
			return fmt.Errorf("worker: unknown command %q", cmd.Cmd)
		}
		if err := out.Encode(a); err != nil {
			return err
		}
	}
}

func readJSONLine(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return err
	}
	return json.Unmarshal(line, v)
}

// raiseFileLimit raises the soft descriptor limit to the hard one (Go does
// so at start on Linux too; this says it where the limit matters).
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// connect dials the job's clients, Concurrency at a time, each subscribing
// to its channels, and waits for them all.
func (w *worker) connect(j job) connected {
	start := time.Now()
	w.clients = make([]*benchClient, j.Count)
	var (
		mu     sync.Mutex
		res    connected
		wg     sync.WaitGroup
		tokens = make(chan struct{}, max(j.Concurrency, 1))
	)
	fail := func(err error) {
		mu.Lock()
		res.Failed++
		if len(res.Errors) < 5 {
			res.Errors = append(res.Errors, err.Error())
		}
		mu.Unlock()
	}
	for k := range j.Count {
		tokens <- struct{}{}
		wg.Go(func() {
			defer func() { <-tokens }()
			g := j.First + k
			c, err := w.dial(j, g)
			if err != nil {
				fail(fmt.Errorf("client %d: %w", g, err))
				return
			}
			w.clients[k] = c
		})
	}
	wg.Wait()
	res.Clients = j.Count - res.Failed
	res.Seconds = time.Since(start).Seconds()
	return res
}

func (w *worker) dial(j job, g int) (*benchClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &benchClient{channels: make([]string, len(j.Channels)), last: make([]atomic.Uint64, len(j.Channels))}
	for i, t := range j.Channels {
		c.channels[i] = strings.NewReplacer("{i}", strconv.Itoa(g), "{g}", strconv.Itoa(g/groupSize)).Replace(t)
	}
	opts := &testgateway.DialOptions{OnPush: func(line []byte) { w.push(c, line) }}
	if j.LocalAddrs > 0 {
		// Not g%LocalAddrs: with as many nodes as divide it, each node
		// would get only a few of the addresses.
		opts.LocalIP = net.IPv4(127, 0, 0, byte(1+(g/len(j.URLs))%j.LocalAddrs))
	}
	conn, err := testgateway.Dial(ctx, j.URLs[g%len(j.URLs)], opts)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	for _, ch := range c.channels {
		_, err := conn.Subscribe(ctx, ch, nil)
		// 113: the node lost its broker for a moment (under this load, a
		// health check that timed out); duplex.js retries it, and so do we.
		var gwErr *testgateway.Error
		for tries := 0; errors.As(err, &gwErr) && gwErr.Code == 113 && tries < 100; tries++ {
			time.Sleep(100 * time.Millisecond)
			_, err = conn.Subscribe(ctx, ch, nil)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("subscribe %s: %w", ch, err)
		}
	}
	return c, nil
}

var (
	gapPrefix     = []byte(`{"push":"gap","channel":"`)
	toField       = []byte(`"to":`)
	pubPrefix     = []byte(`{"push":"pub","channel":"`)
	offsetField   = []byte(`"offset":`)
	sentTimeField = []byte(`"data":{"t":`)
)

// push checks a publication's offset against the last one of its channel
// and records its latency: its data carries the time it was published.
// It runs on the client's reading goroutine, so a channel's offsets arrive
// here in order. The fields are found by hand, as the load generators
// share the machine's CPUs with the gateways they measure.
func (w *worker) push(c *benchClient, line []byte) {
	now := time.Now()
	if rest, ok := bytes.CutPrefix(line, gapPrefix); ok {
		w.gap(c, rest)
		return
	}
	rest, ok := bytes.CutPrefix(line, pubPrefix)
	if !ok {
		w.pushes.Add(1)
		return
	}
	end := bytes.IndexByte(rest, '"')
	ch := slices.Index(c.channels, string(rest[:end]))
	offset := uint64(numberAfter(rest, offsetField))
	sent := numberAfter(rest, sentTimeField)
	if ch < 0 || offset == 0 || sent == 0 {
		w.pushes.Add(1)
		return
	}
	w.received.Add(1)
	last := c.last[ch].Load()
	switch {
	case offset <= last:
		w.duplicates.Add(1)
		return
	case offset > last+1:
		w.missing.Add(int64(offset - last - 1))
	}
	c.last[ch].Store(offset)
	c.mu.Lock()
	c.latencies = append(c.latencies, now.Sub(time.Unix(0, sent)))
	c.mu.Unlock()
}

// gap counts what a gap push says is missing, past the last offset
// received, and moves the channel on to its end: those offsets are
// announced, not silently lost. rest follows the channel's opening quote.
func (w *worker) gap(c *benchClient, rest []byte) {
	w.pushes.Add(1)
	end := bytes.IndexByte(rest, '"')
	ch := slices.Index(c.channels, string(rest[:end]))
	to := uint64(numberAfter(rest, toField))
	if ch < 0 || to == 0 {
		return
	}
	if last := c.last[ch].Load(); to > last {
		w.gapped.Add(int64(to - last))
		c.last[ch].Store(to)
	}
}

// numberAfter returns the decimal number following field in line, or 0.
func numberAfter(line, field []byte) int64 {
	i := bytes.Index(line, field)
	if i < 0 {
		return 0
	}
	rest := line[i+len(field):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	v, _ := strconv.ParseInt(string(rest[:n]), 10, 64)
	return v
}

// collect checks every client against expect, hands over a sample of the
// latencies recorded since the last collect, and starts counting anew.
func (w *worker) collect(j job, expect []expectation) answer {
	a := answer{
		Received:   w.received.Swap(0),
		Duplicates: w.duplicates.Swap(0),
		Missing:    w.missing.Swap(0),
		Gapped:     w.gapped.Swap(0),
		Pushes:     w.pushes.Swap(0),
	}
	var all []time.Duration
	for k, c := range w.clients {
		if c == nil {
			continue
		}
		select {
		case <-c.conn.Done():
			a.Disconnected++
		default:
		}
		c.mu.Lock()
		all = append(all, c.latencies...)
		c.latencies = c.latencies[:0]
		c.mu.Unlock()
		missing, extra := c.check(j, k, expect)
		a.Missing += missing
		a.Extra += extra
	}
	slices.Sort(all)
	a.Measured = int64(len(all))
	step := max(1, len(all)/maxSample)
	for i := 0; i < len(all); i += step {
		a.Latencies = append(a.Latencies, int64(all[i]))
	}
	return a
}

// check settles every channel of the worker's client k against expect.
func (c *benchClient) check(j job, k int, expect []expectation) (missing, extra int64) {
	for _, e := range expect {
		ch := slices.Index(j.Channels, e.Channel)
		if ch < 0 {
			continue
		}
		want := e.Count
		if e.Total > 0 {
			i := uint64(j.First + k)
			if e.Group > 0 {
				i /= e.Group
			}
			want = perClientCount(i, e.Positions, e.Total)
		}
		m, x := c.settle(ch, want)
		missing, extra = missing+m, extra+x
	}
	return missing, extra
}

// settle compares the last offset received on channel ch with want, the
// number of publications it had: it returns how many never arrived and how
// many more than were published did. What is missing is counted once:
// the channel is taken to be at want from now on.
func (c *benchClient) settle(ch int, want uint64) (missing, extra int64) {
	switch last := c.last[ch].Load(); {
	case last < want:
		c.last[ch].Store(want)
		return int64(want - last), 0
	case last > want:
		return 0, int64(last - want)
	}
	return 0, 0
}

// close ends every connection and waits for their goroutines.
func (w *worker) close() {
	var wg sync.WaitGroup
	for _, c := range w.clients {
		if c != nil {
			wg.Go(c.conn.Close)
		}
	}
	wg.Wait()
}
