package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
)

// The three channels every client of a throughput setup subscribes to:
// one they all share, one of its own, and its group's: the shape of
// Centrifugo's published benchmark (a personal channel and a group of 10),
// with the broadcast to everyone besides.
const (
	sharedChannel    = "bench:all"
	ownChannel       = "bench:c{i}"
	groupChannel     = "bench:g{g}"     // {g}: the client's index ÷ groupSize
	groupSize        = 10               // clients a group channel has
	broadcastBatch   = 100              // channels per broadcast request
	drainTimeout     = 15 * time.Second // without a delivery: the rest are late
	lateTimeout      = time.Minute      // after drainTimeout: the rest are lost
	publishCallLimit = 30 * time.Second
	maxRetries       = 100 // of a call answered 503, 100 ms apart
)

// channelKind is what a phase publishes to.
type channelKind int

const (
	kindShared channelKind = iota // sharedChannel
	kindOwn                       // every client's ownChannel, broadcastBatch a request
	kindGroup                     // every groupChannel, broadcastBatch a request
)

// The names of the kinds of phase.
const (
	oneChannel       = "one channel"
	channelPerClient = "channel per client"
	groupsOfTen      = "groups of 10"
)

// perPublication is how many deliveries one publishing call of kind makes
// to clients clients (a multiple of groupSize).
func perPublication(kind channelKind, clients int) int64 {
	switch kind {
	case kindOwn:
		return broadcastBatch
	case kindGroup:
		return broadcastBatch * groupSize
	}
	return int64(clients)
}

// load is the clients of a throughput setup and what was published to
// them so far, which the workers check every client against.
type load struct {
	c       *cluster
	workers []*workerProc
	clients int
	opts    options

	shared    atomic.Uint64 // publications to sharedChannel
	broadcast atomic.Uint64 // broadcast requests, each to broadcastBatch own channels
	groups    atomic.Uint64 // broadcast requests, each to broadcastBatch group channels
}

// phase is what one publishing phase measured.
type phase struct {
	name        string // oneChannel, channelPerClient or groupsOfTen
	paced       bool
	published   int64   // publications
	pubRate     float64 // publications per second while publishing
	deliveries  int64
	rate        float64 // deliveries per second, until the last arrived
	p50, p99    time.Duration
	maxLatency  time.Duration
	lost        int64 // skipped without a gap push, or not arrived by the late timeout
	gapped      int64 // announced missing by a gap push
	late        int64 // arrived after drainTimeout without a delivery
	duplicated  int64 // repeated or beyond what was published
	disconnects int
	cpu         cpuShares
	retries     int64 // API calls answered 503 and made again
}

func (p phase) failed() bool {
	return p.lost > 0 || p.gapped > 0 || p.duplicated > 0 || p.disconnects > 0
}

