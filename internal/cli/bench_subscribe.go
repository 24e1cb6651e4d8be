package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Bounds of duplex bench --mode subscribe.
const (
	maxBenchChannels        = 1_000_000 // channels of their own, over all connections
	maxBenchChannelsPerConn = 1000
	maxBenchPublishSize     = 512 << 10 // the API takes bodies up to 1 MiB
	benchBroadcastBatch     = 1000      // channels per /api/broadcast request
	benchPublishConcurrency = 16        // API requests at once
	benchDefaultChannel     = "demo:bench"
	benchDefaultPrefix      = "demo:bench-"
)

// subscribeConfig is what --mode subscribe adds to a benchConfig.
type subscribeConfig struct {
	channels []string // --channel: every connection subscribes to each
	prefix   string   // when channels is empty: connection i subscribes to prefix<i·perConn+k>, k < perConn
	perConn  int
	rate     float64 // publications per second on each channel
	api      *apiClient
	token    string
}

// channelCount returns how many channels the bench uses.
func (sc *subscribeConfig) channelCount(connections int) int {
	if len(sc.channels) > 0 {
		return len(sc.channels)
	}
	return connections * sc.perConn
}

// name returns the name of channel j.
func (sc *subscribeConfig) name(j int) string {
	if len(sc.channels) > 0 {
		return sc.channels[j]
	}
	return sc.prefix + strconv.Itoa(j)
}

// channelsOf returns the channels connection i subscribes to.
func (sc *subscribeConfig) channelsOf(i int) []int {
	var js []int
	if len(sc.channels) > 0 {
		for j := range sc.channels {
			js = append(js, j)
		}
		return js
	}
	for k := range sc.perConn {
		js = append(js, i*sc.perConn+k)
	}
	return js
}

// subscribeRun holds the figures of a run of --mode subscribe besides
// those of bench.
type subscribeRun struct {
	cfg         *subscribeConfig
	data        []byte         // the publication, its stamp aside
	subscribers []atomic.Int64 // per channel
	published   []atomic.Int64 // per channel: publications the API accepted

	subscribed                  atomic.Int64 // connections subscribed to all their channels
	accepted, refused, requests atomic.Int64 // publications (one per channel) and API requests

	// Set by runSubscribe, for the report.
	connectTime, publishTime time.Duration
	expected                 int64 // deliveries, once publishing is over
}

// newSubscribeRun prepares a run on channels channels with publications of
// size bytes.
func newSubscribeRun(cfg *subscribeConfig, channels, size int) *subscribeRun {
	r := &subscribeRun{
		cfg:         cfg,
		subscribers: make([]atomic.Int64, channels),
		published:   make([]atomic.Int64, channels),
	}
	// {"t":<19 digits>,"p":"xxx…"}, size bytes in all when size allows.
	const overhead = len(`{"t":1234567890123456789,"p":""}`)
	r.data = []byte(strings.Repeat("x", max(size-overhead, 0)))
	return r
}

// stamped returns the publication data stamped with the time now.
func (r *subscribeRun) stamped() json.RawMessage {
	b := make([]byte, 0, len(r.data)+40)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"p":"`...)
	b = append(b, r.data...)
	return append(b, `"}`...)
}

// dataSize is the size of a publication's data.
func (r *subscribeRun) dataSize() int64 { return int64(len(r.data)) + 32 }

