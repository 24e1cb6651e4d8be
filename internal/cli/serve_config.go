package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/duplexws/duplex/gateway"
	backendproxy "github.com/duplexws/duplex/gateway/proxy"
	"github.com/duplexws/duplex/websocket"
)

// serveConfig is the configuration file of duplex serve (YAML). Every
// scalar field can also be set from the environment: DUPLEX_ followed by
// its YAML path in upper case joined by "_", such as DUPLEX_LISTEN or
// DUPLEX_LIMITS_MAX_CONNECTIONS; lists take comma-separated values. Flags
// win over the environment, which wins over the file.
type serveConfig struct {
	// Listen is the TCP address. Default: 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// DebugListen, when set, serves Go's profiler (net/http/pprof) on this
	// address, which must be kept private. Default: off.
	DebugListen string `yaml:"debug_listen"`
	TLS         struct {
		Cert string `yaml:"cert"` // certificate chain file (PEM)
		Key  string `yaml:"key"`  // private key file (PEM)
	} `yaml:"tls"`
	Log struct {
		Level  string `yaml:"level"`  // debug, info (default), warn, error
		Format string `yaml:"format"` // text (default) or json
	} `yaml:"log"`
	// Demo serves the demo pages at / and runs the demo feeds, and adds
	// the namespace "demo" when none is configured. Default: true without
	// a configuration file, false with one.
	Demo *bool `yaml:"demo"`
	// APIKey guards the backend API; empty serves only loopback clients.
	APIKey string `yaml:"api_key"`
	// MetricsToken guards /metrics (Authorization: Bearer <token>); empty
	// serves it to loopback clients only.
	MetricsToken string `yaml:"metrics_token"`
	// Origins are the hosts whose pages may connect, besides the
	// gateway's own (path.Match patterns).
	Origins      []string      `yaml:"origins"`
	PingInterval time.Duration `yaml:"ping_interval"`
	PongTimeout  time.Duration `yaml:"pong_timeout"`
	// DrainWindow spreads the closing of connections on shutdown.
	DrainWindow time.Duration `yaml:"drain_window"`
	// Compression: off (default), no_context or context.
	Compression string `yaml:"compression"`

	Auth struct {
		// Algorithm: HS256, RS256, RS384, RS512, PS256, PS384, PS512,
		// ES256, ES384, ES512 or EdDSA; Algorithms: an allow-list instead.
		Algorithm     string   `yaml:"algorithm"`
		Algorithms    []string `yaml:"algorithms"`
		Secret        string   `yaml:"secret"` // HS256 key
		SecretFile    string   `yaml:"secret_file"`
		PublicKeyFile string   `yaml:"public_key_file"` // PEM, for the public-key algorithms
		JWKSFile      string   `yaml:"jwks_file"`
		// JWKSURL is fetched every JWKSRefresh (default 15m) and on an
		// unknown kid, at most once per JWKSMinRefresh (default 1m).
		JWKSURL         string        `yaml:"jwks_url"`
		JWKSRefresh     time.Duration `yaml:"jwks_refresh"`
		JWKSMinRefresh  time.Duration `yaml:"jwks_min_refresh"`
		Types           []string      `yaml:"types"` // header typ values, e.g. [at+jwt]; default: absent or JWT
		Issuer          string        `yaml:"issuer"`
		Audience        string        `yaml:"audience"`
		Leeway          time.Duration `yaml:"leeway"`
		RequireIssuedAt bool          `yaml:"require_iat"`
		MaxLifetime     time.Duration `yaml:"max_lifetime"` // default 0: no limit
		// Anonymous allows connections without a token. Default: off,
		// except that demo turns it on when the file does not say.
		Anonymous *bool `yaml:"anonymous"`
	} `yaml:"auth"`

	Limits struct {
		MaxConnections        int     `yaml:"max_connections"`
		MaxConnectionsPerIP   int     `yaml:"max_connections_per_ip"`
		MaxConnectionsPerUser int     `yaml:"max_connections_per_user"`
		HandshakeRate         float64 `yaml:"handshake_rate"`
		HandshakeBurst        int     `yaml:"handshake_burst"`
		// FallbackSendRate/Burst: POSTs to /fallback/send per client
		// address (see gateway.Limits). Default: 200/s, burst 400;
		// negative: no limit.
		FallbackSendRate  float64 `yaml:"fallback_send_rate"`
		FallbackSendBurst int     `yaml:"fallback_send_burst"`
		ClientIPHeader    string  `yaml:"client_ip_header"`
		// TrustedProxies are the CIDRs (or addresses) of the proxies
		// whose client_ip_header is believed. Default: none.
		TrustedProxies []string `yaml:"trusted_proxies"`
		// The HTTP front (see gateway.Limits): header bytes (16 KiB),
		// the read deadline of a request that is not an upgrade (15s),
		// the keep-alive idle time (60s), and the connections not
		// upgraded per peer address (256) and in all (10,000).
		MaxHeaderBytes             int           `yaml:"max_header_bytes"`
		ReadTimeout                time.Duration `yaml:"read_timeout"`
		IdleTimeout                time.Duration `yaml:"idle_timeout"`
		MaxPendingConnectionsPerIP int           `yaml:"max_pending_connections_per_ip"`
		MaxPendingConnections      int           `yaml:"max_pending_connections"`
		MaxMessageSize             int64         `yaml:"max_message_size"`
		MessageRate                float64       `yaml:"message_rate"`
		MessageBurst               int           `yaml:"message_burst"`
		FrameRate                  float64       `yaml:"frame_rate"`
		FrameBurst                 int           `yaml:"frame_burst"`
		ByteRate                   float64       `yaml:"byte_rate"`
		ByteBurst                  int           `yaml:"byte_burst"`
		MaxChannels                int           `yaml:"max_channels"`
		MaxQueueBytes              int           `yaml:"max_queue_bytes"`
		ConnectTimeout             time.Duration `yaml:"connect_timeout"`
		WriteTimeout               time.Duration `yaml:"write_timeout"`
	} `yaml:"limits"`

	// Broker is where the nodes of a cluster share publications, history
	// and presence. Default: the in-memory broker, one node.
	Broker brokerConfig `yaml:"broker"`

	// PresenceTTL is how long a node's presence entries live at the broker
	// unless refreshed (default 60s); PresenceInterval how often join and
	// leave events, or counts, are pushed (default 200ms).
	PresenceTTL      time.Duration `yaml:"presence_ttl"`
	PresenceInterval time.Duration `yaml:"presence_interval"`

	Namespaces []namespaceConfig `yaml:"namespaces"`

	// Proxy asks the app's backend over HTTP who a client is and what it
	// may do (docs/proxy.md). Default: nothing is asked.
	Proxy backendProxyConfig `yaml:"proxy"`

	// Pusher serves the Pusher Channels protocol (version 7) to these
	// apps at /app/{key}, and their HTTP API at /apps/{id}/events
	// (docs/pusher.md). Default: none.
	Pusher struct {
		Apps []pusherAppConfig `yaml:"apps"`
	} `yaml:"pusher"`
}

