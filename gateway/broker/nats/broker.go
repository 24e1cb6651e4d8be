// Package nats is a broker.Broker on NATS: publications fan out to the
// nodes on core NATS subjects, history and presence live in JetStream.
//
// One stream per prefix, P_history, stores the publications with history,
// one subject per channel. The stream republishes every message it stores
// to the channel's live subject, which the subscribed nodes listen to: only
// stored publications are delivered, and in the order of the store. Offsets
// are counted per channel, 1, 2, 3… without holes: a node appends with
// JetStream's expected-last-subject-sequence, so an append made on a stale
// view of the channel is refused and retried, and each publication's offset
// is one more than its predecessor's in the stream. The epoch and the
// offset travel in the message. Presence lives in the key-value bucket
// P_presence, one key per member, kept alive by its node's heartbeat (see
// presence.go).
//
// What it costs: a publication with history is one round trip to the
// server, and three when another node appended to the channel since this
// node last saw it (a node subscribed to the channel sees every append).
// A node's publications to one channel take turns, so a channel takes
// about one publication per round trip and node; channels go in parallel.
// History is two round trips, reading about what it returns; Presence one
// batched read. Each channel a node subscribes to holds one nats.go
// subscription and its goroutine.
//
// It needs nats-server 2.11 or later, with JetStream, for per-message TTLs
// and batched direct gets.
//
// The nodes' clocks should agree, with each other and with the servers',
// within a small share of the shortest HistoryTTL, StreamTTL and presence
// TTL: a node stamps what it writes, and applies those lifetimes to what
// it reads (the server removes the expired messages later, in whole
// seconds).
package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duplexws/duplex/gateway/broker"
)

// ErrUnavailable is returned, wrapped, by a call that needs the server
// while this node's link to it is down and the call cannot wait for it.
var ErrUnavailable = errors.New("nats broker: the link to NATS is down")

// Broker is a broker.Broker on NATS. Its methods are safe for concurrent
// use.
type Broker struct {
	opts  Options
	names names
	err   error // from the options, returned by Start

	mu        sync.Mutex
	state     brokerState
	closeDone chan struct{} // closed when Close has finished

	// Set by Start before running, then read-only.
	nc      *natsgo.Conn
	js      jetstream.JetStream
	handler broker.Handler

	running   atomic.Bool  // between a successful Start and Close
	linkUp    atomic.Bool  // the monitor's view of the link
	lastProof atomic.Int64 // when a round trip last succeeded, Unix nanoseconds

	states *channelStates
	subs   subscriptions
	connMu sync.RWMutex // Close holds it to close nc; making a subscription, read-locked

	ensureSem chan struct{} // one creation of the stream or bucket at a time

	stop        chan struct{}               // closed by Close
	closing     context.Context             // done when Close begins
	cancel      context.CancelFunc          // of closing
	wg          sync.WaitGroup              // the monitor, the janitor and the presence keeper
	subWG       sync.WaitGroup              // nats.go's delivery goroutines, one per subscription
	connClosed  chan struct{}               // closed by nats.go's closed handler of nc
	current     atomic.Pointer[natsgo.Conn] // nc, for nats.go's callbacks
	linkEvent   chan struct{}               // wakes the monitor; capacity 1
	linkLost    atomic.Bool                 // the link was lost since the monitor's last look
	purges      chan purgeJob               // to the janitor
	controlSub  *subscription
	replies     replies        // of scans
	dialAborted sync.WaitGroup // dials that Start gave up on
	scanned     atomic.Uint64  // messages read by scan: what reads cost, for tests
	tipReads    atomic.Uint64  // reads of a channel's tip by Publish, for tests

	local      localPresence // the members this node keeps alive
	heartbeats heartbeats    // the nodes' heartbeats, as this node last read them
}

type brokerState int

const (
	stateNew brokerState = iota
	stateStarting
	stateRunning
	stateClosed
)

var _ broker.Broker = (*Broker)(nil)

