package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// Config configures a Server. The zero value is valid: an in-memory broker,
// anonymous connections refused, no namespaces (so no channel exists), and
// the limits' defaults stated on each field.
type Config struct {
	// Namespaces holds the channel policies. A channel "ns:name" belongs to
	// namespace "ns"; a channel without a colon to the namespace named "".
	// A channel whose namespace is not listed does not exist (error 102).
	Namespaces []Namespace

	// Auth says how connection and channel tokens are verified.
	Auth Auth

	// Limits protect the server from clients.
	Limits Limits

	// OriginPatterns lists the hosts, besides the request's own, whose web
	// pages may connect (path.Match patterns such as "*.example.com").
	// Default: only pages served from the gateway's own host.
	OriginPatterns []string

	// PingInterval is how often the server pings each connection; one that
	// does not answer within PongTimeout is closed with 1008. Default: 25
	// seconds; negative disables.
	PingInterval time.Duration
	// PongTimeout default: 10 seconds.
	PongTimeout time.Duration

	// Compression configures permessage-deflate for clients that offer it.
	// Default: disabled.
	Compression websocket.CompressionOptions

	// DrainWindow is the time over which Shutdown spreads the closing of
	// connections (1001), so that clients do not all reconnect at the same
	// moment. Default: 5 seconds.
	DrainWindow time.Duration

	// APIKey guards the backend HTTP API (header "Authorization: apikey
	// <key>"). Default: empty, and then only loopback clients may use the
	// API, with a loopback Host, a JSON body and no Origin (so that no web
	// page can make a browser call it).
	APIKey string

	// MetricsToken guards /metrics (header "Authorization: Bearer
	// <token>"). Default: empty, and then only loopback clients may read
	// it.
	MetricsToken string

	// Broker carries publications, history and presence. Default: an
	// in-memory broker, for a single node. The Server starts it and closes
	// it in Shutdown.
	Broker broker.Broker
	// BrokerStartTimeout bounds starting the broker in New: a broker that
	// cannot reach its backend in time makes New fail. Default: 10
	// seconds.
	BrokerStartTimeout time.Duration

	// PresenceTTL is how long a presence entry lives at the broker unless
	// refreshed; the node refreshes its own every third of it, so the
	// members of a node that died leave within it. Default: 60 seconds.
	PresenceTTL time.Duration
	// PresenceInterval is how often join and leave events are pushed,
	// collected per channel (a join and a leave of one client within it
	// cancel out), and how often presence counts are pushed in
	// count-only channels. Default: 200 milliseconds.
	PresenceInterval time.Duration

	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger

	// Version is reported to clients in the connect result.
	Version string

	// Fallback serves the requests that are not for the gateway's own
	// endpoints (the demo pages and the client script, in `duplex serve`).
	// Default: 404.
	Fallback http.Handler

	// Hooks let the embedding program decide what configuration cannot.
	Hooks Hooks

	// Proxy asks the app's backend over HTTP who a client is and what it
	// may do (docs/proxy.md): at connect and refresh here, and per
	// namespace for subscribe, publish and rpc. Default: no endpoints,
	// nothing asked.
	Proxy ProxyConfig

	// Pusher serves the Pusher Channels protocol, version 7, to the apps
	// it lists, at /app/{key} beside /ws, on the same hub and broker
	// (docs/pusher.md). Default: no apps, and /app/ answers 404.
	Pusher Pusher
}

