package gateway

import (
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/duplexws/duplex/gateway/broker"
)

// hub maps channels to this node's subscribers. It is sharded so that
// fan-out on one channel does not hold up subscribing on others.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
	// subscribing serialises, per channel, the change of the local
	// subscriber set together with the broker call that follows it, so a
	// last unsubscribe and a first subscribe cannot reach the broker in the
	// wrong order.
	subscribing [hubShards]sync.Mutex
}

const hubShards = 64

type hubShard struct {
	mu       sync.RWMutex
	channels map[string]*hubChannel
}

// hubChannel is one channel with subscribers on this node.
type hubChannel struct {
	name string
	subs map[*session]struct{} // guarded by the shard's mu

	// deliver orders what reaches the subscribers of the channel: the
	// broker's deliveries and the node's own recovery of what the broker
	// could not deliver (a lost link, a skipped offset). It guards what
	// follows.
	deliver sync.Mutex
	// last is the position of the stream that this node's subscribers
	// have had everything up to: the last publication delivered, or,
	// before the first, the lowest position a subscriber read.
	last broker.Position
	// known says that last is set; delivered that it comes from a
	// publication.
	known, delivered bool
	// reset says that the stream was found gone (the broker lost it): the
	// first publication of the next epoch is preceded by a reset notice.
	reset bool
	// catching says that a catch-up of the channel runs (delivery.go); it
	// delivers up to want, the newest position the broker delivered
	// meanwhile.
	catching bool
	want     broker.Position
	// held says that a catch-up could not read history (the broker was
	// unreachable, or its reads failed for a while): the hole up to want
	// is kept, not declared a gap, until the link is back or the next
	// publication starts another catch-up.
	held bool

	presence presenceBatch // guarded by the shard's mu

	// arriving counts the broker's deliveries of the channel being
	// handled (HandlePublication), the one being fanned out included.
	arriving atomic.Int32
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*hubChannel)
	}
	return h
}

func (h *hub) index(channel string) int {
	return int(maphash.String(h.seed, channel) % hubShards)
}

// add adds s to channel's subscribers and reports whether it is the first.
func (h *hub) add(channel string, s *session) (first bool) {
	sh := &h.shards[h.index(channel)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[channel]
	if ch == nil {
		ch = &hubChannel{name: channel, subs: make(map[*session]struct{})}
		sh.channels[channel] = ch
	}
	ch.subs[s] = struct{}{}
	return len(ch.subs) == 1
}

// remove removes s and reports whether channel has no subscriber left.
func (h *hub) remove(channel string, s *session) (last bool) {
	sh := &h.shards[h.index(channel)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[channel]
	if ch == nil {
		return false
	}
	if _, ok := ch.subs[s]; !ok {
		return false
	}
	delete(ch.subs, s)
	if len(ch.subs) == 0 {
		delete(sh.channels, channel)
		return true
	}
	return false
}

// get returns channel's entry, or nil when it has no subscriber here.
func (h *hub) get(channel string) *hubChannel {
	sh := &h.shards[h.index(channel)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.channels[channel]
}

// each calls f for every subscriber of channel. f runs under the shard's
// read lock, so it must only enqueue.
func (h *hub) each(channel string, f func(*session)) {
	sh := &h.shards[h.index(channel)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if ch := sh.channels[channel]; ch != nil {
		for s := range ch.subs {
			f(s)
		}
	}
}

// splitFanOut is the number of subscribers of a channel from which a
// fan-out is split over the processors (eachSplit): below it, the
// goroutines cost more than they save.
const splitFanOut = 1024

// eachSplit calls f for every subscriber of channel, as each does, but
// spreads a large channel over up to GOMAXPROCS goroutines, so that a
// broadcast that writes inline (session.tryWriteLocked) uses every core.
// It returns once f has returned for every subscriber; the goroutines it
// starts are its own and end with their share.
func (h *hub) eachSplit(channel string, f func(*session)) {
	sh := &h.shards[h.index(channel)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ch := sh.channels[channel]
	if ch == nil {
		return
	}
	parts := min(runtime.GOMAXPROCS(0), len(ch.subs)/(splitFanOut/2))
	if len(ch.subs) < splitFanOut || parts < 2 {
		for s := range ch.subs {
			f(s)
		}
		return
	}
	box := subscriberLists.Get().(*[]*session)
	subs := (*box)[:0]
	for s := range ch.subs {
		subs = append(subs, s)
	}
	var wg sync.WaitGroup
	per := (len(subs) + parts - 1) / parts
	for from := per; from < len(subs); from += per {
		share := subs[from:min(from+per, len(subs))]
		wg.Go(func() {
			for _, s := range share {
				f(s)
			}
		})
	}
	for _, s := range subs[:per] {
		f(s)
	}
	wg.Wait()
	clear(subs)
	*box = subs[:0]
	subscriberLists.Put(box)
}

// subscriberLists holds the lists eachSplit splits.
var subscriberLists = sync.Pool{New: func() any { return new([]*session) }}

// channels calls f with every channel that has subscribers here and their
// number.
func (h *hub) channels(f func(channel string, subscribers int)) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, ch := range sh.channels {
			f(name, len(ch.subs))
		}
		sh.mu.RUnlock()
	}
}

// list returns the channels with subscribers here.
func (h *hub) list() []*hubChannel {
	var out []*hubChannel
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, ch := range sh.channels {
			out = append(out, ch)
		}
		sh.mu.RUnlock()
	}
	return out
}