// New returns a broker for opts; Start connects it. An invalid option is
// reported by Start.
func New(opts Options) *Broker {
	o, err := opts.withDefaults()
	b := &Broker{
		opts:      o,
		names:     newNames(o.Prefix),
		err:       err,
		closeDone: make(chan struct{}),
		states:    newChannelStates(),
		ensureSem: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		linkEvent: make(chan struct{}, 1),
		purges:    make(chan purgeJob, 1024),
		local:     newLocalPresence(),
	}
	b.closing, b.cancel = context.WithCancel(context.Background())
	b.subs.init()
	return b
}

// String describes the broker's options, with secrets redacted.
func (b *Broker) String() string { return "nats broker " + b.opts.String() }

// Start implements broker.Broker: it connects, makes sure that the
// history stream and the presence bucket exist, and subscribes to the
// control subject.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if b.err != nil {
		return b.err
	}
	if h == nil {
		return errors.New("nats broker: Start with a nil handler")
	}
	b.mu.Lock()
	switch b.state {
	case stateClosed:
		b.mu.Unlock()
		return fmt.Errorf("nats broker: start: %w", broker.ErrClosed)
	case stateStarting, stateRunning:
		b.mu.Unlock()
		return errors.New("nats broker: started twice")
	}
	b.state = stateStarting
	b.mu.Unlock()

	err := b.start(ctx, h)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil && b.state == stateClosed {
		err = fmt.Errorf("nats broker: start: %w", broker.ErrClosed)
	}
	if err != nil {
		if b.nc != nil {
			b.current.Store(nil)
			b.nc.Close()
			b.nc, b.connClosed = nil, nil
		}
		if b.state == stateStarting {
			b.state = stateNew // Start may be tried again
		}
		return err
	}
	b.state = stateRunning
	b.linkUp.Store(true)
	b.lastProof.Store(time.Now().UnixNano())
	b.running.Store(true)
	b.controlSub.active.Store(true)
	b.wg.Go(b.monitor)
	b.wg.Go(b.janitor)
	b.wg.Go(b.keepPresence)
	return nil
}

func (b *Broker) start(ctx context.Context, h broker.Handler) error {
	nc, closed, err := b.connect(ctx)
	if err != nil {
		return err
	}
	b.nc, b.connClosed, b.handler = nc, closed, h
	b.current.Store(nc)
	if b.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(b.opts.RequestTimeout)); err != nil {
		return fmt.Errorf("nats broker: %w", err)
	}
	if err := b.ensureStream(ctx); err != nil {
		return err
	}
	if err := b.ensureBucket(ctx); err != nil {
		return err
	}
	b.controlSub = &subscription{b: b, control: true, sem: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(b.names.control, b.controlSub.deliver)
	if err != nil {
		return fmt.Errorf("nats broker: subscribe to control messages: %w", err)
	}
	b.controlSub.sub = sub
	b.subWG.Add(1)
	sub.SetClosedHandler(func(string) { b.subWG.Done() })
	if err := b.replies.start(b); err != nil {
		return fmt.Errorf("nats broker: subscribe to replies: %w", err)
	}
	rctx, cancel := b.requestContext(ctx)
	defer cancel()
	if err := nc.FlushWithContext(rctx); err != nil {
		return fmt.Errorf("nats broker: subscribe to control messages: %w", err)
	}
	return nil
}

