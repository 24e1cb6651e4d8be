package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

func BenchmarkBucketAllow(b *testing.B) {
	bk := NewBucket(1e6, 100, t0)
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		bk.Allow(now)
	}
}

// BenchmarkKeyedAllow asks for tokens of known keys from every P, so the
// shards' locks are what it measures.
func BenchmarkKeyedAllow(b *testing.B) {
	k := NewKeyed(1e6, 100, 10000)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "198.51.100." + strconv.Itoa(i)
		k.Allow(keys[i], t0)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k.Allow(keys[i%len(keys)], t0.Add(time.Duration(i)))
			i++
		}
	})
}

func BenchmarkPerKeyAcquireRelease(b *testing.B) {
	p := NewPerKey(0)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user" + strconv.Itoa(i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			key := keys[i%len(keys)]
			p.Acquire(key)
			p.Release(key)
			i++
		}
	})
}
