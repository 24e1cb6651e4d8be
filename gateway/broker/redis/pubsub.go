package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/redis/rueidis"
)

// A shard is one pub/sub connection of a node and the channels it carries.
// Its goroutine (run) owns the connection: it makes it, keeps its
// subscriptions in line with what the node wants, checks it with PING and
// makes it again when it breaks. The client library's reading goroutine of
// the connection calls the hooks, in the order the server sent: messages
// are delivered there, one at a time, and subscription confirmations
// update what the server has.
//
// Subscribe and Unsubscribe change want and wait until have agrees.
// Deliveries are filtered by want, so an Unsubscribe stops them at once.
type shard struct {
	b      *Broker
	h      broker.Handler
	index  int
	anchor string        // always wanted; "" when not needed
	wake   chan struct{} // tells run that want or have changed

	// deliverMu makes deliveries one at a time, and Close wait for the
	// one under way.
	deliverMu sync.Mutex
	stopped   bool // by Close: no more deliveries; guarded by deliverMu

	// The inbox: the connection's reader appends what it reads and never
	// waits for the node; deliverLoop delivers it, in order.
	inMu       sync.Mutex
	inbox      []inMsg
	inBytes    int
	inReady    chan struct{} // a message was added
	overflowed chan uint64   // the connection whose messages went over MaxPendingBytes
	dropGen    uint64        // the connection whose messages overflowed; guarded by inMu

	mu      sync.RWMutex
	want    map[string]string // server channel name -> channel, what the node wants
	have    map[string]bool   // what the server confirmed on this connection
	pending map[string]bool   // sent, not yet confirmed: true subscribe, false unsubscribe
	changed chan struct{}     // closed and replaced when have or the connection change
	gen     uint64            // of the current connection; 0 when there is none
	lastGen uint64
	conn    rueidis.DedicatedClient
	lost    <-chan error // from SetPubSubHooks: the connection closed
	moved   bool         // the server unsubscribed by itself (a slot moved)
	synced  bool         // have covered want on this connection; counted by the Broker

	lastRead atomic.Int64 // Unix nanoseconds when a message was last read, for ping
}

// inMsg is a message read from connection gen.
type inMsg struct {
	gen           uint64
	channel, body string
}

func newShard(b *Broker, i int, h broker.Handler) *shard {
	s := &shard{
		b: b, h: h, index: i, anchor: b.keys.anchors[i],
		wake:       make(chan struct{}, 1),
		want:       make(map[string]string),
		have:       make(map[string]bool),
		pending:    make(map[string]bool),
		changed:    make(chan struct{}),
		inReady:    make(chan struct{}, 1),
		overflowed: make(chan uint64, 1),
	}
	if s.anchor != "" {
		s.want[s.anchor] = ""
	}
	return s
}

var errTooSlow = errors.New("the node read more than MaxPendingBytes it had not delivered yet (too slow for its traffic)")

var errMoved = errors.New("the server unsubscribed the shard's channels (its slot moved)")

// maxChannelsPerCommand bounds the channels of one SUBSCRIBE.
const maxChannelsPerCommand = 512

func (s *shard) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// notifyLocked wakes the waiters of changed; s.mu is held.
func (s *shard) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// await waits until cond, called with s.mu read-locked, holds.
func (s *shard) await(ctx context.Context, cond func() bool) error {
	for {
		s.mu.RLock()
		ok := cond()
		changed := s.changed
		s.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.b.stop:
			return broker.ErrClosed
		}
	}
}

// syncedLocked reports whether the connection has every wanted channel.
func (s *shard) syncedLocked() bool {
	if s.conn == nil {
		return false
	}
	for w := range s.want {
		if !s.have[w] {
			return false
		}
	}
	return true
}

func (s *shard) subscribe(ctx context.Context, wire, channel string) error {
	s.mu.Lock()
	_, already := s.want[wire]
	s.want[wire] = channel
	s.mu.Unlock()
	s.poke()
	err := s.await(ctx, func() bool { return s.have[wire] })
	if err != nil && !already {
		s.mu.Lock()
		delete(s.want, wire)
		s.mu.Unlock()
		s.poke()
	}
	return err
}

func (s *shard) unsubscribe(ctx context.Context, wire string) error {
	s.mu.Lock()
	delete(s.want, wire)
	s.mu.Unlock()
	s.poke()
	return s.await(ctx, func() bool {
		_, inFlight := s.pending[wire]
		return !s.have[wire] && !inFlight
	})
}

func (s *shard) hooks(gen uint64) rueidis.PubSubHooks {
	return rueidis.PubSubHooks{
		OnMessage:      func(m rueidis.PubSubMessage) { s.onMessage(gen, m) },
		OnSubscription: func(sub rueidis.PubSubSubscription) { s.onSubscription(gen, sub) },
	}
}