// backendProxyConfig is the app's backend; see gateway.ProxyConfig.
type backendProxyConfig struct {
	// Endpoints are the backend's URLs, each with a name that connect,
	// refresh, rpc and the namespaces' subscribe_proxy, publish_proxy
	// and rpc_proxy refer to.
	Endpoints []backendEndpointConfig `yaml:"endpoints"`
	// ConnectURL is a shortcut: an endpoint named "connect" with this URL,
	// asked at connect (--connect-proxy). Default: none.
	ConnectURL string `yaml:"connect_url"`
	// Connect, Refresh and RPC name the endpoints asked at connect, when
	// the connect proxy's expire_at passes, and for rpc methods whose
	// namespace names none. Default: none.
	Connect string `yaml:"connect"`
	Refresh string `yaml:"refresh"`
	RPC     string `yaml:"rpc"`
	// SkipConnectWithToken verifies a connect with a token as a JWT
	// (auth) without asking the connect proxy. Default: false.
	SkipConnectWithToken bool `yaml:"skip_connect_with_token"`
	// Secret signs the requests of the endpoints that set none of their
	// own (X-Duplex-Signature). Default: unsigned.
	Secret string `yaml:"secret"`
}

// backendEndpointConfig is one endpoint; see proxy.Options.
type backendEndpointConfig struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Timeout bounds a request, retries included (default 1s);
	// MaxInFlight caps the requests under way at once (default 100).
	Timeout     time.Duration `yaml:"timeout"`
	MaxInFlight int           `yaml:"max_in_flight"`
	// Headers are the client's request headers passed on (default
	// Cookie, Authorization, Origin, User-Agent, Accept-Language);
	// StaticHeaders are set on every request (an API key).
	Headers       []string          `yaml:"headers"`
	StaticHeaders map[string]string `yaml:"static_headers"`
	// Secret signs the requests (X-Duplex-Signature). Default: proxy.secret.
	Secret string `yaml:"secret"`
}

