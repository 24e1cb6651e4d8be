package nats

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"

	natsgo "github.com/nats-io/nats.go"

	"github.com/duplexws/duplex/gateway/broker"
)

// subscription is a channel's subscription of this node (or the control
// subject's). nats.go delivers its messages from one goroutine of its own,
// in the order the server sent them, which for a channel's publications
// with history is the stream's order: so the Handler gets one channel's
// deliveries in order and one at a time.
type subscription struct {
	b       *Broker
	channel string
	control bool
	sub     *natsgo.Subscription
	// active is cleared by Unsubscribe and Close: nothing more is
	// delivered, even what nats.go still holds.
	active atomic.Bool
	// sem is held while a message is handed to the Handler, so that
	// Unsubscribe can wait for the one under way: a later subscription of
	// the channel, with a goroutine of its own, must not deliver
	// alongside it.
	sem chan struct{}
}

// deliver is the subscription's nats.go handler.
func (s *subscription) deliver(m *natsgo.Msg) {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if !s.active.Load() {
		return
	}
	h := s.b.handler
	if s.control {
		h.HandleControl(m.Data)
		return
	}
	rec, err := decodeRecord(m.Data)
	if err != nil {
		s.b.opts.Logger.Warn("nats broker: dropped a malformed message", "subject", m.Subject, "error", err)
		return
	}
	switch m.Subject[len(m.Subject)-1] {
	case 'p':
		pub := &broker.Publication{Channel: s.channel, Data: rec.data, Info: rec.info}
		if rec.offset > 0 {
			pub.Position = broker.Position{Offset: rec.offset, Epoch: rec.epoch}
			// The stream republished it with its sequence: a tip for
			// this node's next publication to the channel.
			if seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64); err == nil {
				s.b.states.offerHint(s.channel, tip{seq: seq, valid: true, offset: rec.offset, epoch: rec.epoch,
					links: rec.links, published: rec.published, streamTTL: rec.streamTTL})
			}
		}
		h.HandlePublication(pub)
	case 'j':
		if rec.info != nil {
			h.HandleJoin(s.channel, rec.info)
		}
	case 'l':
		if rec.info != nil {
			h.HandleLeave(s.channel, rec.info)
		}
	}
}

// stop ends delivery and waits, bounded by ctx, for the delivery under
// way.
func (s *subscription) stop(ctx context.Context) error {
	s.active.Store(false)
	select {
	case s.sem <- struct{}{}:
		<-s.sem
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subscriptions are the node's channel subscriptions. Subscribe and
// Unsubscribe of one channel take turns through a lock of the channel's
// stripe; the map has a mutex of its own, held briefly.
type subscriptions struct {
	seed    maphash.Seed
	stripes [subStripes]chan struct{}

	mu sync.Mutex
	m  map[string]*subscription
}

const subStripes = 64

func (ss *subscriptions) init() {
	ss.seed = maphash.MakeSeed()
	for i := range ss.stripes {
		ss.stripes[i] = make(chan struct{}, 1)
	}
	ss.m = make(map[string]*subscription)
}

func (ss *subscriptions) lock(ctx context.Context, channel string) (unlock func(), err error) {
	stripe := ss.stripes[maphash.String(ss.seed, channel)%subStripes]
	select {
	case stripe <- struct{}{}:
		return func() { <-stripe }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (ss *subscriptions) get(channel string) *subscription {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[channel]
}

func (ss *subscriptions) set(channel string, s *subscription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s == nil {
		delete(ss.m, channel)
	} else {
		ss.m[channel] = s
	}
}

// deactivateAll ends every subscription's delivery, for Close.
func (ss *subscriptions) deactivateAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, s := range ss.m {
		s.active.Store(false)
	}
}

// Subscribe implements broker.Broker. It returns once the server has the
// subscription: a publication made after it, by any node connected to
// the same server, is delivered. (In a cluster of servers, interest
// spreads to the others a moment later.)
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.begin(ctx, "subscribe"); err != nil {
		return err
	}
	unlock, err := b.subs.lock(ctx, channel)
	if err != nil {
		return b.fail("subscribe", channel, err)
	}
	defer unlock()
	if b.subs.get(channel) != nil {
		return nil
	}
	s := &subscription{b: b, channel: channel, sem: make(chan struct{}, 1)}
	// Under connMu, Close cannot close the connection between the
	// subscription and its closed handler, which Close waits for.
	b.connMu.RLock()
	if !b.running.Load() {
		b.connMu.RUnlock()
		return b.fail("subscribe", channel, broker.ErrClosed)
	}
	sub, err := b.nc.Subscribe(b.names.channel(token(channel)), s.deliver)
	if err == nil {
		b.subWG.Add(1)
		sub.SetClosedHandler(func(string) { b.subWG.Done() })
		s.sub = sub
		s.active.Store(true)
		b.subs.set(channel, s)
	}
	b.connMu.RUnlock()
	if err != nil {
		return b.fail("subscribe", channel, err)
	}
	rctx, cancel := b.requestContext(ctx)
	defer cancel()
	if err := b.nc.FlushWithContext(rctx); err != nil {
		b.subs.set(channel, nil)
		s.active.Store(false)
		sub.Unsubscribe()
		return b.fail("subscribe", channel, err)
	}
	return nil
}

// Unsubscribe implements broker.Broker. Nothing of the channel is
// delivered after it returns.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if err := b.beginLocal(ctx, "unsubscribe"); err != nil {
		return err
	}
	unlock, err := b.subs.lock(ctx, channel)
	if err != nil {
		return b.fail("unsubscribe", channel, err)
	}
	defer unlock()
	s := b.subs.get(channel)
	if s == nil {
		return nil
	}
	b.subs.set(channel, nil)
	s.active.Store(false)
	// Without a connection the server forgets the subscription anyway,
	// and nats.go does not renew a removed one.
	s.sub.Unsubscribe()
	if err := s.stop(ctx); err != nil {
		return b.fail("unsubscribe", channel, err)
	}
	return nil
}