// Namespace is the policy of the channels "Name:…".
type Namespace struct {
	// Name of the namespace, without the colon; "" is the namespace of
	// channels without a colon.
	Name string

	// Anonymous lets connections without a token (user "") subscribe and,
	// when Publish is PermissionAuthenticated, publish. Default: false.
	Anonymous bool

	// Subscribe says who may subscribe. Default: PermissionAuthenticated.
	Subscribe Permission
	// Publish says who may publish from a client connection; the backend
	// API may always publish. Default: PermissionServer, only the backend.
	Publish Permission

	// HistorySize is how many publications a channel keeps for recovery
	// and the history command. Default: 0, no history (and no recovery).
	HistorySize int
	// HistoryTTL is how long a publication stays in history. Default: 0,
	// only HistorySize bounds it.
	HistoryTTL time.Duration
	// MaxStreams caps the channels of the namespace that keep a stream
	// (history and position) at once: past it, a publication to a new
	// channel fails with 106, so that publishers cannot fill memory with
	// fresh channel names (reading a channel never makes a stream). A
	// stream lives for 24 hours after its last publication. Enforced by
	// the memory broker; Redis and NATS bound streams by their own memory
	// limits. Default: 100,000; negative: no cap.
	MaxStreams int

	// Presence keeps the member list of each channel. Default: false.
	Presence bool
	// JoinLeave sends join and leave events to subscribers. Default: false.
	JoinLeave bool
	// PresenceCountAbove is the member count above which a channel's
	// subscribers get presence_count pushes (at most one per
	// PresenceInterval) instead of join and leave events, which would
	// cost members² pushes in a connect storm. Default: 1,000; negative:
	// always events.
	PresenceCountAbove int

	// SlowConsumer is what happens when a subscriber's outbound queue is
	// full. Default: SlowDisconnect.
	SlowConsumer SlowConsumerPolicy

	// SubscribeProxy names the endpoint of ProxyConfig.Endpoints asked
	// whether a client may subscribe: its answer replaces the Subscribe
	// permission and channel tokens, and may set the subscriber's info
	// and data for the reply. Default: "", the permissions decide.
	SubscribeProxy string
	// PublishProxy names the endpoint asked whether a client may publish,
	// and what: its answer replaces the Publish permission, and may
	// replace the data or keep it out of history. Default: "".
	PublishProxy string
	// SubRefreshProxy names the endpoint asked when a subscription's
	// expiry, set by the subscribe proxy's expire_at, has passed; without
	// it the subscription then ends (an unsubscribe push). Default: "".
	SubRefreshProxy string
	// RPCProxy names the endpoint that answers the rpc methods "Name:…".
	// Default: "", ProxyConfig.RPC.
	RPCProxy string

	// perUserEvents: the node also pushes, per user, when its first
	// connection joins the presence and when its last leaves (Pusher's
	// member_added and member_removed).
	perUserEvents bool
}

// Permission says who may subscribe to or publish in a namespace.
type Permission string

const (
	// PermissionAuthenticated: any connection with a valid token (and
	// anonymous ones when the namespace allows them).
	PermissionAuthenticated Permission = "authenticated"
	// PermissionToken: only with a channel token for the channel, or a
	// connection token whose "channels" claim lists it. For publishing: only
	// a subscriber whose subscription was granted that way.
	PermissionToken Permission = "token"
	// PermissionServer: nobody from a client connection; only the backend.
	PermissionServer Permission = "server"
)

// SlowConsumerPolicy is what the server does when a connection's outbound
// queue (Limits.MaxQueueBytes) is full.
type SlowConsumerPolicy string

const (
	// SlowDisconnect closes the connection with 4002; the client reconnects
	// and recovers from history.
	SlowDisconnect SlowConsumerPolicy = "disconnect"
	// SlowDropOldest drops the oldest queued publications of such channels
	// and tells the client with a gap push.
	SlowDropOldest SlowConsumerPolicy = "drop_oldest"
	// SlowLatest keeps only the latest queued publication of each channel:
	// for values where only the current one matters (prices, positions).
	SlowLatest SlowConsumerPolicy = "latest"
)