// gatewayProxy turns the proxy section into the gateway's.
func (c *backendProxyConfig) gatewayProxy() (gateway.ProxyConfig, error) {
	g := gateway.ProxyConfig{
		Connect: c.Connect, Refresh: c.Refresh, RPC: c.RPC,
		SkipConnectWithToken: c.SkipConnectWithToken,
	}
	endpoints := c.Endpoints
	if c.ConnectURL != "" {
		if g.Connect != "" && g.Connect != "connect" {
			return g, fmt.Errorf("proxy: connect_url (--connect-proxy) and connect %q both name the connect proxy", g.Connect)
		}
		endpoints = append(endpoints, backendEndpointConfig{Name: "connect", URL: c.ConnectURL})
		g.Connect = "connect"
	}
	if len(endpoints) > 0 {
		g.Endpoints = make(map[string]backendproxy.Options, len(endpoints))
	}
	for _, e := range endpoints {
		if e.Name == "" {
			return g, fmt.Errorf("proxy: the endpoint %q has no name", e.URL)
		}
		if _, dup := g.Endpoints[e.Name]; dup {
			return g, fmt.Errorf("proxy: two endpoints are named %q", e.Name)
		}
		secret := e.Secret
		if secret == "" {
			secret = c.Secret
		}
		g.Endpoints[e.Name] = backendproxy.Options{
			URL: e.URL, Timeout: e.Timeout, MaxInFlight: e.MaxInFlight,
			Headers: e.Headers, StaticHeaders: e.StaticHeaders, Secret: secret,
		}
	}
	return g, nil
}

// pusherAppConfig is one Pusher app; see gateway.PusherApp.
type pusherAppConfig struct {
	ID     string `yaml:"id"`
	Key    string `yaml:"key"`
	Secret string `yaml:"secret"`
	// ClientEvents allows client- events on private and presence
	// channels (default off); ClientEventRate caps them per connection
	// and second (default 10); MaxPresenceMembers caps the users of a
	// presence channel (default 1000).
	ClientEvents       bool    `yaml:"client_events"`
	ClientEventRate    float64 `yaml:"client_event_rate"`
	MaxPresenceMembers int     `yaml:"max_presence_members"`
	// Webhooks receive the app's webhooks: url, and event_types (default
	// all); see gateway.PusherWebhook.
	// MaxConnections caps the app's connections on every node (default
	// 0: none); Origins replaces origins for the app's clients; Disabled
	// refuses its connections and API requests.
	MaxConnections int      `yaml:"max_connections"`
	Origins        []string `yaml:"origins"`
	Disabled       bool     `yaml:"disabled"`
	// HistorySize and HistoryTTL keep events for the recovery
	// extension (default 0: none).
	HistorySize int           `yaml:"history_size"`
	HistoryTTL  time.Duration `yaml:"history_ttl"`
	Webhooks    []struct {
		URL        string   `yaml:"url"`
		EventTypes []string `yaml:"event_types"`
	} `yaml:"webhooks"`
}

// parsePusherApp reads the value of --pusher-app, ID:KEY:SECRET.
func parsePusherApp(s string) (pusherAppConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return pusherAppConfig{}, fmt.Errorf("--pusher-app %q: want ID:KEY:SECRET, none of them empty", s)
	}
	return pusherAppConfig{ID: parts[0], Key: parts[1], Secret: parts[2]}, nil
}

type namespaceConfig struct {
	Name         string        `yaml:"name"`
	Anonymous    bool          `yaml:"anonymous"`
	Subscribe    string        `yaml:"subscribe"` // authenticated, token, server
	Publish      string        `yaml:"publish"`
	HistorySize  int           `yaml:"history_size"`
	HistoryTTL   time.Duration `yaml:"history_ttl"`
	Presence     bool          `yaml:"presence"`
	JoinLeave    bool          `yaml:"join_leave"`
	SlowConsumer string        `yaml:"slow_consumer"` // disconnect, drop_oldest, latest
	// PresenceCountAbove: above this many members, presence_count pushes
	// replace join and leave events (default 1000; negative: never).
	PresenceCountAbove int `yaml:"presence_count_above"`
	// SubscribeProxy, PublishProxy and RPCProxy name the proxy endpoints
	// that decide subscribe and publish, and answer the rpc methods
	// "NAME:…", in this namespace. Default: none, the permissions decide.
	SubscribeProxy string `yaml:"subscribe_proxy"`
	PublishProxy   string `yaml:"publish_proxy"`
	// SubRefreshProxy is asked when a subscription's expire_at (from the
	// subscribe proxy) passes; without it the subscription ends then.
	SubRefreshProxy string `yaml:"sub_refresh_proxy"`
	RPCProxy        string `yaml:"rpc_proxy"`
}

