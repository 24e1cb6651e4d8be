package redis

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/redis/rueidis"
)

// Broker is a broker.Broker on Redis. Make one with New, start it once with
// Start, stop it with Close. Every method is safe for concurrent use.
type Broker struct {
	opts   Options
	keys   keyspace
	logger *slog.Logger

	// mu is held by Start for its whole run and by Close to change state,
	// so that Close waits for a Start in progress.
	mu     sync.Mutex
	state  int // stateNew, stateRunning, stateClosed
	client rueidis.Client
	conns  *connTracker
	shards []*shard
	stop   chan struct{}   // closed by Close
	life   context.Context // ends at Close: bounds the shards' own calls
	end    context.CancelFunc
	wg     sync.WaitGroup // the shards' goroutines

	handler broker.Handler // for HandleConnection; the shards have it too
	running atomic.Bool    // between a successful Start and Close
	closed  atomic.Bool    // Close called: nothing more is delivered

	// linkMu orders the HandleConnection calls.
	linkMu    sync.Mutex
	down      int  // shards not connected and subscribed
	up        bool // what HandleConnection said last (true after Start)
	reporting bool // Start has returned: changes are reported
}

const (
	stateNew = iota
	stateRunning
	stateClosed
)

var (
	_ broker.Broker = (*Broker)(nil)

	errNotStarted   = errors.New("not started")
	errStartedTwice = errors.New("redis broker: started twice")
)

// opError is what the Broker's methods return: the method and the cause,
// which errors.Is and errors.As see (broker.ErrClosed, a context's error,
// a server's error reply).
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return "redis broker: " + e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// New returns a Broker for opts, not yet connected: Start connects.
func New(opts Options) (*Broker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Broker{opts: o, keys: newKeyspace(o.Prefix, o.Cluster, o.Shards), logger: logger}, nil
}

// String describes the broker's server, with the password redacted.
func (b *Broker) String() string { return b.opts.String() }

// Start implements broker.Broker. It connects and subscribes the control
// channel before it returns; when the servers cannot be reached before ctx
// ends, it returns an error wrapping ctx.Err() (and the Broker may be
// started again).
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if h == nil {
		return errors.New("redis broker: Start: nil Handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateClosed:
		return &opError{"Start", broker.ErrClosed}
	case stateRunning:
		return errStartedTwice
	}
	if err := ctx.Err(); err != nil {
		return &opError{"Start", err}
	}
	b.conns = newConnTracker()
	// The client library's dials wait for their own timeout, not for ctx:
	// closing the connections is what ends them when ctx does.
	stopWatch := context.AfterFunc(ctx, b.conns.close)
	err := b.connect(ctx, h)
	if !stopWatch() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		b.teardown()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = &causeError{ctx.Err(), err}
		}
		return &opError{"Start", fmt.Errorf("%s: %w", strings.Join(b.opts.Addrs, ","), err)}
	}
	b.state = stateRunning
	b.linkMu.Lock()
	b.handler, b.down, b.up, b.reporting = h, 0, true, true
	b.linkMu.Unlock()
	for _, s := range b.shards {
		b.wg.Add(2)
		go s.run()
		go s.deliverLoop()
	}
	b.running.Store(true)
	return nil
}

// connect makes the client and the shards' connections and waits until
// every shard has subscribed its anchor; b.mu is held.
func (b *Broker) connect(ctx context.Context, h broker.Handler) error {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       b.opts.Addrs,
		ForceSingleClient: !b.opts.Cluster,
		Username:          b.opts.Username,
		Password:          b.opts.Password,
		SelectDB:          b.opts.DB,
		TLSConfig:         b.opts.TLS,
		ClientName:        "duplex",
		Dialer:            net.Dialer{Timeout: b.opts.DialTimeout},
		DialCtxFn:         b.conns.dial,
		ConnWriteTimeout:  b.opts.ConnTimeout,
		DisableCache:      true,
		// Every command goes through the pipeline's own reader, which
		// notices a connection that the server closed at once, rather
		// than at the next command.
		AlwaysPipelining: true,
		MaxFlushDelay:    max(b.opts.FlushDelay, 0),
	})
	if err != nil {
		return err
	}
	b.client = client
	if b.opts.Cluster && client.Mode() != rueidis.ClientModeCluster {
		return errors.New("not a Redis Cluster")
	}
	b.stop = make(chan struct{})
	b.life, b.end = context.WithCancel(context.Background())
	b.shards = make([]*shard, b.opts.Shards)
	for i := range b.shards {
		b.shards[i] = newShard(b, i, h)
	}
	for _, s := range b.shards {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	for _, s := range b.shards {
		if err := s.await(ctx, s.syncedLocked); err != nil {
			return err
		}
		s.mu.Lock()
		s.synced = true
		s.mu.Unlock()
	}
	return nil
}

