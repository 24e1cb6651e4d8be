package brokertest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/brokertest"
)

// TestSharedContract runs the whole suite, the multi-node subtests too,
// against shared: nodes of one in-process backend that deliver from a
// goroutine of their own, the way a networked broker does. It keeps the
// multi-node subtests honest until a real broker runs them.
func TestSharedContract(t *testing.T) {
	be := &backend{
		streams:  make(map[string]*sharedStream),
		presence: make(map[string]map[string]member),
		nodes:    make(map[*shared]struct{}),
	}
	brokertest.Run(t, func(t *testing.T) broker.Broker { return &shared{be: be} }, brokertest.Options{})
}

// backend is what the nodes share; its mutex orders everything.
type backend struct {
	mu       sync.Mutex
	streams  map[string]*sharedStream
	presence map[string]map[string]member
	nodes    map[*shared]struct{} // started, not closed
}

type sharedStream struct {
	epoch   string
	offset  uint64
	items   []item
	expires time.Time
}

type item struct {
	pub     *broker.Publication
	expires time.Time
}

type member struct {
	info    *broker.ClientInfo
	expires time.Time
}

// stream returns channel's live stream, making one; be.mu is held.
func (be *backend) stream(channel string, now time.Time) *sharedStream {
	st := be.streams[channel]
	if st == nil || now.After(st.expires) {
		var b [6]byte
		rand.Read(b[:])
		st = &sharedStream{epoch: hex.EncodeToString(b[:]), expires: now.Add(broker.DefaultStreamTTL)}
		be.streams[channel] = st
	}
	return st
}

// deliver queues f on every node subscribed to channel (every node when
// channel is ""); be.mu is held, which orders the queues alike.
func (be *backend) deliver(channel string, f func(h broker.Handler)) {
	for n := range be.nodes {
		if channel == "" || n.subs[channel] {
			n.enqueue(f)
		}
	}
}

// shared is one node.
type shared struct {
	be      *backend
	h       broker.Handler
	subs    map[string]bool // under be.mu
	started bool            // under be.mu
	closed  bool            // under be.mu

	qmu   sync.Mutex
	queue []func(h broker.Handler)
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func (n *shared) enqueue(f func(h broker.Handler)) {
	n.qmu.Lock()
	n.queue = append(n.queue, f)
	n.qmu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *shared) loop() {
	defer close(n.done)
	for {
		select {
		case <-n.stop:
			return
		case <-n.wake:
		}
		for {
			n.qmu.Lock()
			q := n.queue
			n.queue = nil
			n.qmu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, f := range q {
				select {
				case <-n.stop:
					return
				default:
				}
				f(n.h)
			}
		}
	}
}

// lock checks ctx and locks the backend for a node that is running.
func (n *shared) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.be.mu.Lock()
	if !n.started || n.closed {
		n.be.mu.Unlock()
		return broker.ErrClosed
	}
	return nil
}

func (n *shared) Start(ctx context.Context, h broker.Handler) error {
	n.be.mu.Lock()
	defer n.be.mu.Unlock()
	if n.closed {
		return broker.ErrClosed
	}
	if n.started {
		return errors.New("shared: started twice")
	}
	n.started, n.h, n.subs = true, h, make(map[string]bool)
	n.wake, n.stop, n.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	n.be.nodes[n] = struct{}{}
	go n.loop()
	return nil
}

func (n *shared) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	if err := n.lock(ctx); err != nil {
		return broker.Position{}, err
	}
	defer n.be.mu.Unlock()
	pub := &broker.Publication{Channel: channel, Data: bytes.Clone(data), Info: info}
	if opts.HistorySize > 0 {
		now := time.Now()
		st := n.be.stream(channel, now)
		st.offset++
		pub.Position = broker.Position{Offset: st.offset, Epoch: st.epoch}
		it := item{pub: pub}
		if opts.HistoryTTL > 0 {
			it.expires = now.Add(opts.HistoryTTL)
		}
		st.items = append(st.items, it)
		if k := len(st.items) - opts.HistorySize; k > 0 {
			st.items = st.items[k:]
		}
		ttl := opts.StreamTTL
		if ttl <= 0 {
			ttl = broker.DefaultStreamTTL
		}
		st.expires = now.Add(max(ttl, opts.HistoryTTL))
	}
	n.be.deliver(channel, func(h broker.Handler) { h.HandlePublication(pub) })
	return pub.Position, nil
}

