package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Options configures a Broker. The zero value connects to a standalone
// server at 127.0.0.1:6379.
type Options struct {
	// Addrs are the servers, each host:port. One address is a standalone
	// server (unless Cluster); several are seed nodes of a Redis Cluster,
	// from which the client learns the others. Default: 127.0.0.1:6379.
	Addrs []string
	// Cluster says that the servers form a Redis Cluster (7.0 or later,
	// for sharded pub/sub), also when Addrs holds one seed. Default: true
	// when Addrs holds several, false otherwise.
	Cluster bool
	// Username and Password authenticate each connection (AUTH). An empty
	// Username is the default user; an ACL user needs the keys
	// ~<prefix>:* and the channels &<prefix>:*, nothing else. Default: no
	// authentication. The password never appears in String or in errors.
	Username string
	Password string
	// DB is the database of a standalone server (SELECT); a Cluster has
	// only 0. Default: 0.
	DB int
	// TLS, when not nil, makes every connection TLS with this
	// configuration (its ServerName defaults to the host). Default: plain
	// TCP.
	TLS *tls.Config
	// Prefix begins every key and pub/sub channel name, so that
	// deployments that share a server stay apart. It must not contain
	// '{' or '}' (hash tags). Default: "duplex".
	Prefix string
	// Shards is the number of pub/sub connections of each node; channels
	// are spread over them by a hash of their name, and each connection's
	// messages are delivered by a goroutine of its own. On a Cluster it is
	// also the number of hash slots that the channels' keys are spread
	// over, so every node must use the same value, and changing it moves
	// every channel to new keys (losing history and presence); on a
	// standalone server it is each node's own affair. Default: on a
	// standalone server one per core (GOMAXPROCS), from 2 to 8; 16 on a
	// Cluster.
	Shards int

	// PresenceTTL is how long a presence entry lives when AddPresence is
	// given a ttl of 0; the gateway adds its members again before it
	// passes, so that the members of a node that died leave. Default: 60
	// seconds.
	PresenceTTL time.Duration
	// DialTimeout bounds making a connection, the handshake (HELLO, AUTH,
	// SELECT) included. A call that finds its connection being made waits
	// for it at most this long, even past its context. Default: 5 seconds.
	DialTimeout time.Duration
	// ConnTimeout is the longest a connection waits for a reply, whatever
	// the calls' contexts, before it is closed as broken. Default: 10
	// seconds.
	ConnTimeout time.Duration
	// HealthInterval is how often each pub/sub connection is checked with
	// a PING; HealthTimeout is how long the answer may take before the
	// connection counts as lost (a server that hangs keeps its TCP
	// connections open). Defaults: 1 second and 2 seconds.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// FlushDelay is how long the connection for commands waits after each
	// write before the next, while other calls are in flight, gathering
	// the commands made meanwhile into one write: fewer system calls for
	// the node under load, at the price of that much latency per call (a
	// sleep this short may take up to a millisecond when the process is
	// otherwise idle). BenchmarkFlushDelay measured a third less of the
	// node's CPU per publication at 64 and 512 calls in flight and a
	// tenth less at 16, at the same throughput. Negative: write at once.
	// Default: 100 microseconds.
	FlushDelay time.Duration

	// MaxPendingBytes bounds the messages of one pub/sub connection read
	// from Redis and not yet delivered (the connection's reader never
	// waits for the node, so that a busy node is not mistaken for a dead
	// link). Over it the node is too slow for its traffic: the connection
	// counts as lost and its channels catch up from history. Default:
	// 32 MiB, Redis's own hard limit on a subscriber's output buffer.
	MaxPendingBytes int

	// Logger receives the connection's changes (lost, restored) and the
	// messages dropped as malformed; never a password. Default: no logs.
	Logger *slog.Logger
}

const (
	defaultAddr            = "127.0.0.1:6379"
	defaultPrefix          = "duplex"
	defaultClusterShards   = 16
	maxStandaloneShards    = 8
	defaultPresenceTTL     = 60 * time.Second
	defaultMaxPendingBytes = 32 << 20
	defaultDialTimeout     = 5 * time.Second
	defaultConnTimeout     = 10 * time.Second
	defaultHealthInterval  = time.Second
	defaultHealthTimeout   = 2 * time.Second
	defaultFlushDelay      = 100 * time.Microsecond
	maxShards              = 1024
)

// withDefaults returns o with its defaults filled in, or an error for a
// value that cannot work.
func (o Options) withDefaults() (Options, error) {
	o.Addrs = append([]string(nil), o.Addrs...)
	if len(o.Addrs) == 0 {
		o.Addrs = []string{defaultAddr}
	}
	for _, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return o, fmt.Errorf("redis broker: address %q: %v", a, err)
		}
	}
	if len(o.Addrs) > 1 {
		o.Cluster = true
	}
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return o, fmt.Errorf("redis broker: prefix %q contains a hash tag brace", o.Prefix)
	}
	if o.DB < 0 || o.Cluster && o.DB != 0 {
		return o, fmt.Errorf("redis broker: database %d: a Cluster has only database 0", o.DB)
	}
	if o.Shards <= 0 {
		o.Shards = standaloneShards()
		if o.Cluster {
			o.Shards = defaultClusterShards
		}
	}
	if o.Shards > maxShards {
		return o, fmt.Errorf("redis broker: %d shards, at most %d", o.Shards, maxShards)
	}
	setDefault(&o.PresenceTTL, defaultPresenceTTL)
	setDefault(&o.DialTimeout, defaultDialTimeout)
	setDefault(&o.ConnTimeout, defaultConnTimeout)
	setDefault(&o.HealthInterval, defaultHealthInterval)
	setDefault(&o.HealthTimeout, defaultHealthTimeout)
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = defaultMaxPendingBytes
	}
	if o.FlushDelay == 0 {
		o.FlushDelay = defaultFlushDelay
	}
	return o, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// String describes the options as a URL, with the password redacted.
