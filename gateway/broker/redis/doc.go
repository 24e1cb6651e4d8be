// Package redis is a broker.Broker on Redis, for gateway nodes that share
// publications, history and presence: a standalone server (6.2 or later) or
// a Redis Cluster (7.0 or later).
//
//	opts, err := redis.ParseURL("redis://127.0.0.1:6379/0")
//	b, err := redis.New(opts)
//	err = b.Start(ctx, handler) // connects; an error when it cannot
//	defer b.Close(ctx)
//
// # Publications and history
//
// A channel's stream is a meta hash (epoch, last offset) and a Redis Stream
// of its publications, whose entry IDs are their offsets. Publish runs one
// Lua script that creates the meta with a new random epoch when the
// channel has none, takes the next offset, appends the publication
// (trimmed to HistorySize, its expiry from HistoryTTL taken from the
// server's clock), sets the keys' expiry (the meta StreamTTL, never less
// than HistoryTTL; the history until its newest publication expires) and
// publishes it on the channel's pub/sub channel with its offset and epoch.
// Since the script runs atomically, offset order is the order in which
// every subscribed node receives them. Without history, Publish is a
// plain PUBLISH and the publication has no position. The stream is
// trimmed by whole nodes of Redis's (XADD MAXLEN ~), at a fifth less of
// Redis's CPU per publication than an exact trim (BenchmarkPublishFullHistory),
// so it may hold a few publications more than HistorySize; the meta
// records the size, and History never reads past it.
//
// History runs one script that writes nothing, so that the position and the
// publications come from the same moment. Reading creates nothing: a
// channel without a stream reads as Position{} and stays absent, whatever
// names clients ask for. When a stream's meta expires, or a server loses
// its data, the next publication starts a new epoch at offset 1.
//
// # Presence
//
// A channel's members are a hash (client -> ClientInfo), a sorted set of
// their expiries and a hash counting each user's clients, changed
// together by scripts: expired members are removed by the next call that
// touches the channel, PresenceStats is two HLENs. Every member expires
// (AddPresence's ttl, Options.PresenceTTL for 0); the gateway adds its
// members again before then.
//
// # Delivery
//
// Each node holds Options.Shards pub/sub connections (by default one per
// core, from 2 to 8, on a standalone server), not one per channel; a
// channel belongs to one by a hash of its name. On a Cluster the shard is
// also a hash tag in the channel's keys and shard channel, so a script
// touches one slot, and sharded pub/sub (SPUBLISH, SSUBSCRIBE) carries a
// message to that slot's master only. The control channel, which every
// node subscribes to at Start, is on shard 0. The reading goroutine of
// each connection hands its messages, in order, to the shard's delivery
// goroutine, which calls the Handler: the calls for one channel are one
// at a time and in stream order, the shards deliver in parallel, and a
// Handler that blocks holds back its shard's channels only. A node that
// falls Options.MaxPendingBytes behind drops the connection, and recovers
// from that like any other loss.
//
// # Losing the server
//
// Every pub/sub connection is checked with a PING every HealthInterval.
// When one breaks or does not answer within HealthTimeout (a server that
// hangs keeps its TCP connections open), the Handler hears
// HandleConnection(false); the connection is made again with a growing,
// jittered back-off, every channel of the node is subscribed again, and
// when all shards have every channel the Handler hears
// HandleConnection(true). What was published in between was not
// delivered: the gateway recovers it from history. Calls made while the
// server cannot be reached fail within their context, and the number of
// commands waiting for a connection is bounded (by the client library's
// ring of 1024 per connection).
//
// The client is rueidis (github.com/redis/rueidis), chosen by a benchmark
// of the publish script under concurrency (peers/redisbench). Its one
// connection for commands pipelines the calls of all goroutines, and
// waits up to Options.FlushDelay after each write so that the calls made
// meanwhile go out in the next one (BenchmarkFlushDelay measures what
// that saves).
package redis