func (n *shared) PublishJoin(ctx context.Context, channel string, info *broker.ClientInfo) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	n.be.deliver(channel, func(h broker.Handler) { h.HandleJoin(channel, info) })
	return nil
}

func (n *shared) PublishLeave(ctx context.Context, channel string, info *broker.ClientInfo) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	n.be.deliver(channel, func(h broker.Handler) { h.HandleLeave(channel, info) })
	return nil
}

func (n *shared) Control(ctx context.Context, data []byte) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	data = bytes.Clone(data)
	n.be.deliver("", func(h broker.Handler) { h.HandleControl(data) })
	return nil
}

func (n *shared) Subscribe(ctx context.Context, channel string) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	n.subs[channel] = true
	return nil
}

func (n *shared) Unsubscribe(ctx context.Context, channel string) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	delete(n.subs, channel)
	return nil
}

func (n *shared) History(ctx context.Context, channel string, opts broker.HistoryOptions) (broker.HistoryResult, error) {
	if err := n.lock(ctx); err != nil {
		return broker.HistoryResult{}, err
	}
	defer n.be.mu.Unlock()
	now := time.Now()
	st := n.be.streams[channel]
	if st == nil || now.After(st.expires) {
		return broker.HistoryResult{}, nil
	}
	res := broker.HistoryResult{Position: broker.Position{Offset: st.offset, Epoch: st.epoch}}
	if opts.Limit == 0 || opts.Since != nil && opts.Since.Epoch != st.epoch {
		return res, nil
	}
	var live []*broker.Publication
	for _, it := range st.items {
		if (it.expires.IsZero() || !now.After(it.expires)) &&
			(opts.Since == nil || it.pub.Position.Offset > opts.Since.Offset) {
			live = append(live, it.pub)
		}
	}
	if opts.Reverse {
		for i, j := 0, len(live)-1; i < j; i, j = i+1, j-1 {
			live[i], live[j] = live[j], live[i]
		}
	}
	if opts.Limit > 0 && opts.Limit < len(live) {
		live = live[:opts.Limit]
	}
	res.Publications = live
	return res, nil
}

func (n *shared) AddPresence(ctx context.Context, channel string, info *broker.ClientInfo, ttl time.Duration) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	if ttl <= 0 {
		ttl = time.Minute
	}
	m := n.be.presence[channel]
	if m == nil {
		m = make(map[string]member)
		n.be.presence[channel] = m
	}
	m[info.Client] = member{info: info, expires: time.Now().Add(ttl)}
	return nil
}

func (n *shared) RemovePresence(ctx context.Context, channel, client string) error {
	if err := n.lock(ctx); err != nil {
		return err
	}
	defer n.be.mu.Unlock()
	delete(n.be.presence[channel], client)
	return nil
}

func (n *shared) Presence(ctx context.Context, channel string) (map[string]*broker.ClientInfo, error) {
	if err := n.lock(ctx); err != nil {
		return nil, err
	}
	defer n.be.mu.Unlock()
	now := time.Now()
	out := make(map[string]*broker.ClientInfo)
	for id, m := range n.be.presence[channel] {
		if !now.After(m.expires) {
			out[id] = m.info
		}
	}
	return out, nil
}

func (n *shared) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	members, err := n.Presence(ctx, channel)
	if err != nil {
		return broker.PresenceStats{}, err
	}
	users := make(map[string]bool)
	for _, m := range members {
		users[m.User] = true
	}
	return broker.PresenceStats{Clients: len(members), Users: len(users)}, nil
}

func (n *shared) Close(ctx context.Context) error {
	n.be.mu.Lock()
	if n.closed {
		n.be.mu.Unlock()
		return nil
	}
	n.closed = true
	delete(n.be.nodes, n)
	started := n.started
	n.be.mu.Unlock()
	if !started {
		return nil
	}
	close(n.stop)
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
