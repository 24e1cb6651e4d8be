package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Keyed is a set of token buckets, one per key, such as a handshake rate
// per client IP. It is safe for concurrent use and starts no goroutines.
//
// Memory stays bounded two ways. A bucket that has refilled completely is
// the same as a new one, so it is forgotten: Allow sweeps such buckets out
// lazily, at most once per refill time (and at least a second apart). And
// there are never more than maxKeys buckets: when that many are remembered
// and a new key arrives, Allow refuses it — it fails closed, so a flood of
// addresses cannot push the limiter into allowing everyone — until the
// next sweep makes room.
type Keyed struct {
	r       refill
	maxKeys int
	seed    maphash.Seed
	keys    atomic.Int64 // buckets remembered, over all shards

	sweepEvery time.Duration
	nextSweep  atomic.Int64 // Unix nanoseconds of the next sweep

	shards [shardCount]keyedShard
}

type keyedShard struct {
	mu  sync.Mutex
	tat map[string]time.Time // each key's bucket state, as in refill
	_   cacheLinePad
}

// NewKeyed returns buckets of burst tokens earning rate tokens per second,
// as NewBucket's, with at most maxKeys of them (no cap if maxKeys <= 0).
func NewKeyed(rate float64, burst int, maxKeys int) *Keyed {
	k := &Keyed{r: newRefill(rate, burst), maxKeys: maxKeys, seed: maphash.MakeSeed()}
	k.sweepEvery = max(k.r.tau, time.Second)
	return k
}

// Allow takes a token from key's bucket at now, a new key starting with a
// full one, and reports whether it did. It refuses a new key when maxKeys
// buckets are remembered. For a key it remembers, it does not allocate.
func (k *Keyed) Allow(key string, now time.Time) bool {
	k.maybeSweep(now)
	s := &k.shards[shardOf(k.seed, key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if tat, ok := s.tat[key]; ok {
		if !k.r.take(&tat, now, 1) {
			return false
		}
		s.tat[key] = tat
		return true
	}
	var tat time.Time // the zero time is a full bucket; see refill
	switch {
	case !k.r.take(&tat, now, 1):
		return false // a burst of zero: no state worth keeping
	case k.r.full(tat, now):
		return true // no limit: likewise
	case !k.reserve():
		return false
	}
	if s.tat == nil {
		s.tat = make(map[string]time.Time)
	}
	// A copy, so the map does not pin a larger string the key may be a
	// slice of (a RemoteAddr, a request line).
	s.tat[strings.Clone(key)] = tat
	return true
}

// Len returns how many buckets are remembered.
func (k *Keyed) Len() int { return int(k.keys.Load()) }

// reserve counts one more bucket unless there are maxKeys already.
func (k *Keyed) reserve() bool {
	if k.maxKeys <= 0 {
		k.keys.Add(1)
		return true
	}
	for {
		n := k.keys.Load()
		if n >= int64(k.maxKeys) {
			return false
		}
		if k.keys.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// maybeSweep sweeps if it is time to. Of the callers that find it is, one
// wins the compare-and-swap and sweeps; the rest go on at once.
func (k *Keyed) maybeSweep(now time.Time) {
	t, next := now.UnixNano(), k.nextSweep.Load()
	// A next sweep further away than sweepEvery means the wall clock
	// stepped back; sweep rather than wait for it to catch up.
	if t < next && next-t <= int64(k.sweepEvery) {
		return
	}
	if k.nextSweep.CompareAndSwap(next, t+int64(k.sweepEvery)) {
		k.sweep(now)
	}
}

// sweep forgets every bucket that is full at now, one shard at a time so
// that Allow on the other shards goes on meanwhile.
func (k *Keyed) sweep(now time.Time) {
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n := 0
		for key, tat := range s.tat {
			if k.r.full(tat, now) {
				delete(s.tat, key)
				n++
			}
		}
		if len(s.tat) == 0 {
			s.tat = nil // a map never shrinks: drop what a flood grew
		}
		s.mu.Unlock()
		k.keys.Add(-int64(n))
	}
}
