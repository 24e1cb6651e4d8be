// Package broker defines how gateway nodes share publications, history and
// presence, and holds the in-memory implementation that a single node uses by
// default. Redis and NATS implementations live in subpackages; every
// implementation passes the contract suite in gateway/brokertest.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrClosed is returned by a Broker's methods after Close.
var ErrClosed = errors.New("broker: closed")

// ErrStreamLimit is returned by Publish when the publication would start a
// stream past PublishOptions.MaxStreams.
var ErrStreamLimit = errors.New("broker: too many streams in the namespace")

// Position is a place in a channel's stream of publications. Offsets start
// at 1 and grow by one with each publication. The epoch names one life of
// the stream: when a stream is lost (history expired, a broker restarted
// without persistence) it restarts under a new epoch, so positions from the
// old one are known to be unrecoverable instead of silently wrong.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// ClientInfo describes a connection in presence lists, join/leave events and
// publications.
type ClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// Publication is a message published to a channel.
type Publication struct {
	Channel string
	// Position is zero when the channel keeps no history.
	Position Position
	// Data is compact JSON.
	Data json.RawMessage
	// Info is the publishing client, or nil for a publication from the
	// backend API.
	Info *ClientInfo
}

// PublishOptions says how a channel keeps its history. It is passed with
// each publication because the policy lives in the gateway's configuration,
// not in the broker.
type PublishOptions struct {
	// HistorySize is how many publications the stream keeps. 0 keeps no
	// history and gives publications no position.
	HistorySize int
	// HistoryTTL is how long a publication stays in history. 0 means no
	// limit other than HistorySize.
	HistoryTTL time.Duration
	// StreamTTL is how long the stream's position (offset and epoch)
	// outlives its last publication; after it, the stream restarts under a
	// new epoch. Default (0): 24 hours, and never less than HistoryTTL.
	StreamTTL time.Duration
	// MaxStreams caps the streams of the channel's namespace (the part of
	// its name before the first colon): a publication that would start one
	// more fails with ErrStreamLimit. Default (0): no cap. The memory
	// broker enforces it; a shared broker's streams are bounded by its own
	// memory limit and StreamTTL instead.
	MaxStreams int
}

// HistoryOptions selects publications from a stream.
type HistoryOptions struct {
	// Since, when set, selects only publications after it; it must be of
	// the stream's current epoch, else the result holds none and the
	// caller compares epochs.
	Since *Position
	// Limit caps the number of publications: 0 returns none (only the
	// position), a negative value returns all that history holds.
	Limit int
	// Reverse returns the newest first.
	Reverse bool
}

// HistoryResult is a selection of a stream and the stream's current
// position.
type HistoryResult struct {
	Publications []*Publication
	// Position is the stream's latest position, with an epoch even when
	// the stream holds nothing yet.
	Position Position
}

// PresenceStats counts a channel's members.
type PresenceStats struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

// Handler receives what the broker delivers to this node, for the channels
// this node subscribed to. For one channel, publications arrive in stream
// order, one at a time: a handler that returns before enqueueing a
// publication everywhere would break that order, so a handler must not
// block for long (it only enqueues).
type Handler interface {
	HandlePublication(pub *Publication)
	HandleJoin(channel string, info *ClientInfo)
	HandleLeave(channel string, info *ClientInfo)
	// HandleControl receives a control message published by any node with
	// Broker.Control (a backend's "disconnect user" must reach every node).
	HandleControl(data []byte)
	// HandleConnection reports the link between this node and a shared
	// backend: false when it is lost or stops answering, true when it is
	// back and every channel this node subscribed to is subscribed again.
	// What was published while it was lost was not delivered here; the
	// gateway recovers it from history. Calls alternate, starting with
	// false. The memory broker never calls it. Deliveries may resume a
	// moment before true is reported (the client library resubscribes
	// before the broker has proved the link), and calls made in that
	// moment may still fail as unavailable: a handler must not take such
	// a failure for missing data.
	HandleConnection(up bool)
}

// Broker carries publications, history and presence between gateway nodes.
// Every method takes a context and is safe for concurrent use.
type Broker interface {
	// Start begins delivery to h. It is called once, before any other
	// method. A broker with a backend returns an error, not a hang, when
	// the backend cannot be reached before ctx ends.
	Start(ctx context.Context, h Handler) error

	// Publish appends data to the channel's stream (when opts keep
	// history) and delivers it to every node subscribed to the channel.
	Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error)
	// PublishJoin and PublishLeave deliver presence events to every node
	// subscribed to the channel.
	PublishJoin(ctx context.Context, channel string, info *ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info *ClientInfo) error
	// Control delivers data to every node's Handler.HandleControl.
	Control(ctx context.Context, data []byte) error

	// Subscribe and Unsubscribe start and stop delivery of a channel to
	// this node; the gateway calls them for the first and last local
	// subscriber.
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error

	// History reads the channel's stream. A channel never published to
	// gets a fresh epoch and offset 0.
	History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error)

	// AddPresence records a member of a channel; ttl bounds how long the
	// entry lives unless added again (brokers shared by several nodes
	// expire the members of a node that died). RemovePresence removes it.
	AddPresence(ctx context.Context, channel string, info *ClientInfo, ttl time.Duration) error
	RemovePresence(ctx context.Context, channel, client string) error
	// Presence lists a channel's members by client id.
	Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (PresenceStats, error)

	// Close stops delivery and releases the broker's resources; it waits
	// for its goroutines, bounded by ctx.
	Close(ctx context.Context) error
}
