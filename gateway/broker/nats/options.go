package nats

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configures a Broker. The zero value connects to a server at
// 127.0.0.1:4222 without authentication.
type Options struct {
	// Servers are the NATS servers, each host:port; the client connects
	// to one and fails over to the others (and to those the cluster
	// announces). Default: 127.0.0.1:4222.
	Servers []string
	// User and Password authenticate the connection. Token authenticates
	// it instead, when set. CredentialsFile names a JWT credentials file
	// (decentralised auth), instead of both. Default: no authentication.
	// Neither the password nor the token appears in String or in errors.
	User            string
	Password        string
	Token           string
	CredentialsFile string
	// TLS, when not nil, makes the connection TLS with this
	// configuration. Default: plain TCP (unless the server requires TLS,
	// which then fails).
	TLS *tls.Config
	// Name is the connection's name, shown by the server's monitoring.
	// Default: "duplex".
	Name string
	// Prefix begins every subject, stream and bucket name of the broker,
	// so that deployments sharing a server stay apart. It may hold
	// letters, digits, '-' and '_'. Default: "duplex".
	Prefix string

	// Replicas is how many servers of a JetStream cluster keep the
	// history stream and the presence bucket. Default: 1.
	Replicas int
	// MemoryStorage keeps history and presence in the servers' memory
	// instead of files: faster, and lost when a server restarts. Default:
	// false (files).
	MemoryStorage bool
	// MaxHistorySize caps how many publications the stream keeps per
	// channel, whatever PublishOptions.HistorySize asks (a safety net for
	// the stream's size; the broker trims each channel to its own
	// HistorySize). Every node must use the same value. Default: 100,000.
	MaxHistorySize int
	// PresenceTTL is how long a presence entry lives when AddPresence is
	// given a ttl of 0; the gateway adds its members again before it
	// passes, so that the members of a node that died leave. Default: 60
	// seconds.
	PresenceTTL time.Duration

	// DialTimeout bounds making the connection, the handshake included,
	// within Start's context. Default: 5 seconds.
	DialTimeout time.Duration
	// RequestTimeout bounds a request to the server (a JetStream publish,
	// a history read) made with a context that has no deadline of its
	// own. Default: 5 seconds.
	RequestTimeout time.Duration
	// HealthInterval is how often the connection is checked with a
	// round trip; HealthTimeout is how long the answer may take before the
	// link counts as lost (a server that hangs keeps its TCP connection
	// open). Defaults: 1 second and 2 seconds.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// ReconnectWait is the pause between two attempts to reconnect to the
	// same server, with jitter added. Default: 250 milliseconds.
	ReconnectWait time.Duration
	// Logger receives connection events (lost, back) and errors that no
	// call returns (a failed trim of history). Default: none.
	Logger *slog.Logger
}

const (
	defaultPort           = "4222"
	defaultServer         = "127.0.0.1:" + defaultPort
	defaultName           = "duplex"
	defaultPrefix         = "duplex"
	defaultMaxHistorySize = 100_000
	defaultPresenceTTL    = 60 * time.Second
	defaultDialTimeout    = 5 * time.Second
	defaultRequestTimeout = 5 * time.Second
	defaultHealthInterval = time.Second
	defaultHealthTimeout  = 2 * time.Second
	defaultReconnectWait  = 250 * time.Millisecond
	maxPrefixLen          = 64
)