// demoNamespace is the namespace of the demo pages: anyone on the machine
// may subscribe and publish, with history, presence and join/leave.
var demoNamespace = namespaceConfig{
	Name: "demo", Anonymous: true, Subscribe: "authenticated", Publish: "authenticated",
	HistorySize: 100, HistoryTTL: 10 * time.Minute, Presence: true, JoinLeave: true,
	SlowConsumer: "drop_oldest",
}

// loadServeConfig reads the file at path ("" for none) and then the
// environment.
func loadServeConfig(path string, environ []string) (*serveConfig, error) {
	cfg := &serveConfig{Listen: "127.0.0.1:8080"}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true) // a misspelt key is an error, not a silent default
		// An empty file decodes to io.EOF and leaves the defaults.
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		demo := true
		cfg.Demo = &demo
	}
	if err := applyEnv(reflect.ValueOf(cfg).Elem(), "DUPLEX", envMap(environ)); err != nil {
		return nil, err
	}
	return cfg, nil
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "DUPLEX_") {
			m[k] = v
		}
	}
	return m
}

// applyEnv sets the scalar fields of v from env, named by prefix and the
// fields' YAML paths.
func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		s, ok := env[name]
		if !ok {
			continue
		}
		if err := setScalar(fv, s); err != nil {
			return fmt.Errorf("environment %s=%q: %w", name, s, err)
		}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

func setScalar(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(&b))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return errors.New("not settable from the environment")
		}
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return errors.New("not settable from the environment")
	}
	return nil
}

func (c *serveConfig) demo() bool { return c.Demo != nil && *c.Demo }