// onMessage runs on the connection's reading goroutine: it only queues
// the message for deliverLoop. A node too slow for its traffic fills the
// inbox to MaxPendingBytes; then the connection counts as lost (run
// drops it), and its later messages are dropped with it.
func (s *shard) onMessage(gen uint64, m rueidis.PubSubMessage) {
	s.lastRead.Store(time.Now().UnixNano())
	s.inMu.Lock()
	defer s.inMu.Unlock()
	if gen == s.dropGen {
		return
	}
	if s.inBytes+len(m.Message) > s.b.opts.MaxPendingBytes && len(s.inbox) > 0 {
		s.dropGen = gen
		select {
		case s.overflowed <- gen:
		default:
		}
		return
	}
	s.inbox = append(s.inbox, inMsg{gen, m.Channel, m.Message})
	s.inBytes += len(m.Message)
	select {
	case s.inReady <- struct{}{}:
	default:
	}
}

// undelivered returns the bytes read and not yet delivered.
func (s *shard) undelivered() int {
	s.inMu.Lock()
	defer s.inMu.Unlock()
	return s.inBytes
}

// deliverLoop delivers the inbox, in order, from Start to Close.
func (s *shard) deliverLoop() {
	defer s.b.wg.Done()
	var batch []inMsg
	for {
		select {
		case <-s.b.stop:
			return
		case <-s.inReady:
		}
		s.inMu.Lock()
		batch, s.inbox = s.inbox, batch[:0]
		s.inMu.Unlock()
		for i, m := range batch {
			s.deliverOne(m)
			s.inMu.Lock()
			s.inBytes -= len(m.body)
			s.inMu.Unlock()
			batch[i] = inMsg{}
		}
	}
}

// deliverOne hands one message to the Handler, unless it is of a channel
// no longer wanted, of a connection since replaced or lost (the link was
// reported lost: its channels catch up), or Close has begun.
func (s *shard) deliverOne(m inMsg) {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	s.mu.RLock()
	channel, wanted := s.want[m.channel]
	current := s.gen == m.gen
	s.mu.RUnlock()
	control := m.channel == s.b.keys.control
	if !wanted || !current || s.stopped || channel == "" && !control {
		return // not subscribed, an old connection, or another shard's anchor
	}
	s.b.deliver(s.h, channel, control, m.body)
}

// stopDelivery waits for a delivery under way and lets no other start.
func (s *shard) stopDelivery() {
	s.deliverMu.Lock()
	s.stopped = true
	s.deliverMu.Unlock()
}

func (s *shard) onSubscription(gen uint64, sub rueidis.PubSubSubscription) {
	s.mu.Lock()
	if gen != s.gen {
		s.mu.Unlock()
		return
	}
	w := sub.Channel
	switch sub.Kind {
	case "subscribe", "ssubscribe":
		s.have[w] = true
		if s.pending[w] {
			delete(s.pending, w)
		}
	case "unsubscribe", "sunsubscribe":
		if subscribing, inFlight := s.pending[w]; inFlight && !subscribing {
			delete(s.pending, w)
		} else if _, wanted := s.want[w]; wanted && s.have[w] {
			// Not asked for: the server moved the slot elsewhere.
			s.moved = true
		}
		delete(s.have, w)
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.poke()
}

// connect makes a new connection and sends the subscriptions of every
// wanted channel.
func (s *shard) connect(ctx context.Context) error {
	conn, _ := s.b.client.Dedicate() // conn.Close releases it
	s.mu.Lock()
	s.lastGen++
	gen := s.lastGen
	s.gen = gen
	s.mu.Unlock()
	lost := conn.SetPubSubHooks(s.hooks(gen))
	s.mu.Lock()
	s.conn, s.lost = conn, lost
	clear(s.have)
	clear(s.pending)
	s.moved, s.synced = false, false
	s.notifyLocked()
	s.mu.Unlock()
	if err := s.reconcile(ctx); err != nil {
		s.disconnect()
		return err
	}
	// A shard that wants no channel (on a standalone server every shard
	// but the control channel's, until channels hash to it) hears no
	// subscription that would wake its loop to mark it synced, and so a
	// node never reported its link back after a loss. Such a shard is
	// synced once the server answers: ask, then wake the loop.
	s.mu.RLock()
	idle := len(s.want) == 0
	s.mu.RUnlock()
	if idle {
		if err := s.ping(); err != nil {
			s.disconnect()
			return err
		}
		s.poke()
	}
	return nil
}

// disconnect closes the connection, if any, and reports whether it had
// been counted as synced.
func (s *shard) disconnect() (wasSynced bool) {
	s.mu.Lock()
	conn := s.conn
	wasSynced = s.synced
	s.conn, s.lost, s.gen = nil, nil, 0
	clear(s.have)
	clear(s.pending)
	s.moved, s.synced = false, false
	s.notifyLocked()
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	return wasSynced
}

// reconcile sends what makes the server's subscriptions match want.
func (s *shard) reconcile(ctx context.Context) error {
	s.mu.Lock()
	conn := s.conn
	if conn == nil {
		s.mu.Unlock()
		return nil
	}
	var sub, unsub []string
	for w := range s.want {
		if subscribing, inFlight := s.pending[w]; !s.have[w] && (!inFlight || !subscribing) {
			sub = append(sub, w)
			s.pending[w] = true
		}
	}
	for w := range s.have {
		if _, wanted := s.want[w]; !wanted {
			if subscribing, inFlight := s.pending[w]; !inFlight || subscribing {
				unsub = append(unsub, w)
				s.pending[w] = false
			}
		}
	}
	s.mu.Unlock()
	for _, op := range []struct {
		subscribing bool
		channels    []string
	}{{true, sub}, {false, unsub}} {
		for chs := op.channels; len(chs) > 0; {
			n := min(len(chs), maxChannelsPerCommand)
			if err := s.send(ctx, conn, op.subscribing, chs[:n]); err != nil {
				return err
			}
			chs = chs[n:]
		}
	}
	return nil
}

func (s *shard) send(ctx context.Context, conn rueidis.DedicatedClient, subscribing bool, channels []string) error {
	var cmd rueidis.Completed
	switch {
	case s.b.opts.Cluster && subscribing:
		cmd = conn.B().Ssubscribe().Channel(channels...).Build()
	case s.b.opts.Cluster:
		cmd = conn.B().Sunsubscribe().Channel(channels...).Build()
	case subscribing:
		cmd = conn.B().Subscribe().Channel(channels...).Build()
	default:
		cmd = conn.B().Unsubscribe().Channel(channels...).Build()
	}
	ctx, cancel := context.WithTimeout(ctx, s.b.opts.HealthTimeout)
	defer cancel()
	return conn.Do(ctx, cmd).Error()
}

// ping checks the connection with a PING. Its answer comes in order after
// the messages the server has already sent, so a node that is busy
// delivering reads it late: a connection whose messages are still being
// read is busy, not lost, and dropping it would lose what the server had
// queued for it. The PING fails only when neither its answer nor any
// message has been read for HealthTimeout.
func (s *shard) ping() error {
	s.mu.RLock()
	conn := s.conn
	s.mu.RUnlock()
	if conn == nil {
		return nil
	}
	timeout := s.b.opts.HealthTimeout
	ctx, cancel := context.WithCancel(s.b.life)
	answer := make(chan error, 1)
	go func() { answer <- conn.Do(ctx, conn.B().Ping().Build()).Error() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case err := <-answer:
			cancel()
			return err
		case <-t.C:
			if quiet := time.Since(time.Unix(0, s.lastRead.Load())); quiet < timeout {
				t.Reset(timeout - quiet)
				continue
			}
			cancel()
			<-answer
			return fmt.Errorf("no answer to PING and no message for %v: %w", timeout, context.DeadlineExceeded)
		}
	}
}

