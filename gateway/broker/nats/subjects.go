package nats

import "encoding/base64"

// The names a broker uses, for a prefix P and a channel whose token is T
// (see token):
//
//	P.h.T        history: the subject a publication with history is
//	             stored under, in the stream P_history (subjects P.h.*)
//	P.c.T.p      publications delivered to the nodes: the stream
//	             republishes each stored message here, in store order, and
//	             a publication without history is published here directly
//	P.c.T.j      joins
//	P.c.T.l      leaves
//	P.ctl        control messages, which every node subscribes to
//
// A node subscribed to a channel holds one subscription, P.c.T.*, so that
// one goroutine delivers everything of the channel in order. Presence lives
// in the key-value bucket P_presence under the keys T.C, C the token of a
// client id, and the nodes' heartbeats under h.N, N a node's token: "h" is
// no channel's token, which is "=" or at least two characters long.
type names struct {
	prefix      string
	stream      string // the history stream
	bucket      string // the presence bucket
	kvStream    string // the bucket's stream
	control     string
	historyAll  string // the stream's subjects
	liveMapping string // the stream's republish destination
	directGet   string // the history stream's direct get API
	kvDirectGet string // the bucket's direct get API
}

func newNames(prefix string) names {
	n := names{
		prefix:     prefix,
		stream:     prefix + "_history",
		bucket:     prefix + "_presence",
		control:    prefix + ".ctl",
		historyAll: prefix + ".h.*",
	}
	n.kvStream = "KV_" + n.bucket
	n.liveMapping = prefix + ".c.{{wildcard(1)}}.p"
	n.directGet = "$JS.API.DIRECT.GET." + n.stream
	n.kvDirectGet = "$JS.API.DIRECT.GET." + n.kvStream
	return n
}

// token encodes a name (a channel, a client id) as one subject token:
// base64url without padding, whose alphabet holds none of '.', '*', '>'
// or white space, and is valid in a key of a bucket too. The empty name,
// which encodes to nothing, is "=", which no other name encodes to.
func token(name string) string {
	if name == "" {
		return "="
	}
	return base64.RawURLEncoding.EncodeToString([]byte(name))
}

func (n names) history(tok string) string { return n.prefix + ".h." + tok }
func (n names) channel(tok string) string { return n.prefix + ".c." + tok + ".*" }
func (n names) live(tok string) string    { return n.prefix + ".c." + tok + ".p" }
func (n names) join(tok string) string    { return n.prefix + ".c." + tok + ".j" }
func (n names) leave(tok string) string   { return n.prefix + ".c." + tok + ".l" }

// presenceKey is the subject of a client's entry in a channel's presence;
// presenceAll matches every entry of the channel.
func (n names) presenceKey(chanTok, client string) string {
	return "$KV." + n.bucket + "." + chanTok + "." + token(client)
}
func (n names) presenceAll(chanTok string) string { return "$KV." + n.bucket + "." + chanTok + ".*" }

// heartbeat is the subject of a node's heartbeat; heartbeatAll matches
// every node's.
func (n names) heartbeat(nodeTok string) string { return "$KV." + n.bucket + ".h." + nodeTok }
func (n names) heartbeatAll() string            { return "$KV." + n.bucket + ".h.*" }
