package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/gateway"
	"github.com/duplexws/duplex/web"
)

func runServe(cmd *cobra.Command, f *serveFlags) error {
	cfg, err := f.resolve(cmd.Flags().Changed)
	if err != nil {
		return err
	}
	logger, err := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return usageError{err}
	}
	gcfg, err := cfg.gatewayConfig()
	if err != nil {
		return usageError{err}
	}
	gcfg.Logger = logger
	if cfg.TLS.Cert != "" {
		// WebSockets over HTTP/2 (RFC 8441) beside HTTP/1.1 on the TLS
		// port: the gateway serves extended CONNECT to /ws (gateway/h2.go).
		if err := enableExtendedConnect(); err != nil {
			logger.Warn("WebSockets over HTTP/2 are off: set GODEBUG=http2xconnect=1", "error", err)
		}
	}
	gcfg.Fallback = webHandler(cfg.demo())
	b, brokerName, err := cfg.Broker.open(logger)
	if err != nil {
		return usageError{err}
	}
	gcfg.Broker = b
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		gw.Shutdown(context.Background())
		return err
	}
	// The gateway's own http.Server: header cap, request deadlines and
	// the caps on connections that have not upgraded.
	httpSrv := gw.HTTPServer()
	httpSrv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	serveErr := make(chan error, 1)
	go func() {
		if cfg.TLS.Cert != "" {
			serveErr <- httpSrv.ServeTLS(ln, cfg.TLS.Cert, cfg.TLS.Key)
		} else {
			serveErr <- httpSrv.Serve(ln)
		}
	}()
	scheme := "http"
	if cfg.TLS.Cert != "" {
		scheme = "https"
	}
	api := "loopback clients only (no API key)"
	if cfg.APIKey != "" {
		api = "API key required"
	}
	warnUnprotected(logger, gcfg.Limits)
	fmt.Fprintf(cmd.OutOrStdout(), "duplex serve listening on %s://%s/\n", scheme, ln.Addr())
	logger.Info("duplex serve listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+"/",
		"demo", cfg.demo(), "api", api, "broker", brokerName, "version", version())

	if cfg.DebugListen != "" {
		dln, err := new(net.ListenConfig).Listen(ctx, "tcp", cfg.DebugListen)
		if err != nil {
			httpSrv.Close()
			gw.Shutdown(context.Background())
			return err
		}
		debugSrv := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		debugDone := make(chan struct{})
		go func() {
			defer close(debugDone)
			debugSrv.Serve(dln)
		}()
		defer func() {
			debugSrv.Close()
			<-debugDone
		}()
		logger.Info("profiler listening", "addr", dln.Addr().String())
	}

	feeds := startDemoFeeds(cfg.demo(), gw, logger)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		feeds.stop()
		gw.Shutdown(context.Background())
		return err
	}
	window := gcfg.DrainWindow
	if window == 0 {
		window = 5 * time.Second
	}
	logger.Info("draining", "window", window.String())
	feeds.stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), window+10*time.Second)
	defer cancel()
	err = gw.Shutdown(shutdownCtx)
	if herr := httpSrv.Shutdown(shutdownCtx); err == nil {
		err = herr
	}
	if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// warnUnprotected warns at start about each per-address protection the
// configuration turned off: one address could then take every connection
// the process can hold, or flood it with handshakes.
func warnUnprotected(logger *slog.Logger, l gateway.Limits) {
	if l.MaxConnectionsPerIP <= 0 {
		logger.Warn("no per-IP connection limit: one address may take every connection (set limits.max_connections_per_ip)")
	}
	if l.HandshakeRate <= 0 {
		logger.Warn("no handshake rate limit: one address may flood handshakes (set limits.handshake_rate)")
	}
	if l.MaxPendingConnectionsPerIP < 0 {
		logger.Warn("no per-IP limit on connections before the upgrade (set limits.max_pending_connections_per_ip)")
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if level != "" {
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log level must be debug, info, warn or error, not %q", level)
		}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format must be text or json, not %q", format)
}

// webHandler serves duplex.js always, and the demo pages when demo is on.
func webHandler(demo bool) http.Handler {
	files := http.FileServerFS(web.Files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/duplex.js" || r.URL.Path == "/duplex.d.ts" {
			w.Header().Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
			return
		}
		if !demo {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path != "/" {
			if _, err := fs.Stat(web.Files, r.URL.Path[1:]); err != nil {
				http.NotFound(w, r)
				return
			}
		}
		files.ServeHTTP(w, r)
	})
}

// demoFeeds publish the demo pages' server-side data: prices for the ticker
// and the gateway's own figures for the dashboard.
type demoFeeds struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func startDemoFeeds(on bool, gw *gateway.Server, logger *slog.Logger) *demoFeeds {
	d := &demoFeeds{done: make(chan struct{})}
	if !on {
		return d
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		prices := map[string]float64{"DPX": 101.25, "WSK": 55.10, "RFC": 64.55}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-d.done:
				return
			case now := <-t.C:
				for sym, p := range prices {
					// A random walk of at most 1% a tick, kept positive.
					p *= 1 + (rand.Float64()-0.5)/50
					prices[sym] = math.Round(max(p, 1)*100) / 100
				}
				ms := now.UnixMilli()
				d.publish(gw, logger, "demo:ticker", map[string]any{"time": ms, "prices": prices})
				st := gw.Stats()
				d.publish(gw, logger, "demo:stats", map[string]any{
					"time": ms, "connections": st.Connections, "subscriptions": st.Subscriptions,
					"messages_in": st.MessagesIn, "messages_out": st.MessagesOut,
				})
			}
		}
	}()
	return d
}

func (d *demoFeeds) publish(gw *gateway.Server, logger *slog.Logger, channel string, v any) {
	data, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := gw.Publish(ctx, channel, data); err != nil {
		logger.Warn("demo feed", "channel", channel, "err", err)
	}
}

func (d *demoFeeds) stop() {
	d.once.Do(func() { close(d.done) })
	d.wg.Wait()
}

// pprofHandler serves Go's profiles, for --debug-listen.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
