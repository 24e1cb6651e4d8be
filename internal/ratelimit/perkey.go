package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
)

// PerKey counts live items per key, such as connections per IP or per
// user, up to a cap. It is safe for concurrent use. Only keys with a count
// above zero are remembered, so its memory follows the live items.
type PerKey struct {
	max    int
	seed   maphash.Seed
	shards [shardCount]perKeyShard
}

type perKeyShard struct {
	mu sync.Mutex
	n  map[string]int
	_  cacheLinePad
}

// NewPerKey returns a PerKey allowing max live items per key; max <= 0
// means no cap, counting only.
func NewPerKey(max int) *PerKey {
	return &PerKey{max: max, seed: maphash.MakeSeed()}
}

// Acquire counts one more item for key and reports true, or reports false
// and counts nothing when key already has max. Each true must be matched
// by one Release.
func (p *PerKey) Acquire(key string) bool {
	s := &p.shards[shardOf(p.seed, key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.n[key]
	if p.max > 0 && n >= p.max {
		return false
	}
	if !ok {
		if s.n == nil {
			s.n = make(map[string]int)
		}
		key = strings.Clone(key) // do not pin a larger string key is a slice of
	}
	s.n[key] = n + 1
	return true
}

// Release counts one item fewer for key, forgetting key at zero. It panics
// if key has no items: an unmatched Release is a bug that would otherwise
// let the key go over its cap later.
func (p *PerKey) Release(key string) {
	s := &p.shards[shardOf(p.seed, key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.n[key]; n {
	case 0:
		panic("ratelimit: Release of " + key + " without Acquire")
	case 1:
		delete(s.n, key)
	default:
		s.n[key] = n - 1
	}
}

// Count returns how many items key has.
func (p *PerKey) Count(key string) int {
	s := &p.shards[shardOf(p.seed, key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[key]
}