// connect dials the servers, bounded by ctx and by DialTimeout, which
// also bounds each reconnection later. closed is closed once nats.go has
// closed the connection.
func (b *Broker) connect(ctx context.Context) (nc *natsgo.Conn, closed chan struct{}, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("nats broker: connect to %s: %w", b.opts.String(), err)
	}
	closed = make(chan struct{})
	opts := []natsgo.Option{
		natsgo.Name(b.opts.Name),
		natsgo.Timeout(b.opts.DialTimeout),
		// Reconnect for ever, also after authentication errors: the
		// credentials may be fixed on the server's side.
		natsgo.MaxReconnects(-1),
		natsgo.IgnoreAuthErrorAbort(),
		natsgo.ReconnectWait(b.opts.ReconnectWait),
		natsgo.ReconnectJitter(b.opts.ReconnectWait, b.opts.ReconnectWait),
		// A publication made while the connection is down fails at once
		// instead of waiting, unseen, in a buffer.
		natsgo.ReconnectBufSize(-1),
		// The monitor notices a hung server within seconds; nats.go's own
		// pings drop a connection whose peer vanished, so that it fails
		// over to another server.
		natsgo.PingInterval(5 * b.opts.HealthInterval),
		natsgo.MaxPingsOutstanding(2),
		// A write to a server that stopped reading would hold the
		// connection's lock, and every call with it, for the default
		// minute.
		natsgo.FlusherTimeout(2 * b.opts.HealthTimeout),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) { b.onLinkEvent(nc, true, "disconnected", err) }),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { b.onLinkEvent(nc, false, "reconnected", nil) }),
		natsgo.ClosedHandler(func(*natsgo.Conn) { close(closed) }),
		natsgo.ErrorHandler(b.onAsyncError),
	}
	switch {
	case b.opts.Token != "":
		opts = append(opts, natsgo.Token(b.opts.Token))
	case b.opts.User != "":
		opts = append(opts, natsgo.UserInfo(b.opts.User, b.opts.Password))
	case b.opts.CredentialsFile != "":
		opts = append(opts, natsgo.UserCredentials(b.opts.CredentialsFile))
	}
	if b.opts.TLS != nil {
		opts = append(opts, natsgo.Secure(b.opts.TLS.Clone()))
	}
	type result struct {
		nc  *natsgo.Conn
		err error
	}
	done := make(chan result, 1)
	b.dialAborted.Add(1)
	go func() {
		defer b.dialAborted.Done()
		nc, err := natsgo.Connect(b.opts.serverURLs(), opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, nil, fmt.Errorf("nats broker: connect to %s: %w", b.opts.String(), r.err)
		}
		return r.nc, closed, nil
	case <-ctx.Done():
		// The dial ends by itself within DialTimeout; close what it
		// makes. Close waits for it.
		b.dialAborted.Add(1)
		go func() {
			defer b.dialAborted.Done()
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, nil, fmt.Errorf("nats broker: connect to %s: %w", b.opts.String(), ctx.Err())
	}
}

// ensureStream creates or updates the history stream.
func (b *Broker) ensureStream(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.StreamConfig{
		Name:              b.names.stream,
		Description:       "Duplex gateway: the history of the channels (broker/nats)",
		Subjects:          []string{b.names.historyAll},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(b.opts.MaxHistorySize),
		Discard:           jetstream.DiscardOld,
		Storage:           storage,
		Replicas:          b.opts.Replicas,
		AllowDirect:       true,
		AllowMsgTTL:       true,
		RePublish:         &jetstream.RePublish{Source: b.names.historyAll, Destination: b.names.liveMapping},
	}
	return b.ensure(ctx, "create the history stream "+b.names.stream, func(ctx context.Context) error {
		_, err := b.js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
}

// ensureBucket creates or updates the presence bucket.
func (b *Broker) ensureBucket(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      b.names.bucket,
		Description: "Duplex gateway: the members of the channels (broker/nats)",
		Storage:     storage,
		Replicas:    b.opts.Replicas,
		// Per-key TTLs; the markers of expired keys live a second.
		LimitMarkerTTL: time.Second,
	}
	return b.ensure(ctx, "create the presence bucket "+b.names.bucket, func(ctx context.Context) error {
		_, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
}

// ensure runs create, one at a time, and explains the errors that mean
// JetStream is missing.
func (b *Broker) ensure(ctx context.Context, what string, create func(context.Context) error) error {
	select {
	case b.ensureSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nats broker: %s: %w", what, ctx.Err())
	}
	defer func() { <-b.ensureSem }()
	rctx, cancel := b.requestContext(ctx)
	defer cancel()
	err := create(rctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, natsgo.ErrNoResponders):
		return fmt.Errorf("nats broker: %s: JetStream is not enabled on the server, or not for this account (nats-server -js): %w", what, err)
	default:
		return fmt.Errorf("nats broker: %s: %w", what, err)
	}
}

// requestContext bounds ctx by RequestTimeout when it has no deadline.
func (b *Broker) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.opts.RequestTimeout)
}