// publish publishes for d, to the shared channel or broadcasting to
// broadcastBatch own or group channels a request, through every node in
// turn with opts.inflight requests in flight per node: at rate requests
// per second when rate > 0, else as fast as the clients receive. It then
// waits for the deliveries and has the workers check every client.
func (l *load) publish(name string, kind channelKind, d time.Duration, rate float64) (phase, error) {
	ph := phase{name: name, paced: rate > 0}
	cpu := startCPU(l.c, l.workers)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg        sync.WaitGroup
		published atomic.Int64
		retries   atomic.Int64
		errMu     sync.Mutex
		firstErr  error
	)
	// Unpaced, the publishers wait for the deliveries: the API answers
	// once a publication is stored, before it is delivered, and left to
	// itself it would pile up minutes of backlog. At most window
	// publications' deliveries are outstanding.
	per := perPublication(kind, l.clients)
	window := int64(l.opts.inflight*len(l.c.nodes)) * per
	var issued, delivered atomic.Int64
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for ctx.Err() == nil {
			a, _, err := ask(l.workers, command{Cmd: "count"})
			if err != nil {
				return
			}
			delivered.Store(a.Received)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	deadline := start.Add(d)
	// Paced publishers wait for a tick or for the end of the phase, not
	// for one more tick each after it.
	paceCtx, paceCancel := context.WithDeadline(ctx, deadline)
	defer paceCancel()
	for i := range l.opts.inflight * len(l.c.nodes) {
		node := l.c.nodes[i%len(l.c.nodes)]
		wg.Go(func() {
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-paceCtx.Done():
						return
					}
				}
				for tick == nil && issued.Load()-delivered.Load() >= window && ctx.Err() == nil && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if time.Now().After(deadline) {
					return
				}
				issued.Add(per)
				// Counted before the call: the workers expect every
				// publication it stands for, and a failed call ends the run.
				var call func() error
				switch kind {
				case kindShared:
					l.shared.Add(1)
					call = func() error { return publishShared(ctx, node) }
				case kindOwn:
					k := l.broadcast.Add(1) - 1
					call = func() error { return publishBatch(ctx, node, "bench:c", k, l.clients) }
				case kindGroup:
					k := l.groups.Add(1) - 1
					call = func() error { return publishBatch(ctx, node, "bench:g", k, l.clients/groupSize) }
				}
				err := call()
				for tries := 0; isUnavailable(err) && tries < maxRetries; tries++ {
					// 503: the node lost its broker for a moment (under
					// this load, a health check that timed out); a client
					// retries, and so do we, counting it.
					retries.Add(1)
					time.Sleep(100 * time.Millisecond)
					err = call()
				}
				if err != nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
					cancel()
					return
				}
				published.Add(1)
			}
		})
	}
	wg.Wait()
	cancel()
	<-pollDone
	if firstErr != nil {
		return ph, firstErr
	}
	ph.published, ph.retries = published.Load(), retries.Load()
	ph.pubRate = float64(ph.published) / time.Since(start).Seconds()
	want := ph.published * per

	// Wait for every delivery (or its gap push), for as long as they keep
	// arriving; then, if some are still missing, tell late from lost.
	var got, gapped int64
	count := func() error {
		a, _, err := ask(l.workers, command{Cmd: "count"})
		got, gapped = a.Received, a.Gapped
		return err
	}
	last := time.Now()
	for seen := int64(0); time.Since(last) < drainTimeout; time.Sleep(20 * time.Millisecond) {
		if err := count(); err != nil {
			return ph, err
		}
		if got+gapped > seen {
			seen, last = got+gapped, time.Now()
		}
		if got+gapped >= want {
			break
		}
	}
	if drained := got + gapped; drained < want {
		for deadline := time.Now().Add(lateTimeout); time.Now().Before(deadline) && got+gapped < want; time.Sleep(100 * time.Millisecond) {
			if err := count(); err != nil {
				return ph, err
			}
		}
		ph.late = got + gapped - drained
	}
	ph.cpu = cpu.stop(last.Sub(start))
	a, lat, err := ask(l.workers, command{Cmd: "collect", Expect: []expectation{
		{Channel: sharedChannel, Count: l.shared.Load()},
		{Channel: ownChannel, Positions: l.broadcast.Load() * broadcastBatch, Total: uint64(l.clients)},
		{Channel: groupChannel, Positions: l.groups.Load() * broadcastBatch, Total: uint64(l.clients / groupSize), Group: groupSize},
	}})
	if err != nil {
		return ph, err
	}
	ph.deliveries = a.Received
	ph.rate = float64(a.Received) / last.Sub(start).Seconds()
	ph.p50, ph.p99, ph.maxLatency = percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1)
	ph.lost, ph.gapped, ph.duplicated, ph.disconnects = a.Missing, a.Gapped, a.Duplicates+a.Extra, a.Disconnected
	if a.Received-a.Duplicates != want-a.Missing-a.Gapped {
		// The checks by offset and the count disagree: say so rather
		// than report either.
		fmt.Fprintf(os.Stderr, "clusterbench: %s: %d received, %d repeated, %d expected, %d missing, %d in gaps\n",
			name, a.Received, a.Duplicates, want, a.Missing, a.Gapped)
		ph.lost = max(ph.lost, want-(a.Received-a.Duplicates)-a.Gapped)
	}
	return ph, nil
}

// isUnavailable says whether err is the API's 503: the node cannot reach
// its broker.
func isUnavailable(err error) bool {
	var apiErr *testgateway.APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable
}

// publishShared publishes one publication, which carries its time, to the
// shared channel.
func publishShared(ctx context.Context, node *testgateway.Node) error {
	ctx, cancel := context.WithTimeout(ctx, publishCallLimit)
	defer cancel()
	_, err := node.Publish(ctx, sharedChannel, stamp())
	return err
}

// publishBatch broadcasts one publication to the channels prefix+n for
// the positions k*broadcastBatch … (k+1)*broadcastBatch-1, modulo total.
func publishBatch(ctx context.Context, node *testgateway.Node, prefix string, k uint64, total int) error {
	ctx, cancel := context.WithTimeout(ctx, publishCallLimit)
	defer cancel()
	channels := make([]string, broadcastBatch)
	for j := range channels {
		channels[j] = prefix + strconv.FormatUint((k*broadcastBatch+uint64(j))%uint64(total), 10)
	}
	var res struct {
		Results []struct {
			Error *testgateway.Error `json:"error"`
		} `json:"results"`
	}
	if err := node.API(ctx, "broadcast", map[string]any{"channels": channels, "data": stamp()}, &res); err != nil {
		return err
	}
	for i, r := range res.Results {
		if r.Error != nil {
			return fmt.Errorf("broadcast to %s: %w", channels[i], r.Error)
		}
	}
	return nil
}

// stampData is a publication's data: the time it was published, which the
// workers subtract from the time it arrived, and 32 bytes of payload. The
// time comes first, where the workers look for it.
type stampData struct {
	T int64  `json:"t"`
	P string `json:"p"`
}

func stamp() stampData {
	return stampData{T: time.Now().UnixNano(), P: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
}
