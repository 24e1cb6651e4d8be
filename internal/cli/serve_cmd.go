package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// serveFlags are the flags of duplex serve; set ones win over the
// configuration file and the environment.
type serveFlags struct {
	config       string
	listen       string
	debugListen  string
	apiKey       string
	tlsCert      string
	tlsKey       string
	logLevel     string
	logFormat    string
	drainWindow  time.Duration
	demo         bool
	broker       string
	pusherApps   []string
	connectProxy string
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Duplex gateway: channels, presence, history, auth, limits",
		Long: `Run the Duplex real-time gateway. Clients connect with WebSocket to /ws and
speak the protocol of PROTOCOL.md (the browser client is served at
/duplex.js); backends publish with POST /api/publish. /metrics serves
Prometheus metrics, /healthz liveness and /readyz readiness. With Pusher
apps (--pusher-app, or pusher.apps in the file), Pusher clients such as
pusher-js connect to /app/{key} and Pusher server SDKs call
/apps/{id}/events (docs/pusher.md). With a connect proxy (--connect-proxy,
or proxy: in the file), the app's backend decides who each client is from
its cookies (docs/proxy.md).

Without --config it runs on safe defaults: it listens on 127.0.0.1:8080 only,
with the in-memory broker, anonymous connections, the namespace "demo"
(anyone may subscribe and publish, 100 publications of history, presence),
and the demo pages at /. The backend API then serves only this machine.

Configuration comes from a YAML file (--config), then the environment
(DUPLEX_LISTEN, DUPLEX_API_KEY, DUPLEX_AUTH_SECRET,
DUPLEX_LIMITS_MAX_CONNECTIONS, ...: DUPLEX_ and the YAML path in capitals),
then these flags, each winning over the one before.

On SIGTERM or SIGINT the gateway drains: /readyz turns unready, new
connections are refused, open ones are closed with 1001 spread over the
drain window, and the process exits; a second signal exits at once.`,
		Example: `  duplex serve
  duplex serve --listen 0.0.0.0:8080 --config duplex.yaml
  DUPLEX_API_KEY=secret duplex serve --config duplex.yaml
  duplex serve --listen 127.0.0.1:8081 --broker redis://127.0.0.1:6379/0
  duplex serve --listen 127.0.0.1:8082 --broker nats://127.0.0.1:4222
  duplex serve --pusher-app 1:app-key:app-secret
  duplex serve --connect-proxy http://127.0.0.1:9000/duplex/connect
  curl -H 'Content-Type: application/json' -d '{"channel":"demo:chat","data":{"text":"hi"}}' http://127.0.0.1:8080/api/publish`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&f.config, "config", "c", "", "YAML configuration `file` (see docs/gateway.md)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "TCP `address` to listen on; port 0 picks a free one")
	fl.StringVar(&f.debugListen, "debug-listen", "", "serve Go's profiler (/debug/pprof/) on this private `address`")
	fl.StringVar(&f.apiKey, "api-key", "", "`key` the backend API requires (Authorization: apikey <key>)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS with this certificate chain `file` (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key `file` for --tls-cert (PEM)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fl.DurationVar(&f.drainWindow, "drain-window", 5*time.Second, "time over which shutdown spreads closing connections with 1001")
	fl.BoolVar(&f.demo, "demo", true, "serve the demo pages and feeds (default true without --config)")
	fl.StringVar(&f.broker, "broker", "", "broker `URL` shared by the nodes of a cluster: redis://host:6379/0 or nats://host:4222 (default: in memory, one node)")
	fl.StringVar(&f.connectProxy, "connect-proxy", "", "ask the app's backend at this `URL` who each connecting client is (docs/proxy.md); the demo namespaces then take their user from it (default: none, JWT or anonymous)")
	fl.StringArrayVar(&f.pusherApps, "pusher-app", nil, "serve the Pusher protocol to the app `ID:KEY:SECRET`, added to the file's pusher.apps; repeatable (default: none)")
	return cmd
}

// resolve loads the configuration and lays the flags that were given over
// it.
func (f *serveFlags) resolve(changed func(string) bool) (*serveConfig, error) {
	cfg, err := loadServeConfig(f.config, os.Environ())
	if err != nil {
		return nil, err
	}
	if changed("listen") {
		cfg.Listen = f.listen
	}
	if changed("debug-listen") {
		cfg.DebugListen = f.debugListen
	}
	if changed("api-key") {
		cfg.APIKey = f.apiKey
	}
	if changed("tls-cert") {
		cfg.TLS.Cert = f.tlsCert
	}
	if changed("tls-key") {
		cfg.TLS.Key = f.tlsKey
	}
	if changed("log-level") {
		cfg.Log.Level = f.logLevel
	}
	if changed("log-format") {
		cfg.Log.Format = f.logFormat
	}
	if changed("drain-window") {
		cfg.DrainWindow = f.drainWindow
	}
	if changed("demo") {
		cfg.Demo = &f.demo
	}
	if changed("broker") {
		cfg.Broker.URL, cfg.Broker.Type = f.broker, ""
	}
	if changed("connect-proxy") {
		cfg.Proxy.ConnectURL = f.connectProxy
	}
	for _, v := range f.pusherApps {
		app, err := parsePusherApp(v)
		if err != nil {
			return nil, usageError{err}
		}
		cfg.Pusher.Apps = append(cfg.Pusher.Apps, app)
	}
	if (cfg.TLS.Cert == "") != (cfg.TLS.Key == "") {
		return nil, usageError{fmt.Errorf("TLS needs both a certificate and a key file")}
	}
	return cfg, nil
}