// run owns the connection from Start to Close.
func (s *shard) run() {
	defer s.b.wg.Done()
	health := time.NewTicker(s.b.opts.HealthInterval)
	defer health.Stop()
	var backoff time.Duration
	for {
		s.mu.RLock()
		connected, lost, moved := s.conn != nil, s.lost, s.moved
		s.mu.RUnlock()
		if !connected {
			if backoff > 0 && !s.sleep(backoff) {
				return
			}
			// After an overflow, not before the node has caught up with
			// half of it: a new connection would overflow at once.
			for s.undelivered() > s.b.opts.MaxPendingBytes/2 {
				if !s.sleep(10 * time.Millisecond) {
					return
				}
			}
			backoff = nextBackoff(backoff)
			if err := s.connect(s.b.life); err != nil {
				s.b.logger.Debug("redis broker: reconnection failed", "shard", s.index, "err", err)
			}
			continue
		}
		if moved {
			s.lose(errMoved)
			continue
		}
		select {
		case <-s.b.stop:
			s.disconnect()
			return
		case err := <-lost:
			s.lose(err)
		case gen := <-s.overflowed:
			s.mu.RLock()
			current := s.gen == gen
			s.mu.RUnlock()
			if current {
				s.lose(errTooSlow)
			}
		case <-s.wake:
			if err := s.reconcile(s.b.life); err != nil {
				s.lose(err)
			} else if s.checkSynced() {
				backoff = 0
			}
		case <-health.C:
			if err := s.ping(); err != nil {
				s.lose(err)
			}
		}
	}
}

// lose drops a connection that broke or stopped answering.
func (s *shard) lose(err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	if s.disconnect() {
		s.b.shardLost(err)
	}
}

// checkSynced marks the connection synced once it has every wanted
// channel, and reports whether it just did.
func (s *shard) checkSynced() bool {
	s.mu.Lock()
	if s.synced || !s.syncedLocked() {
		s.mu.Unlock()
		return false
	}
	s.synced = true
	s.mu.Unlock()
	s.b.shardSynced()
	return true
}

// sleep waits for d, or returns false at Close.
func (s *shard) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.b.stop:
		return false
	}
}

// nextBackoff doubles the wait between reconnections from 50 ms to 2 s,
// with jitter, so that the nodes of a deployment do not reconnect in step.
func nextBackoff(d time.Duration) time.Duration {
	const lo, hi = 50 * time.Millisecond, 2 * time.Second
	d = min(max(2*d, lo), hi)
	return d/2 + rand.N(d/2+1)
}