// gatewayConfig turns the file's configuration into the gateway's.
func (c *serveConfig) gatewayConfig() (gateway.Config, error) {
	g := gateway.Config{
		MetricsToken:   c.MetricsToken,
		OriginPatterns: c.Origins,
		PingInterval:   c.PingInterval,
		PongTimeout:    c.PongTimeout,
		DrainWindow:    c.DrainWindow,
		APIKey:         c.APIKey,
		Version:        version(),

		PresenceTTL:      c.PresenceTTL,
		PresenceInterval: c.PresenceInterval,
	}
	switch c.Compression {
	case "", "off":
	case "no_context":
		g.Compression.Mode = websocket.CompressionNoContextTakeover
	case "context":
		g.Compression.Mode = websocket.CompressionContextTakeover
	default:
		return g, fmt.Errorf("compression must be off, no_context or context, not %q", c.Compression)
	}
	a := &c.Auth
	g.Auth = gateway.Auth{
		Algorithm: a.Algorithm, Algorithms: a.Algorithms, Issuer: a.Issuer, Audience: a.Audience,
		JWKSURL: a.JWKSURL, JWKSRefreshInterval: a.JWKSRefresh, JWKSMinRefreshInterval: a.JWKSMinRefresh,
		Types: a.Types, Leeway: a.Leeway, RequireIssuedAt: a.RequireIssuedAt, MaxLifetime: a.MaxLifetime,
		AllowAnonymous: a.Anonymous != nil && *a.Anonymous,
	}
	if a.Secret != "" {
		g.Auth.Secret = []byte(a.Secret)
	}
	for _, file := range []struct {
		path string
		dst  *[]byte
	}{{a.SecretFile, &g.Auth.Secret}, {a.PublicKeyFile, &g.Auth.PublicKeyPEM}, {a.JWKSFile, &g.Auth.JWKS}} {
		if file.path == "" {
			continue
		}
		data, err := os.ReadFile(file.path)
		if err != nil {
			return g, fmt.Errorf("auth: %w", err)
		}
		if file.dst == &g.Auth.Secret {
			data = bytes.TrimRight(data, "\r\n")
		}
		*file.dst = data
	}
	l := &c.Limits
	g.Limits = gateway.Limits{
		MaxConnections: l.MaxConnections, MaxConnectionsPerIP: l.MaxConnectionsPerIP,
		MaxConnectionsPerUser: l.MaxConnectionsPerUser, HandshakeRate: l.HandshakeRate,
		HandshakeBurst: l.HandshakeBurst, ClientIPHeader: l.ClientIPHeader,
		FallbackSendRate: l.FallbackSendRate, FallbackSendBurst: l.FallbackSendBurst,
		MaxMessageSize: l.MaxMessageSize, MessageRate: l.MessageRate, MessageBurst: l.MessageBurst,
		FrameRate: l.FrameRate, FrameBurst: l.FrameBurst, ByteRate: l.ByteRate, ByteBurst: l.ByteBurst,
		MaxChannels: l.MaxChannels, MaxQueueBytes: l.MaxQueueBytes,
		ConnectTimeout: l.ConnectTimeout, WriteTimeout: l.WriteTimeout,
		MaxHeaderBytes: l.MaxHeaderBytes, ReadTimeout: l.ReadTimeout, IdleTimeout: l.IdleTimeout,
		MaxPendingConnectionsPerIP: l.MaxPendingConnectionsPerIP, MaxPendingConnections: l.MaxPendingConnections,
	}
	applyProtectiveDefaults(&g.Limits)
	for _, p := range l.TrustedProxies {
		prefix, err := parsePrefix(p)
		if err != nil {
			return g, fmt.Errorf("limits.trusted_proxies: %w", err)
		}
		g.Limits.TrustedProxies = append(g.Limits.TrustedProxies, prefix)
	}
	if l.ClientIPHeader != "" && len(l.TrustedProxies) == 0 {
		return g, errors.New("limits.client_ip_header needs limits.trusted_proxies: the header is believed only from the proxies listed there")
	}
	namespaces := c.Namespaces
	if c.demo() && !hasNamespace(namespaces, demoNamespace.Name) {
		namespaces = append(namespaces, demoNamespace)
		// The demo pages connect without a token, unless the file says
		// anonymous connections are off: demo must not open what auth
		// closes.
		if a.Anonymous == nil {
			g.Auth.AllowAnonymous = true
		}
	}
	for _, n := range namespaces {
		g.Namespaces = append(g.Namespaces, gateway.Namespace{
			Name: n.Name, Anonymous: n.Anonymous,
			Subscribe: gateway.Permission(n.Subscribe), Publish: gateway.Permission(n.Publish),
			HistorySize: n.HistorySize, HistoryTTL: n.HistoryTTL,
			Presence: n.Presence, JoinLeave: n.JoinLeave, PresenceCountAbove: n.PresenceCountAbove,
			SlowConsumer:   gateway.SlowConsumerPolicy(n.SlowConsumer),
			SubscribeProxy: n.SubscribeProxy, PublishProxy: n.PublishProxy, RPCProxy: n.RPCProxy,
			SubRefreshProxy: n.SubRefreshProxy,
		})
	}
	var err error
	if g.Proxy, err = c.Proxy.gatewayProxy(); err != nil {
		return g, err
	}
	for _, a := range c.Pusher.Apps {
		app := gateway.PusherApp{
			ID: a.ID, Key: a.Key, Secret: a.Secret,
			ClientEvents: a.ClientEvents, ClientEventRate: a.ClientEventRate, MaxPresenceMembers: a.MaxPresenceMembers,
			MaxConnections: a.MaxConnections, Origins: a.Origins, Disabled: a.Disabled,
			HistorySize: a.HistorySize, HistoryTTL: a.HistoryTTL,
		}
		for _, h := range a.Webhooks {
			app.Webhooks = append(app.Webhooks, gateway.PusherWebhook{URL: h.URL, Events: h.EventTypes})
		}
		g.Pusher.Apps = append(g.Pusher.Apps, app)
	}
	return g, nil
}

func hasNamespace(list []namespaceConfig, name string) bool {
	for _, n := range list {
		if n.Name == name {
			return true
		}
	}
	return false
}

// Protective defaults of duplex serve, where gateway.Limits (a library's
// zero value) has none: one address may hold many connections (a NAT, an
// office) but not the whole server, and may reconnect all of them within
// seconds but not flood handshakes. A negative value in the configuration
// turns a limit off; tests and benchmarks that open thousands of
// connections from one loopback address say so in their configuration.
const (
	defaultMaxConnectionsPerIP = 1000
	defaultHandshakeRate       = 100 // per second and address
	defaultHandshakeBurst      = 200
)

// applyProtectiveDefaults fills the limits the file left at zero.
func applyProtectiveDefaults(l *gateway.Limits) {
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = defaultMaxConnectionsPerIP
	}
	if l.HandshakeRate == 0 {
		l.HandshakeRate = defaultHandshakeRate
		if l.HandshakeBurst == 0 {
			l.HandshakeBurst = defaultHandshakeBurst
		}
	}
}

// parsePrefix reads a CIDR, or a single address as a prefix of its full
// length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
