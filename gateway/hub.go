package gateway

import (
	"hash/maphash"
	"sync"
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
	channels map[string]map[*session]struct{}
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]map[*session]struct{})
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
	subs := sh.channels[channel]
	if subs == nil {
		subs = make(map[*session]struct{})
		sh.channels[channel] = subs
	}
	subs[s] = struct{}{}
	return len(subs) == 1
}

// remove removes s and reports whether channel has no subscriber left.
func (h *hub) remove(channel string, s *session) (last bool) {
	sh := &h.shards[h.index(channel)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	subs := sh.channels[channel]
	if subs == nil {
		return false
	}
	if _, ok := subs[s]; !ok {
		return false
	}
	delete(subs, s)
	if len(subs) == 0 {
		delete(sh.channels, channel)
		return true
	}
	return false
}

// each calls f for every subscriber of channel. f runs under the shard's
// read lock, so it must only enqueue.
func (h *hub) each(channel string, f func(*session)) {
	sh := &h.shards[h.index(channel)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for s := range sh.channels[channel] {
		f(s)
	}
}

// channels calls f with every channel that has subscribers here and their
// number.
func (h *hub) channels(f func(channel string, subscribers int)) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, subs := range sh.channels {
			f(name, len(subs))
		}
		sh.mu.RUnlock()
	}
}