// Limits protect the server. Zero fields take the defaults stated on them; a
// negative value removes a limit that has a default.
type Limits struct {
	// MaxConnections caps the server's connections. Default: 0, no cap
	// other than the process's file descriptors.
	MaxConnections int
	// MaxConnectionsPerIP caps the connections from one client address.
	// Default: 0, no cap.
	MaxConnectionsPerIP int
	// MaxConnectionsPerUser caps one user's connections (anonymous ones
	// are not counted). Default: 0, no cap.
	MaxConnectionsPerUser int

	// HandshakeRate is how many WebSocket handshakes per second one
	// client address may make, with bursts of HandshakeBurst; over it the
	// server answers HTTP 429. Default: 0, no limit. HandshakeBurst
	// default: HandshakeRate, at least 1.
	HandshakeRate  float64
	HandshakeBurst int

	// FallbackSendRate is how many POSTs to /fallback/send (the commands
	// of fallback clients) per second one client address may make, with
	// bursts of FallbackSendBurst; over it the server answers HTTP 429. A
	// POST for a session of another node travels over the broker to every
	// node, even for an id the client made up, so this bounds the broker
	// traffic one address can cause. A client makes a POST per batch of
	// commands, so the default leaves room for many clients behind one
	// address (an office's NAT): 200 per second. FallbackSendBurst
	// default: twice the rate. Negative: no limit.
	FallbackSendRate  float64
	FallbackSendBurst int

	// ClientIPHeader, when set, names a header holding the client address
	// (such as "X-Real-IP" or "X-Forwarded-For") set by a proxy in front.
	// It is believed only from peers in TrustedProxies, and of its
	// comma-separated addresses the rightmost that is not a trusted proxy
	// is the client's: those to its left were written by the client
	// itself. Default: the TCP peer's address.
	ClientIPHeader string
	// TrustedProxies are the networks of the proxies whose ClientIPHeader
	// is believed. Their connections are also exempt from
	// MaxPendingConnectionsPerIP, as each carries many clients. Default:
	// none, so ClientIPHeader is ignored until it is set.
	TrustedProxies []netip.Prefix

	// MaxHeaderBytes caps the request line and headers of every HTTP
	// request, the WebSocket upgrade included; over it the server answers
	// 431. Used by HTTPServer. Default: 16 KiB.
	MaxHeaderBytes int
	// ReadTimeout bounds reading one HTTP request that is not a WebSocket
	// upgrade, its body included (an upgraded connection has no deadline
	// from it). Used by HTTPServer. Default: 15 seconds.
	ReadTimeout time.Duration
	// IdleTimeout is how long a kept-alive HTTP connection may wait for
	// its next request. Used by HTTPServer. Default: 60 seconds.
	IdleTimeout time.Duration
	// MaxPendingConnectionsPerIP caps the TCP connections from one peer
	// address that have not (yet) upgraded to WebSocket: a request in
	// progress, a kept-alive or a silent connection. Over it a new
	// connection is closed at once. Used by HTTPServer. Default: 256;
	// negative: no cap.
	MaxPendingConnectionsPerIP int
	// MaxPendingConnections caps all such connections of the server.
	// Default: 10,000; negative: no cap.
	MaxPendingConnections int

	// MaxMessageSize caps a message from a client; a larger one closes the
	// connection with 1009. Default: 64 KiB.
	MaxMessageSize int64

	// MessageRate is how many commands per second a connection may send,
	// with bursts of MessageBurst; over it the connection is closed with
	// 4005. Default: 100 per second, burst 200.
	MessageRate  float64
	MessageBurst int

	// FrameRate is how many WebSocket frames per second one connection
	// may send, pings and other control frames included, with bursts of
	// FrameBurst; over it the connection is closed with 1008 (ping
	// floods, floods of empty frames). A client within MessageRate sends
	// at most that many messages, so the default leaves it room: twice
	// MessageRate, at least 1,000 per second (1,000 with the defaults),
	// and no limit without a command rate; negative: no limit. FrameBurst
	// default: twice FrameRate, or twice MessageBurst when that is more.
	FrameRate  float64
	FrameBurst int
	// ByteRate is how many bytes per second one connection may send,
	// frame headers included, with bursts of ByteBurst; over it the
	// connection is closed with 1008. Default: MessageRate messages of
	// MaxMessageSize, the most a client within both can send (6.25 MiB/s
	// with the defaults), and no limit without both; negative: no limit.
	// ByteBurst default: twice ByteRate, or MessageBurst messages of
	// MaxMessageSize when that is more.
	ByteRate  float64
	ByteBurst int

	// MaxChannels caps the subscriptions of one connection (error 106).
	// Default: 128.
	MaxChannels int

	// MaxQueueBytes caps the bytes queued for one connection before the
	// slow-consumer policy applies. Default: 1 MiB.
	MaxQueueBytes int

	// ConnectTimeout is how long a connection may go without a successful
	// connect command (4001). Default: 10 seconds.
	ConnectTimeout time.Duration
	// WriteTimeout is how long one write to a connection may take before
	// the connection is closed as a slow consumer. Default: 10 seconds.
	WriteTimeout time.Duration
}

// Hooks are functions the embedding program supplies. Each is optional.
type Hooks struct {
	// Authenticate, when set, verifies connection tokens in place of the
	// JWT verification configured in Auth. It gets the token (possibly
	// empty) and the Cookie and Authorization headers of the upgrade
	// request (no other header is kept until connect).
	Authenticate func(ctx context.Context, token string, header http.Header) (*Credentials, error)

	// ValidatePublish, when set, is called before a client's publication
	// (not the backend's) is accepted. Returning an *Error refuses it with
	// that error; another error refuses it with 103.
	ValidatePublish func(ctx context.Context, p PublishRequest) error
}

// Credentials are what a verified connection token grants.
type Credentials struct {
	// User is the user id; empty means anonymous.
	User string
	// ExpiresAt, when not zero, is when the connection must have
	// refreshed its token.
	ExpiresAt time.Time
	// Info is shown to others in presence and publications.
	Info json.RawMessage
	// Channels may be subscribed to without a channel token.
	Channels []string
}