// runSubscribe, called once right after newBench in --mode subscribe,
// opens the connections, ramped at the connect rate, each connecting to
// the gateway and subscribing to its channels. Once all have, it publishes
// through the API at the rate for the duration, then waits up to
// benchDrainTimeout for the deliveries still due and closes every
// connection. It returns how long publishing lasted.
func (b *bench) runSubscribe(ctx context.Context) time.Duration {
	r := b.sub
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg, ready sync.WaitGroup
	b.ramp(ctx, func(i int) {
		ready.Add(1)
		wg.Go(func() { b.subscriber(ctx, readCtx, i, ready.Done) })
	})
	allReady := make(chan struct{})
	go func() {
		ready.Wait()
		close(allReady)
	}()
	select {
	case <-allReady:
	case <-ctx.Done():
	}
	r.connectTime = time.Since(b.start)
	if ctx.Err() == nil && r.subscribed.Load() > 0 {
		r.publishTime = b.publish(ctx)
		for j := range r.published {
			r.expected += r.published[j].Load() * r.subscribers[j].Load()
		}
		deadline := time.Now().Add(benchDrainTimeout)
		for b.received.Load() < r.expected && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stopReading()
	wg.Wait()
	<-allReady
	return r.publishTime
}

// subscriber is the life of connection i: dial, connect and subscribe,
// then count the publications that come until readCtx ends, and close.
// It calls ready once subscribed or failed.
func (b *bench) subscriber(ctx, readCtx context.Context, i int, ready func()) {
	r := b.sub
	readied := false
	defer func() {
		if !readied {
			ready()
		}
	}()
	c := b.dial(ctx, i)
	if c == nil {
		return
	}
	defer b.open.Add(-1)
	c.SetReadLimit(r.dataSize() + 1<<20)
	if c.Subprotocol() != gatewaySubprotocol {
		b.countError(&phaseError{"connect", errNotGateway})
		c.Close(websocket.StatusNormalClosure, "")
		return
	}

	channels := r.cfg.channelsOf(i)
	if failure := b.subscribe(ctx, c, channels); failure != nil {
		if ctx.Err() == nil {
			b.countError(failure)
		}
		c.CloseNow()
		return
	}
	for _, j := range channels {
		r.subscribers[j].Add(1)
	}
	r.subscribed.Add(1)
	readied = true
	ready()

	for {
		_, p, err := c.Read(readCtx)
		if err != nil {
			if readCtx.Err() != nil {
				break // the bench is over
			}
			b.countError(&phaseError{"read", err})
			c.CloseNow()
			return
		}
		b.delivered(time.Now(), p)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil && ctx.Err() == nil {
		b.countError(&phaseError{"close", err})
	}
}

// subscribe connects and subscribes to channels with one message and
// waits, up to the handshake timeout, for the replies.
func (b *bench) subscribe(ctx context.Context, c *websocket.Conn, channels []int) *phaseError {
	r := b.sub
	cmds := []gwCommand{{ID: 1, Method: "connect", Token: r.cfg.token, Name: gatewayClientName}}
	for k, j := range channels {
		cmds = append(cmds, gwCommand{ID: uint64(k + 2), Method: "subscribe", Channel: r.cfg.name(j)})
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.dialer.handshakeTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, encodeCommands(cmds...)); err != nil {
		return &phaseError{"connect", err}
	}
	var failure *phaseError
	for replies := 0; replies < len(cmds) && failure == nil; {
		_, p, err := c.Read(ctx)
		if err != nil {
			phase := "subscribe"
			if replies == 0 {
				phase = "connect"
			}
			return &phaseError{phase, err}
		}
		now := time.Now()
		eachLine(p, func(line []byte) {
			if !bytes.HasPrefix(line, []byte(`{"id":`)) {
				b.deliveredLine(now, line) // of a channel already subscribed to
				return
			}
			replies++
			var m gwMessage
			if err := json.Unmarshal(line, &m); err != nil {
				failure = &phaseError{"subscribe", fmt.Errorf("not a reply of the protocol: %q", clip(line))}
			} else if m.Error != nil && failure == nil {
				channel := "?"
				if m.ID >= 2 && m.ID <= uint64(len(cmds)) {
					channel = cmds[m.ID-1].Channel
				}
				if m.ID == 1 {
					failure = &phaseError{"connect", m.Error}
				} else {
					failure = &phaseError{"subscribe", fmt.Errorf("%s: %w", channel, m.Error)}
				}
			}
		})
	}
	return failure
}

// delivered counts the publications of a message from the gateway.
func (b *bench) delivered(now time.Time, p []byte) {
	eachLine(p, func(line []byte) { b.deliveredLine(now, line) })
}

var (
	pubPrefix = []byte(`{"push":"pub",`)
	stampKey  = []byte(`"data":{"t":`)
)

// deliveredLine counts a line: a publication of the bench, with its
// latency; a gap or unsubscribe push, as an error. Publications of others
// are left out.
func (b *bench) deliveredLine(now time.Time, line []byte) {
	if !bytes.HasPrefix(line, pubPrefix) {
		b.otherLine(line)
		return
	}
	i := bytes.Index(line, stampKey)
	if i < 0 {
		return
	}
	digits := line[i+len(stampKey):]
	n := 0
	for n < len(digits) && n < 20 && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	sent, err := strconv.ParseInt(string(digits[:n]), 10, 64)
	if err != nil {
		return
	}
	b.latency.Record(time.Duration(now.UnixNano() - sent))
	b.received.Add(1)
	b.bytesReceived.Add(b.sub.dataSize())
}

// otherLine counts the pushes that say publications were lost.
func (b *bench) otherLine(line []byte) {
	var m gwMessage
	if json.Unmarshal(line, &m) != nil {
		return
	}
	switch m.Push {
	case "gap":
		b.countError(&phaseError{"gap", fmt.Errorf("%s: the gateway dropped publications %d to %d", m.Channel, m.From, m.To)})
	case "unsubscribe":
		b.countError(&phaseError{"unsubscribe", fmt.Errorf("%s: unsubscribed by the gateway: %d %q", m.Channel, m.Code, m.Reason)})
	}
}

// publish publishes on every channel subscribed to, at the rate, until
// the duration has passed, --messages publications have been made on each
// channel, or ctx ends, and returns how long that took. Each round
// publishes a new stamped data to every channel: with /api/publish for one
// channel, else /api/broadcast, up to benchBroadcastBatch channels a
// request, up to benchPublishConcurrency requests at once.
func (b *bench) publish(ctx context.Context) time.Duration {
	r := b.sub
	var batches [][]int
	var batch []int
	for j := range r.subscribers {
		if r.subscribers[j].Load() == 0 {
			continue
		}
		batch = append(batch, j)
		if len(batch) == benchBroadcastBatch {
			batches = append(batches, batch)
			batch = nil
		}
	}
	if len(batch) > 0 {
		batches = append(batches, batch)
	}

	pubCtx, stop := context.WithTimeout(ctx, b.cfg.duration)
	defer stop()
	interval := time.Duration(float64(time.Second) / r.cfg.rate)
	slots := make(chan struct{}, benchPublishConcurrency)
	var inFlight sync.WaitGroup
	start := time.Now()
	next := start
	n := 0 // rounds started
rounds:
	for ; b.cfg.messages == 0 || n < b.cfg.messages; n++ {
		if n > 0 {
			next = next.Add(interval)
			if next.Sub(start) >= b.cfg.duration {
				break // no round starts at the deadline or after
			}
			t := time.NewTimer(time.Until(next))
			select {
			case <-t.C:
			case <-pubCtx.Done():
				t.Stop()
				break rounds
			}
		}
		for _, batch := range batches {
			select {
			case slots <- struct{}{}:
			case <-pubCtx.Done():
			}
			if pubCtx.Err() != nil {
				break rounds
			}
			inFlight.Go(func() {
				defer func() { <-slots }()
				b.publishBatch(ctx, batch)
			})
		}
	}
	// Publishing lasted until the round after the last was due, when
	// the rounds kept to the rate.
	elapsed := max(time.Since(start), time.Duration(n)*interval)
	inFlight.Wait()
	return elapsed
}

// publishBatch publishes stamped data to the channels of batch with one
// API request.
func (b *bench) publishBatch(ctx context.Context, batch []int) {
	r := b.sub
	data := r.stamped()
	r.requests.Add(1)
	accepted := func(j int) {
		r.published[j].Add(1)
		r.accepted.Add(1)
		b.bytesSent.Add(int64(len(data)))
	}
	if len(batch) == 1 {
		_, err := r.cfg.api.call(ctx, "publish", map[string]any{"channel": r.cfg.name(batch[0]), "data": data})
		if err != nil {
			r.refused.Add(1)
			if ctx.Err() == nil {
				b.countError(&phaseError{"publish", err})
			}
			return
		}
		accepted(batch[0])
		return
	}
	names := make([]string, len(batch))
	for k, j := range batch {
		names[k] = r.cfg.name(j)
	}
	reply, err := r.cfg.api.call(ctx, "broadcast", map[string]any{"channels": names, "data": data})
	var res struct {
		Results []gwPublishResult `json:"results"`
	}
	if err == nil {
		if json.Unmarshal(reply, &res) != nil || len(res.Results) != len(batch) {
			err = fmt.Errorf("the API's broadcast reply does not give a result for each channel: %s", clip(reply))
		}
	}
	if err != nil {
		r.refused.Add(int64(len(batch)))
		if ctx.Err() == nil {
			b.countError(&phaseError{"publish", err})
		}
		return
	}
	for k, j := range batch {
		if e := res.Results[k].Error; e != nil {
			r.refused.Add(1)
			b.countError(&phaseError{"publish", fmt.Errorf("%s: %w", names[k], e)})
			continue
		}
		accepted(j)
	}
}