// teardown releases what a failed Start made; b.mu is held.
func (b *Broker) teardown() {
	for _, s := range b.shards {
		s.disconnect()
	}
	if b.client != nil {
		b.client.Close()
	}
	if b.end != nil {
		b.end()
	}
	b.conns.close()
	b.client, b.shards = nil, nil
}

// ready checks that a call may go ahead.
func (b *Broker) ready(ctx context.Context, op string) error {
	if !b.running.Load() {
		if b.closed.Load() {
			return &opError{op, broker.ErrClosed}
		}
		return &opError{op, errNotStarted}
	}
	if err := ctx.Err(); err != nil {
		return &opError{op, err}
	}
	return nil
}

// fail wraps the error of a call to the server. A call whose context
// ended fails with the context's error, whatever the client library saw
// then (a dial's timeout, say), and a network timeout wraps
// context.DeadlineExceeded too.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	switch {
	case b.closed.Load() && (errors.Is(err, rueidis.ErrClosing) || errors.Is(err, net.ErrClosed)):
		err = broker.ErrClosed
	case ctxErr(ctx) != nil && !errors.Is(err, ctxErr(ctx)):
		err = &causeError{ctxErr(ctx), err}
	case isTimeout(err) && !errors.Is(err, context.DeadlineExceeded):
		// A network timeout before the call's own deadline (a dial that
		// another call started, bounded by that call's context): a
		// deadline all the same, to callers that test for one.
		err = &causeError{context.DeadlineExceeded, err}
	}
	return &opError{op, err}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ctxErr is ctx.Err(), or DeadlineExceeded once its deadline has passed
// even if its timer has not fired yet: a dial bounded by the deadline
// fails with its own timeout at that instant, and on a loaded machine the
// context reports its end a little later.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// causeError is a context's error and what the call saw when it ended.
type causeError struct{ ctxErr, cause error }

func (e *causeError) Error() string { return e.ctxErr.Error() + " (" + e.cause.Error() + ")" }
func (e *causeError) Unwrap() error { return e.ctxErr }

// retryable reports whether an idempotent call that failed with err may be
// tried once more: the connection broke, and there is time left.
func (b *Broker) retryable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || b.closed.Load() {
		return false
	}
	_, isReply := rueidis.IsRedisErr(err)
	return !isReply && !errors.Is(err, rueidis.ErrClosing)
}

// do runs an idempotent call, once more if the connection broke under it.
func (b *Broker) do(ctx context.Context, call func() rueidis.RedisResult) rueidis.RedisResult {
	r := call()
	if b.retryable(ctx, r.Error()) {
		r = call()
	}
	return r
}