// withDefaults returns o with its defaults filled in, or an error for a
// value that cannot work.
func (o Options) withDefaults() (Options, error) {
	o.Servers = append([]string(nil), o.Servers...)
	if len(o.Servers) == 0 {
		o.Servers = []string{defaultServer}
	}
	for _, s := range o.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return o, fmt.Errorf("nats broker: server %q: %v", s, err)
		}
	}
	if o.Name == "" {
		o.Name = defaultName
	}
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if err := validPrefix(o.Prefix); err != nil {
		return o, err
	}
	if o.Token != "" && (o.User != "" || o.Password != "") {
		return o, errors.New("nats broker: both a token and a user are set; give one")
	}
	if o.CredentialsFile != "" && (o.Token != "" || o.User != "") {
		return o, errors.New("nats broker: a credentials file and a token or user are set; give one")
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxHistorySize <= 0 {
		o.MaxHistorySize = defaultMaxHistorySize
	}
	setDefault(&o.PresenceTTL, defaultPresenceTTL)
	setDefault(&o.DialTimeout, defaultDialTimeout)
	setDefault(&o.RequestTimeout, defaultRequestTimeout)
	setDefault(&o.HealthInterval, defaultHealthInterval)
	setDefault(&o.HealthTimeout, defaultHealthTimeout)
	setDefault(&o.ReconnectWait, defaultReconnectWait)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// validPrefix accepts what is at once a subject token and a stream or
// bucket name.
func validPrefix(p string) error {
	if len(p) > maxPrefixLen {
		return fmt.Errorf("nats broker: prefix of %d bytes, at most %d", len(p), maxPrefixLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("nats broker: prefix %q may hold only letters, digits, '-' and '_'", p)
		}
	}
	return nil
}

// scheme is "tls" when the options ask for TLS, else "nats".
func (o Options) scheme() string {
	if o.TLS != nil {
		return "tls"
	}
	return "nats"
}

// serverURLs returns the servers as URLs for the client, without
// credentials: those travel as options, so that no URL holds a secret.
func (o Options) serverURLs() string {
	urls := make([]string, len(o.Servers))
	for i, s := range o.Servers {
		urls[i] = o.scheme() + "://" + s
	}
	return strings.Join(urls, ",")
}

// String describes the options as a URL of ParseURL's form, with the
// password and the token redacted.
func (o Options) String() string {
	u := url.URL{Scheme: o.scheme(), Host: strings.Join(o.Servers, ",")}
	if len(o.Servers) == 0 {
		u.Host = defaultServer
	}
	switch {
	case o.Token != "":
		u.User = url.User("xxxxx")
	case o.Password != "":
		u.User = url.UserPassword(o.User, "xxxxx")
	case o.User != "":
		u.User = url.User(o.User)
	}
	q := url.Values{}
	if o.Prefix != "" && o.Prefix != defaultPrefix {
		q.Set("prefix", o.Prefix)
	}
	if o.Replicas > 1 {
		q.Set("replicas", strconv.Itoa(o.Replicas))
	}
	if o.MemoryStorage {
		q.Set("storage", "memory")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseURL parses a server URL into Options, for the command line's
// --broker:
//
//	nats://[user:password@ | token@]host[:port][,host[:port]...][?prefix=p&replicas=n&storage=memory]
//	tls://...  the same over TLS (Options.TLS is then a *tls.Config that
//	           the caller may add RootCAs or a client certificate to)
//
// The port defaults to 4222. As with NATS's own clients, a user without a
// password is a token. User, password and token are percent-decoded when
// they can be, and may hold '@', ':' and '/' unescaped too. Errors never
// quote the password or the token.
func ParseURL(s string) (Options, error) {
	var o Options
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, errors.New("nats broker: URL must begin with nats:// or tls://")
	}
	switch scheme {
	case "nats":
	case "tls":
		o.TLS = &tls.Config{}
	default:
		return o, fmt.Errorf("nats broker: URL scheme %q, want nats or tls", scheme)
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
		if hasPass {
			o.User, o.Password = unescape(user), unescape(pass)
		} else {
			o.Token = unescape(user)
		}
		rest = rest[at+1:]
	}
	u, err := url.Parse("nats://" + rest)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return o, fmt.Errorf("nats broker: URL %s: %v", redactedURL(scheme, o, rest), err)
	}
	if u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return o, fmt.Errorf("nats broker: URL %s has a path or fragment", redactedURL(scheme, o, rest))
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return o, errors.New("nats broker: URL has an empty host")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), defaultPort)
		}
		o.Servers = append(o.Servers, h)
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "prefix":
			if err := validPrefix(v); err != nil {
				return o, err
			}
			o.Prefix = v
		case "replicas":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return o, fmt.Errorf("nats broker: URL parameter replicas=%q is not a positive number", v)
			}
			o.Replicas = n
		case "storage":
			switch v {
			case "file":
				o.MemoryStorage = false
			case "memory":
				o.MemoryStorage = true
			default:
				return o, fmt.Errorf("nats broker: URL parameter storage=%q, want file or memory", v)
			}
		default:
			return o, fmt.Errorf("nats broker: unknown URL parameter %q", k)
		}
	}
	return o, nil
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// redactedURL rebuilds a URL for an error message, without its password
// or token.
func redactedURL(scheme string, o Options, rest string) string {
	var b strings.Builder
	b.WriteString(scheme + "://")
	switch {
	case o.Token != "":
		b.WriteString("xxxxx@")
	case o.User != "" || o.Password != "":
		b.WriteString(url.PathEscape(o.User) + ":xxxxx@")
	}
	b.WriteString(rest)
	return strconv.Quote(b.String())
}
