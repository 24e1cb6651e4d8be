package redis

import "strconv"

// keyspace names the keys and pub/sub channels of one Prefix.
//
// A standalone server:
//
//	<prefix>:m:<channel>  hash: e (epoch), o (last offset)
//	<prefix>:h:<channel>  stream: the history, entry IDs <offset>-0
//	<prefix>:p:<channel>  hash: presence members, client -> ClientInfo
//	<prefix>:z:<channel>  sorted set: client -> expiry (Unix ms)
//	<prefix>:u:<channel>  hash: user -> number of its clients
//	<prefix>:c:<channel>  pub/sub channel: publications, joins, leaves
//	<prefix>:control      pub/sub channel: control messages
//
// A Cluster puts the channel's shard, a hash tag, after the prefix, so that
// the keys and the shard channel of one channel are in one hash slot (a
// script may only touch one slot) and one pub/sub connection per shard
// serves all its channels: <prefix>:{<shard>}:m:<channel> and so on, and
// the control channel is <prefix>:{0}:control.
type keyspace struct {
	prefix  string
	cluster bool
	shards  int
	// control is the control channel; anchors[i] is what shard i's
	// connection subscribes to before any channel: the control channel for
	// shard 0, and on a Cluster a channel of the shard's slot that binds
	// the connection to the slot's master ("" when not needed).
	control string
	anchors []string
	tags    []string // tags[i] is tag(i), made once: Publish names three keys
}

func newKeyspace(prefix string, cluster bool, shards int) keyspace {
	k := keyspace{prefix: prefix, cluster: cluster, shards: shards, anchors: make([]string, shards), tags: make([]string, shards)}
	for i := range k.tags {
		if cluster {
			k.tags[i] = prefix + ":{" + strconv.Itoa(i) + "}:"
		} else {
			k.tags[i] = prefix + ":"
		}
	}
	if cluster {
		for i := range k.anchors {
			k.anchors[i] = k.tag(i) + "control"
		}
	} else {
		k.anchors[0] = prefix + ":control"
	}
	k.control = k.anchors[0]
	return k
}

// shard returns the shard of channel: FNV-1a, the same on every node and
// in every version, since it names keys on a Cluster.
func (k keyspace) shard(channel string) int {
	if k.shards == 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(channel); i++ {
		h ^= uint32(channel[i])
		h *= 16777619
	}
	return int(h % uint32(k.shards))
}

// tag returns "<prefix>:" or, on a Cluster, "<prefix>:{<shard>}:".
func (k keyspace) tag(shard int) string { return k.tags[shard] }

// name returns the key or channel of kind (m, h, p, z, u, c) of channel in
// shard.
func (k keyspace) name(kind string, shard int, channel string) string {
	return k.tag(shard) + kind + ":" + channel
}