// bytesString returns b's bytes as a string without a copy; b must not
// change afterwards.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// millis returns d in whole milliseconds, rounded up.
func millis(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// publishCmd publishes m to a channel: sharded pub/sub on a Cluster, so
// that a message travels to the slot's master only, not to every node.
func (b *Broker) publishCmd(channel, m string) rueidis.Completed {
	if b.opts.Cluster {
		return b.client.B().Spublish().Channel(channel).Message(m).Build()
	}
	return b.client.B().Publish().Channel(channel).Message(m).Build()
}

// Publish implements broker.Broker. With history it runs one script that
// gives the publication its offset, appends it, trims the history, sets
// the keys' expiry and publishes it, so that offset order is delivery
// order on every node. A call that fails for a broken connection is not
// tried again: the publication may have been made.
func (b *Broker) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.ready(ctx, "Publish"); err != nil {
		return broker.Position{}, err
	}
	sh := b.keys.shard(channel)
	wire := b.keys.name("c", sh, channel)
	if opts.HistorySize <= 0 {
		buf := make([]byte, 0, len(data)+64)
		buf = appendBody(append(buf, kindPublication, '0', ' ', ' '), info, data)
		if err := b.client.Do(ctx, b.publishCmd(wire, bytesString(buf))).Error(); err != nil {
			return broker.Position{}, b.fail(ctx, "Publish", err)
		}
		return broker.Position{}, nil
	}
	body := appendBody(make([]byte, 0, len(data)+64), info, data)
	streamTTL := opts.StreamTTL
	if streamTTL <= 0 {
		streamTTL = broker.DefaultStreamTTL
	}
	pubCmd := "publish"
	if b.opts.Cluster {
		pubCmd = "spublish"
	}
	historyTTL := "0"
	if opts.HistoryTTL > 0 {
		historyTTL = millis(opts.HistoryTTL)
	}
	r := publishScript.Exec(ctx, b.client,
		[]string{b.keys.name("m", sh, channel), b.keys.name("h", sh, channel)},
		[]string{wire, bytesString(body), newEpoch(), strconv.Itoa(opts.HistorySize),
			historyTTL, millis(max(streamTTL, opts.HistoryTTL)), pubCmd})
	vals, err := r.ToArray()
	if err != nil {
		return broker.Position{}, b.fail(ctx, "Publish", err)
	}
	if len(vals) != 2 {
		return broker.Position{}, b.fail(ctx, "Publish", errMalformed)
	}
	offset, err1 := vals[0].AsInt64()
	epoch, err2 := vals[1].ToString()
	if err1 != nil || err2 != nil || offset <= 0 {
		return broker.Position{}, b.fail(ctx, "Publish", errMalformed)
	}
	return broker.Position{Offset: uint64(offset), Epoch: epoch}, nil
}

// PublishJoin implements broker.Broker.
func (b *Broker) PublishJoin(ctx context.Context, channel string, info *broker.ClientInfo) error {
	return b.publishEvent(ctx, "PublishJoin", kindJoin, channel, info)
}

// PublishLeave implements broker.Broker.
func (b *Broker) PublishLeave(ctx context.Context, channel string, info *broker.ClientInfo) error {
	return b.publishEvent(ctx, "PublishLeave", kindLeave, channel, info)
}

func (b *Broker) publishEvent(ctx context.Context, op string, kind byte, channel string, info *broker.ClientInfo) error {
	if err := b.ready(ctx, op); err != nil {
		return err
	}
	m := appendInfo(append(make([]byte, 0, 64), kind), info)
	wire := b.keys.name("c", b.keys.shard(channel), channel)
	if err := b.client.Do(ctx, b.publishCmd(wire, bytesString(m))).Error(); err != nil {
		return b.fail(ctx, op, err)
	}
	return nil
}

// Control implements broker.Broker.
func (b *Broker) Control(ctx context.Context, data []byte) error {
	if err := b.ready(ctx, "Control"); err != nil {
		return err
	}
	m := append(append(make([]byte, 0, len(data)+1), kindControl), data...)
	if err := b.client.Do(ctx, b.publishCmd(b.keys.control, bytesString(m))).Error(); err != nil {
		return b.fail(ctx, "Control", err)
	}
	return nil
}

// Subscribe implements broker.Broker. It returns once the server has
// confirmed the subscription. When ctx ends first, it returns ctx's error
// and the channel is not subscribed, unless it already was.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.ready(ctx, "Subscribe"); err != nil {
		return err
	}
	sh := b.keys.shard(channel)
	if err := b.shards[sh].subscribe(ctx, b.keys.name("c", sh, channel), channel); err != nil {
		return &opError{"Subscribe", err}
	}
	return nil
}

// Unsubscribe implements broker.Broker. Delivery of the channel stops at
// once; it returns once the server has confirmed, or when ctx ends.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if err := b.ready(ctx, "Unsubscribe"); err != nil {
		return err
	}
	sh := b.keys.shard(channel)
	if err := b.shards[sh].unsubscribe(ctx, b.keys.name("c", sh, channel)); err != nil {
		return &opError{"Unsubscribe", err}
	}
	return nil
}

