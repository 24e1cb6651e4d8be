package nats

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// tip is what a node knows of the last message of a channel's history:
// enough to append the next one. It may be stale (another node appended
// since): the server then rejects the append, which expects the tip's
// sequence to be the subject's last, and the node reads the tip again.
type tip struct {
	seq uint64 // stream sequence; 0: the subject holds nothing
	// valid says that the message is one of ours; a foreign message ends
	// the epoch like an expired one.
	valid     bool
	offset    uint64
	epoch     string
	links     links
	published time.Time
	streamTTL time.Duration
}

// live reports whether the tip's stream still runs at now: it has a
// position that has not outlived its StreamTTL.
func (t *tip) live(now time.Time) bool {
	return t.valid && now.Before(t.published.Add(t.streamTTL))
}

// channelState is a channel's tip on this node, and the lock that makes
// this node's appends to the channel take turns: without it, concurrent
// publishers of one node would all expect the same tip and all but one
// retry.
type channelState struct {
	sem chan struct{} // holds a token while an append runs

	// Under the shard's mutex.
	refs    int
	lastUse time.Time
	// hint is the newest message of the channel that this node saw
	// delivered (it is subscribed): with it, a node that publishes after
	// another node did starts from the right tip instead of failing once
	// and reading it.
	hint tip

	// Under sem.
	known bool // tip was read from the server or set by an append
	tip   tip
}

func (c *channelState) lock(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *channelState) unlock() { <-c.sem }

// channelStates holds the channels' states, sharded to keep the
// publishers of different channels apart.
type channelStates struct {
	seed   maphash.Seed
	shards [stateShards]stateShard
}

const stateShards = 64

type stateShard struct {
	mu sync.Mutex
	m  map[string]*channelState
}

func newChannelStates() *channelStates {
	s := &channelStates{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*channelState)
	}
	return s
}

func (s *channelStates) shard(channel string) *stateShard {
	return &s.shards[maphash.String(s.seed, channel)%stateShards]
}

// acquire returns channel's state, made if needed, held until release.
func (s *channelStates) acquire(channel string) *channelState {
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.m[channel]
	if c == nil {
		c = &channelState{sem: make(chan struct{}, 1)}
		sh.m[channel] = c
	}
	c.refs++
	return c
}

func (s *channelStates) release(channel string, c *channelState, now time.Time) {
	sh := s.shard(channel)
	sh.mu.Lock()
	c.refs--
	c.lastUse = now
	sh.mu.Unlock()
}

// offerHint records t as channel's hint, when the node holds the
// channel's state (it published there lately) and t is newer.
func (s *channelStates) offerHint(channel string, t tip) {
	sh := s.shard(channel)
	sh.mu.Lock()
	if c := sh.m[channel]; c != nil && t.seq > c.hint.seq {
		c.hint = t
	}
	sh.mu.Unlock()
}

// hintOf returns c's hint.
func (s *channelStates) hintOf(channel string, c *channelState) tip {
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return c.hint
}

// dropHint forgets c's hint if its sequence is at most seq (0: whatever
// it is): a tip refused by the server is not tried again, which after the
// server lost its data and numbers from 1 again would be for ever.
func (s *channelStates) dropHint(channel string, c *channelState, seq uint64) {
	sh := s.shard(channel)
	sh.mu.Lock()
	if seq == 0 || c.hint.seq <= seq {
		c.hint = tip{}
	}
	sh.mu.Unlock()
}

// evict forgets the states of channels that nobody holds and nobody used
// since before, so that a node that published to many channels once does
// not keep them all; a forgotten tip costs one read at the next append.
func (s *channelStates) evict(before time.Time) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for name, c := range sh.m {
			if c.refs == 0 && c.lastUse.Before(before) {
				delete(sh.m, name)
			}
		}
		sh.mu.Unlock()
	}
}

// len counts the states held.
func (s *channelStates) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