func (o Options) String() string {
	u := url.URL{Scheme: "redis", Host: strings.Join(o.Addrs, ",")}
	if len(o.Addrs) == 0 {
		u.Host = defaultAddr
	}
	if o.TLS != nil {
		u.Scheme = "rediss"
	}
	switch {
	case o.Password != "":
		u.User = url.UserPassword(o.Username, "xxxxx")
	case o.Username != "":
		u.User = url.User(o.Username)
	}
	if o.DB != 0 {
		u.Path = "/" + strconv.Itoa(o.DB)
	}
	q := url.Values{}
	if o.Cluster && len(o.Addrs) <= 1 {
		q.Set("cluster", "true")
	}
	if o.Prefix != "" && o.Prefix != defaultPrefix {
		q.Set("prefix", o.Prefix)
	}
	switch {
	case o.FlushDelay < 0:
		q.Set("flush_delay", "0")
	case o.FlushDelay > 0 && o.FlushDelay != defaultFlushDelay:
		q.Set("flush_delay", o.FlushDelay.String())
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseURL parses a server URL into Options:
//
//	redis://[[user]:password@]host[:port][,host[:port]...][/db][?cluster=true&prefix=p&flush_delay=d]
//	rediss://...  the same over TLS (Options.TLS is then a *tls.Config
//	              that the caller may add a RootCAs to)
//
// The port defaults to 6379. Several comma-separated hosts are seed nodes of
// a Redis Cluster; cluster=true says the same of one. /db selects a
// database of a standalone server. flush_delay sets FlushDelay (a Go
// duration; 0 writes at once). User and password are percent-decoded
// when they can be, and may hold '@', ':' and '/' unescaped too. Errors
// never quote the password.
func ParseURL(s string) (Options, error) {
	var o Options
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, errors.New(`redis broker: URL must begin with redis:// or rediss://`)
	}
	switch scheme {
	case "redis":
	case "rediss":
		o.TLS = &tls.Config{}
	default:
		return o, fmt.Errorf("redis broker: URL scheme %q, want redis or rediss", scheme)
	}
	// The userinfo ends at the last '@' before the query: a password may
	// hold '@', '/' and ':' unescaped, and must not reach url.Parse, whose
	// errors quote what they parse.
	auth := rest
	if i := strings.IndexByte(auth, '?'); i >= 0 {
		auth = auth[:i]
	}
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user, pass, hasPass := strings.Cut(rest[:at], ":")
		o.Username = unescape(user)
		if hasPass {
			o.Password = unescape(pass)
		}
		rest = rest[at+1:]
	}
	hosts, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		hosts, tail = rest[:i], rest[i:]
	}
	u, err := url.Parse("redis://host" + tail)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return o, fmt.Errorf("redis broker: URL %s: %v", redactedURL(scheme, o, rest), err)
	}
	if u.Fragment != "" {
		return o, errors.New("redis broker: URL has a fragment")
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "6379")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || strings.ContainsAny(host, "%@/ ") {
			return o, fmt.Errorf("redis broker: URL %s: invalid host %q", redactedURL(scheme, o, rest), h)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return o, fmt.Errorf("redis broker: URL %s: invalid port %q", redactedURL(scheme, o, rest), port)
		}
		o.Addrs = append(o.Addrs, h)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return o, fmt.Errorf("redis broker: URL database %q is not a number", db)
		}
		o.DB = n
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "cluster":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("redis broker: URL parameter cluster=%q is not a boolean", v)
			}
			o.Cluster = b
		case "prefix":
			o.Prefix = v
		case "flush_delay":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return o, fmt.Errorf("redis broker: URL parameter flush_delay=%q is not a duration such as 100us or 0", v)
			}
			o.FlushDelay = d
			if d == 0 {
				o.FlushDelay = -1 // none, where the option's 0 is the default
			}
		default:
			return o, fmt.Errorf("redis broker: unknown URL parameter %q", k)
		}
	}
	if len(o.Addrs) > 1 {
		o.Cluster = true
	}
	if o.Cluster && o.DB != 0 {
		return o, fmt.Errorf("redis broker: URL database %d: a Cluster has only database 0", o.DB)
	}
	return o, nil
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// redactedURL rebuilds a URL for an error message, without its password.
func redactedURL(scheme string, o Options, rest string) string {
	var b strings.Builder
	b.WriteString(scheme + "://")
	if o.Username != "" || o.Password != "" {
		b.WriteString(url.PathEscape(o.Username))
		if o.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(rest)
	return strconv.Quote(b.String())
}

// standaloneShards is the default number of pub/sub connections of a node
// on a standalone server: one per core the node may use, from 2 to
// maxStandaloneShards. Each connection's messages are delivered by one
// goroutine, so with one connection a node delivers on one core however
// many it has (a channel per client through Redis reached 51-56% of the
// memory broker's deliveries/s on 2 cores). On a standalone server the
// number is the node's own affair: keys and pub/sub channels do not name
// a shard there, so nodes with different numbers share a server.
func standaloneShards() int {
	return min(max(runtime.GOMAXPROCS(0), 2), maxStandaloneShards)
}