// History implements broker.Broker. A channel without a stream reads as
// offset 0 without an epoch, and reading creates nothing: the stream and
// its epoch are made by the first Publish with history.
func (b *Broker) History(ctx context.Context, channel string, opts broker.HistoryOptions) (broker.HistoryResult, error) {
	if err := b.ready(ctx, "History"); err != nil {
		return broker.HistoryResult{}, err
	}
	sh := b.keys.shard(channel)
	limit := opts.Limit
	if limit < 0 {
		limit = -1
	}
	reverse, since, sinceEpoch := "0", "", ""
	if opts.Reverse {
		reverse = "1"
	}
	if opts.Since != nil {
		since, sinceEpoch = strconv.FormatUint(opts.Since.Offset, 10), opts.Since.Epoch
	}
	keys := []string{b.keys.name("m", sh, channel), b.keys.name("h", sh, channel)}
	args := []string{strconv.Itoa(limit), reverse, since, sinceEpoch}
	r := b.do(ctx, func() rueidis.RedisResult { return historyScript.Exec(ctx, b.client, keys, args) })
	vals, err := r.ToArray()
	if err != nil {
		return broker.HistoryResult{}, b.fail(ctx, "History", err)
	}
	if len(vals) < 2 || len(vals)%2 != 0 {
		return broker.HistoryResult{}, b.fail(ctx, "History", errMalformed)
	}
	top, err1 := vals[0].AsInt64()
	epoch, err2 := vals[1].ToString()
	if err1 != nil || err2 != nil || top < 0 {
		return broker.HistoryResult{}, b.fail(ctx, "History", errMalformed)
	}
	res := broker.HistoryResult{Position: broker.Position{Offset: uint64(top), Epoch: epoch}}
	if n := len(vals)/2 - 1; n > 0 {
		res.Publications = make([]*broker.Publication, 0, n)
	}
	for i := 2; i < len(vals); i += 2 {
		id, err1 := vals[i].ToString()
		body, err2 := vals[i+1].ToString()
		if err1 != nil || err2 != nil {
			return broker.HistoryResult{}, b.fail(ctx, "History", errMalformed)
		}
		offset, err := parseEntryOffset(id)
		if err != nil {
			return broker.HistoryResult{}, b.fail(ctx, "History", err)
		}
		pub, err := parseBody(channel, body, broker.Position{Offset: offset, Epoch: epoch})
		if err != nil {
			return broker.HistoryResult{}, b.fail(ctx, "History", err)
		}
		res.Publications = append(res.Publications, pub)
	}
	return res, nil
}

func (b *Broker) presenceKeys(channel string) []string {
	sh := b.keys.shard(channel)
	return []string{b.keys.name("p", sh, channel), b.keys.name("z", sh, channel), b.keys.name("u", sh, channel)}
}

// AddPresence implements broker.Broker. A ttl of 0 is Options.PresenceTTL;
// no member lives forever on a server that several nodes share.
func (b *Broker) AddPresence(ctx context.Context, channel string, info *broker.ClientInfo, ttl time.Duration) error {
	if err := b.ready(ctx, "AddPresence"); err != nil {
		return err
	}
	if info == nil {
		return &opError{"AddPresence", errors.New("nil ClientInfo")}
	}
	if ttl <= 0 {
		ttl = b.opts.PresenceTTL
	}
	keys := b.presenceKeys(channel)
	args := []string{info.Client, info.User, bytesString(appendInfo(nil, info)), millis(ttl)}
	r := b.do(ctx, func() rueidis.RedisResult { return presenceAddScript.Exec(ctx, b.client, keys, args) })
	if err := r.Error(); err != nil {
		return b.fail(ctx, "AddPresence", err)
	}
	return nil
}

// RemovePresence implements broker.Broker.
func (b *Broker) RemovePresence(ctx context.Context, channel, client string) error {
	if err := b.ready(ctx, "RemovePresence"); err != nil {
		return err
	}
	keys := b.presenceKeys(channel)
	r := b.do(ctx, func() rueidis.RedisResult {
		return presenceRemoveScript.Exec(ctx, b.client, keys, []string{client})
	})
	if err := r.Error(); err != nil {
		return b.fail(ctx, "RemovePresence", err)
	}
	return nil
}