// begin checks, at the start of a call, that the broker runs, that ctx is
// not done, and that the link is up. While the monitor knows the link
// down, a call fails at once with ErrUnavailable rather than write a
// request into a connection that nobody reads: a request that a hung
// server reads once it resumes would be carried out after its caller was
// told it failed. Between the monitor's checks, a call that finds the last
// proof of the link older than it should be (the server may have hung
// since) makes a round trip of its own first.
func (b *Broker) begin(ctx context.Context, op string) error {
	if err := b.beginLocal(ctx, op); err != nil {
		return err
	}
	if !b.linkUp.Load() {
		return fmt.Errorf("nats broker: %s: %w", op, ErrUnavailable)
	}
	if time.Since(time.Unix(0, b.lastProof.Load())) > b.opts.HealthInterval*3/2 {
		pctx, cancel := context.WithTimeout(ctx, b.opts.HealthTimeout)
		defer cancel()
		if err := b.nc.FlushWithContext(pctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("nats broker: %s: %w", op, ctx.Err())
			}
			b.wakeMonitor()
			return fmt.Errorf("nats broker: %s: %w", op, ErrUnavailable)
		}
		b.proved()
	}
	return nil
}

// proved records a successful round trip.
func (b *Broker) proved() { b.lastProof.Store(time.Now().UnixNano()) }

// beginLocal is begin for a call that needs no answer from the server.
func (b *Broker) beginLocal(ctx context.Context, op string) error {
	if !b.running.Load() {
		return fmt.Errorf("nats broker: %s: %w", op, broker.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats broker: %s: %w", op, err)
	}
	return nil
}

// fail wraps the error of a call, as ErrClosed when the broker was closed
// under it, as ErrUnavailable when the connection is down.
func (b *Broker) fail(op, channel string, err error) error {
	if !b.running.Load() {
		err = broker.ErrClosed
	} else if errors.Is(err, natsgo.ErrReconnectBufExceeded) || errors.Is(err, natsgo.ErrConnectionReconnecting) ||
		errors.Is(err, natsgo.ErrConnectionClosed) {
		err = ErrUnavailable
	}
	if channel == "" {
		return fmt.Errorf("nats broker: %s: %w", op, err)
	}
	return fmt.Errorf("nats broker: %s %q: %w", op, channel, err)
}

// Close implements broker.Broker. It waits, bounded by ctx, for the
// broker's goroutines and nats.go's.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	switch b.state {
	case stateClosed:
		b.mu.Unlock()
		select {
		case <-b.closeDone:
		case <-ctx.Done():
		}
		return nil
	case stateNew, stateStarting:
		// A Start under way sees the state and closes what it made.
		b.state = stateClosed
		b.mu.Unlock()
		b.cancel()
		defer close(b.closeDone)
		return waitFor(ctx, b.dialAborted.Wait)
	}
	b.state = stateClosed
	b.running.Store(false)
	b.mu.Unlock()
	defer close(b.closeDone)

	close(b.stop)
	b.cancel()
	b.connMu.Lock()
	b.controlSub.active.Store(false)
	b.subs.deactivateAll()
	b.nc.Close()
	b.connMu.Unlock()
	return waitFor(ctx, func() {
		b.wg.Wait()
		b.subWG.Wait()
		b.dialAborted.Wait()
		<-b.connClosed
	})
}

// waitFor runs wait and returns when it does, or with an error when ctx
// ends first.
func waitFor(ctx context.Context, wait func()) error {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats broker: close: %w", ctx.Err())
	}
}