// PublishRequest is a client's publication, for Hooks.ValidatePublish.
type PublishRequest struct {
	Channel string
	Data    json.RawMessage
	Client  string
	User    string
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.PingInterval, 25*time.Second)
	def(&cfg.PongTimeout, 10*time.Second)
	def(&cfg.DrainWindow, 5*time.Second)
	def(&cfg.BrokerStartTimeout, 10*time.Second)
	def(&cfg.PresenceTTL, time.Minute)
	def(&cfg.PresenceInterval, 200*time.Millisecond)
	l := &cfg.Limits
	def(&l.ConnectTimeout, 10*time.Second)
	def(&l.WriteTimeout, 10*time.Second)
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = 64 << 10
	}
	if l.MessageRate == 0 {
		l.MessageRate = 100
	}
	if l.MessageBurst == 0 {
		l.MessageBurst = max(1, 2*int(l.MessageRate))
	}
	if l.MaxChannels == 0 {
		l.MaxChannels = 128
	}
	// The frame and byte rates follow from the command rate and the
	// message size; without those there is nothing to derive them from.
	if l.FrameRate == 0 && l.MessageRate > 0 {
		l.FrameRate = max(1000, 2*l.MessageRate)
	}
	if l.FrameRate > 0 && l.FrameBurst <= 0 {
		l.FrameBurst = int(min(max(2*l.FrameRate, 2*float64(l.MessageBurst)), 1<<30))
	}
	if l.ByteRate == 0 && l.MessageRate > 0 && l.MaxMessageSize > 0 {
		l.ByteRate = l.MessageRate * float64(l.MaxMessageSize)
	}
	if l.ByteRate > 0 && l.ByteBurst <= 0 {
		l.ByteBurst = int(min(max(2*l.ByteRate, float64(l.MessageBurst)*float64(l.MaxMessageSize)), 1<<40))
	}
	if l.MaxQueueBytes == 0 {
		l.MaxQueueBytes = 1 << 20
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 16 << 10
	}
	def(&l.ReadTimeout, 15*time.Second)
	def(&l.IdleTimeout, time.Minute)
	if l.MaxPendingConnectionsPerIP == 0 {
		l.MaxPendingConnectionsPerIP = 256
	}
	if l.MaxPendingConnections == 0 {
		l.MaxPendingConnections = 10_000
	}
	if l.FallbackSendRate == 0 {
		l.FallbackSendRate = 200
	}
	if l.FallbackSendRate > 0 && l.FallbackSendBurst <= 0 {
		l.FallbackSendBurst = max(1, int(min(2*l.FallbackSendRate, 1<<30)))
	}
	if l.HandshakeRate > 0 && l.HandshakeBurst <= 0 {
		l.HandshakeBurst = max(1, int(l.HandshakeRate))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	seen := make(map[string]bool)
	cfg.Namespaces = append([]Namespace(nil), cfg.Namespaces...)
	for i := range cfg.Namespaces {
		ns := &cfg.Namespaces[i]
		if seen[ns.Name] {
			return cfg, fmt.Errorf("gateway: namespace %q configured twice", ns.Name)
		}
		seen[ns.Name] = true
		if strings.ContainsRune(ns.Name, ':') || !validChannel(ns.Name+":x") {
			return cfg, fmt.Errorf("gateway: invalid namespace name %q", ns.Name)
		}
		if strings.HasPrefix(ns.Name, "$") {
			return cfg, fmt.Errorf("gateway: namespace %q: names beginning with $ are the gateway's own", ns.Name)
		}
		if ns.PresenceCountAbove == 0 {
			ns.PresenceCountAbove = 1000
		}
		if ns.MaxStreams == 0 {
			ns.MaxStreams = 100_000
		}
		if ns.Subscribe == "" {
			ns.Subscribe = PermissionAuthenticated
		}
		if ns.Publish == "" {
			ns.Publish = PermissionServer
		}
		for _, p := range []Permission{ns.Subscribe, ns.Publish} {
			switch p {
			case PermissionAuthenticated, PermissionToken, PermissionServer:
			default:
				return cfg, fmt.Errorf("gateway: namespace %q: unknown permission %q (authenticated, token or server)", ns.Name, p)
			}
		}
		if ns.SlowConsumer == "" {
			ns.SlowConsumer = SlowDisconnect
		}
		switch ns.SlowConsumer {
		case SlowDisconnect, SlowDropOldest, SlowLatest:
		default:
			return cfg, fmt.Errorf("gateway: namespace %q: unknown slow-consumer policy %q (disconnect, drop_oldest or latest)", ns.Name, ns.SlowConsumer)
		}
		if ns.HistorySize < 0 || ns.HistoryTTL < 0 {
			return cfg, fmt.Errorf("gateway: namespace %q: negative history size or TTL", ns.Name)
		}
		if ns.JoinLeave && !ns.Presence {
			return cfg, fmt.Errorf("gateway: namespace %q: join/leave events need presence on", ns.Name)
		}
	}
	if err := cfg.Pusher.check(); err != nil {
		return cfg, err
	}
	cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
	for i := range cfg.Pusher.Apps {
		app := &cfg.Pusher.Apps[i]
		app.withDefaults()
		cfg.Namespaces = append(cfg.Namespaces, app.namespaces()...)
	}
	return cfg, nil
}

// validChannel reports whether name may name a channel: 1 to 255 bytes of
// printable ASCII other than space, quote and backslash, so that it needs
// no escaping in JSON, logs or broker keys.
func validChannel(name string) bool {
	if len(name) == 0 || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b <= ' ' || b >= 0x7f || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}