// Presence implements broker.Broker. Members whose ttl passed are removed
// as it reads.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*broker.ClientInfo, error) {
	if err := b.ready(ctx, "Presence"); err != nil {
		return nil, err
	}
	keys := b.presenceKeys(channel)
	r := b.do(ctx, func() rueidis.RedisResult {
		return presenceGetScript.Exec(ctx, b.client, keys, []string{"members"})
	})
	vals, err := r.ToArray()
	if err != nil {
		return nil, b.fail(ctx, "Presence", err)
	}
	out := make(map[string]*broker.ClientInfo, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		client, err1 := vals[i].ToString()
		v, err2 := vals[i+1].ToString()
		if err1 != nil || err2 != nil {
			return nil, b.fail(ctx, "Presence", errMalformed)
		}
		info, _, err := parseInfo(v)
		if err != nil || info == nil {
			return nil, b.fail(ctx, "Presence", errMalformed)
		}
		out[client] = info
	}
	return out, nil
}

// PresenceStats implements broker.Broker. It counts without listing: the
// server keeps the number of clients of each user.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	if err := b.ready(ctx, "PresenceStats"); err != nil {
		return broker.PresenceStats{}, err
	}
	keys := b.presenceKeys(channel)
	r := b.do(ctx, func() rueidis.RedisResult {
		return presenceGetScript.Exec(ctx, b.client, keys, []string{"stats"})
	})
	vals, err := r.ToArray()
	if err != nil {
		return broker.PresenceStats{}, b.fail(ctx, "PresenceStats", err)
	}
	if len(vals) != 2 {
		return broker.PresenceStats{}, b.fail(ctx, "PresenceStats", errMalformed)
	}
	clients, err1 := vals[0].AsInt64()
	users, err2 := vals[1].AsInt64()
	if err1 != nil || err2 != nil {
		return broker.PresenceStats{}, b.fail(ctx, "PresenceStats", errMalformed)
	}
	return broker.PresenceStats{Clients: int(clients), Users: int(users)}, nil
}

// Close implements broker.Broker. Nothing is delivered once it returns; it
// waits for the broker's goroutines and closes every connection, bounded
// by ctx.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.state == stateClosed {
		b.mu.Unlock()
		return nil
	}
	started := b.state == stateRunning
	b.state = stateClosed
	// Under linkMu: no HandleConnection call begins after this.
	b.linkMu.Lock()
	b.closed.Store(true)
	b.linkMu.Unlock()
	b.running.Store(false)
	b.mu.Unlock()
	if !started {
		return nil
	}
	close(b.stop)
	b.end()
	// A delivery under way ends before Close returns; there is none after.
	for _, s := range b.shards {
		s.stopDelivery()
	}
	// Closing the connections first ends a reconnection that waits on a
	// server that hangs.
	b.conns.close()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		b.client.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return &opError{"Close", ctx.Err()}
	}
}

// deliver hands a pub/sub message of channel to h. It runs on the reading
// goroutine of the shard's connection, under the shard's deliverMu.
func (b *Broker) deliver(h broker.Handler, channel string, control bool, m string) {
	if len(m) == 0 {
		return
	}
	switch kind, rest := m[0], m[1:]; {
	case control:
		if kind == kindControl {
			h.HandleControl([]byte(rest))
		}
	case kind == kindPublication:
		pub, err := parsePublication(channel, rest)
		if err != nil {
			b.logger.Warn("redis broker: dropped a malformed publication", "channel", channel)
			return
		}
		h.HandlePublication(pub)
	case kind == kindJoin, kind == kindLeave:
		info, tail, err := parseInfo(rest)
		if err != nil || tail != "" {
			b.logger.Warn("redis broker: dropped a malformed presence event", "channel", channel)
			return
		}
		if kind == kindJoin {
			h.HandleJoin(channel, info)
		} else {
			h.HandleLeave(channel, info)
		}
	}
}

// shardLost counts a shard whose connection broke; the first one to go
// reports the link down.
func (b *Broker) shardLost(err error) {
	b.linkMu.Lock()
	defer b.linkMu.Unlock()
	b.down++
	if b.up && b.reporting && !b.closed.Load() {
		b.up = false
		b.logger.Warn("redis broker: connection lost", "err", err)
		b.handler.HandleConnection(false)
	}
}

// shardSynced counts a shard connected again with all its channels
// subscribed; the last one back reports the link up.
func (b *Broker) shardSynced() {
	b.linkMu.Lock()
	defer b.linkMu.Unlock()
	b.down--
	if b.down == 0 && !b.up && b.reporting && !b.closed.Load() {
		b.up = true
		b.logger.Info("redis broker: connection restored")
		b.handler.HandleConnection(true)
	}
}
