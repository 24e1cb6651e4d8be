package gateway

import (
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// A protocol is how commands and pushes are spelled on the wire: today
// duplex.v1.json (duplexProtocol). It turns the client's messages into the
// node's operations (session.go, operations.go), which own every rule
// about auth, limits and recovery, and spells their results, and the
// pushes of the node, back. One value serves every session speaking it;
// what it keeps per session lives in the session.
type protocol interface {
	// index is the protocol's slot in the encodings cached per protocol
	// (sharedLines): below numProtocols, distinct for each protocol.
	index() int
	// opened is called once the session is admitted, before its first
	// message is read: a protocol that greets its clients queues the
	// greeting.
	opened(sess *session)
	// handleMessage decodes one message of the client, text or binary,
	// and runs what it asks, queueing the replies. The transport's
	// reading chain calls it, one message at a time, in order.
	handleMessage(sess *session, text bool, msg []byte)
	// encodePublication spells a publication push, once for all the
	// protocol's subscribers; nil when its clients do not get it.
	encodePublication(pub *broker.Publication) []byte
	// encodeNotice spells a push of the node about a channel; nil when the
	// protocol has no such push.
	encodeNotice(n *notice) []byte
	// joinsLines reports whether several of its lines may go in one
	// message of the transport, separated by newlines.
	joinsLines() bool
	// closing spells the end of a session that the node closes with code
	// and reason, the close codes of PROTOCOL.md: the code and reason the
	// transport sends, and a last line to send before them (nil: none).
	closing(code websocket.StatusCode, reason string) (websocket.StatusCode, string, []byte)
	// echoes reports whether a client receives its own publications;
	// when not, a publication whose info names the session is not
	// delivered to it.
	echoes() bool
}

// numProtocols is how many protocols the node speaks.
const numProtocols = 2

// The pushes of the node about a channel, which each protocol spells its
// own way (protocol.encodeNotice).
const (
	noticeGap           = iota // publications lost: from..to of epoch; reset: a new epoch
	noticeJoin                 // a client joined the channel's presence
	noticeLeave                // and left it
	noticePresenceCount        // the channel's presence counts
	noticeUnsubscribe          // the server ended the subscription
	noticeMemberAdded          // a user's first connection joined the channel's presence
	noticeMemberRemoved        // a user's last connection left it
)

// notice is a push of the node about a channel.
type notice struct {
	kind    int
	channel string

	// noticeGap
	epoch    string
	from, to uint64
	reset    bool
	// noticeJoin, noticeLeave; noticeMemberAdded (info of one of its
	// connections), noticeMemberRemoved
	info *broker.ClientInfo
	// noticeMemberAdded, noticeMemberRemoved: the user, whose own
	// connections do not get the notice, and when its latest event
	// reached this node
	user string
	at   time.Time
	// noticePresenceCount
	stats broker.PresenceStats
	// noticeUnsubscribe
	code   int
	reason string
}

func gapNotice(channel, epoch string, from, to uint64) *notice {
	return &notice{kind: noticeGap, channel: channel, epoch: epoch, from: from, to: to}
}

// resetNotice says that a stream started again under a new epoch: what
// followed the client's position in the old one may be lost, and offsets
// 1 to to of the new one are (to is 0 when nothing of it is missing).
func resetNotice(channel, epoch string, to uint64) *notice {
	return &notice{kind: noticeGap, channel: channel, epoch: epoch, from: 1, to: to, reset: true}
}

// sharedLine is one line sent unchanged to many clients, spelled by one
// protocol: encoded once, and framed once by the transports that can.
type sharedLine struct {
	encode sync.Once
	line   []byte

	prepare  sync.Once
	prepared *websocket.PreparedMessage
}

// frame returns the line as a WebSocket text message prepared for many
// connections: a subscriber whose batch holds only it writes the frame
// encoded for all.
func (l *sharedLine) frame() *websocket.PreparedMessage {
	l.prepare.Do(func() {
		l.prepared, _ = websocket.NewPreparedMessage(websocket.MessageText, l.line)
	})
	return l.prepared
}

// sharedLines is a push in the spelling of each protocol, encoded when a
// subscriber speaking it first needs it.
type sharedLines [numProtocols]sharedLine

// outPub is a publication fanned out to this node's subscribers, encoded
// once per protocol and shared by all its subscribers.
type outPub struct {
	pub     *broker.Publication
	channel string
	pos     broker.Position
	policy  SlowConsumerPolicy
	// queue says that the publication is queued even for a session that
	// could take it at once: more of its channel follow (Server.fanOut).
	queue bool

	lines sharedLines
}

func newOutPub(pub *broker.Publication, policy SlowConsumerPolicy) *outPub {
	return &outPub{pub: pub, channel: pub.Channel, pos: pub.Position, policy: policy}
}

// lineFor returns the publication as p spells it, encoding it the first
// time.
func (o *outPub) lineFor(p protocol) *sharedLine {
	l := &o.lines[p.index()]
	l.encode.Do(func() { l.line = p.encodePublication(o.pub) })
	return l
}

// outNotice is a notice fanned out to the channel's subscribers here,
// encoded once per protocol.
type outNotice struct {
	n     *notice
	lines sharedLines
}

// lineFor returns the notice as p spells it (nil: not sent to p's
// clients), encoding it the first time.
func (o *outNotice) lineFor(p protocol) []byte {
	l := &o.lines[p.index()]
	l.encode.Do(func() { l.line = p.encodeNotice(o.n) })
	return l.line
}
