package ratelimit

import "hash/maphash"

// shardCount is how many independently locked maps Keyed and PerKey split
// their keys over, so that goroutines working on different keys rarely
// wait for each other.
const shardCount = 16

// cacheLinePad keeps the locks of neighbouring shards off one cache line;
// a shard's own fields (a mutex and a map pointer) take the other 16 bytes.
type cacheLinePad [64 - 16]byte

// shardOf picks the shard of key. The seed is random per limiter, so
// clients cannot choose keys that all land in one shard.
func shardOf(seed maphash.Seed, key string) uint64 {
	return maphash.String(seed, key) % shardCount
}
