package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// benchFlags are the flags of duplex bench.
type benchFlags struct {
	dial        dialFlags
	connections int
	connectRate float64
	size        int
	text        bool
	messageRate float64
	messages    int
	duration    time.Duration
	localAddrs  int
	http2Conns  int
	progress    time.Duration
	json        bool

	// --mode subscribe.
	mode            string
	channels        []string
	channelPrefix   string
	channelsPerConn int
	rate            float64
	apiURL          string
	apiKey          string
	token           string
}

// maxBenchSize bounds --size: the default read limit of duplex echo.
const maxBenchSize = DefaultEchoReadLimit

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench URL",
		Short: "Load-test a WebSocket echo server, or the fan-out of a Duplex gateway",
		Long: `Open many connections to a WebSocket server that echoes, such as duplex
echo, send messages on each and measure how long their echoes take; or,
with --mode subscribe, subscribe them to channels of a Duplex gateway,
publish through its backend API and measure how long publications take
to reach every subscriber.

Connections open at --connect-rate. Each then sends messages of --size
bytes: by default the next as soon as the echo of the last has come, or
with --message-rate at that rate whether echoes have come or not (up to
1024 awaiting their echo; past that the sender waits). Each echo is
checked against what was sent; a connection ends at its first error,
which counts once. The bench ends when every connection has sent
--messages, or after --duration (connecting included): echoes still
awaited then get 2 more seconds, and every connection is closed with
1000. SIGINT ends it at once, with a report all the same.

--mode subscribe: each connection dials the gateway (at /ws when the URL
has no path), connects (with --token, else anonymously) and subscribes,
all with one message: by default every connection to the one channel
demo:bench, or with --channel to the channels given; with --channel-prefix
P (or --channels-per-conn N alone, with P demo:bench-) each connection to
N channels of its own (default 1), connection i to P<i·N> … P<i·N+N-1>:
--channel-prefix demo:c -c 10000 is 10,000 channels of 1 subscriber.
Once every connection has subscribed, the bench publishes --rate times
a second on each channel, for --duration (connecting not included) or
--messages times, through the API at --api-url (default: the gateway's
own address over http) with the key of --api-key: one channel with
/api/publish, several with /api/broadcast, 1000 channels a request, up to
16 requests at once. A publication is {"t":<send time, Unix ns>,"p":"x…"}
of --size bytes (at least 32). Each delivery counts with its latency,
from just before its API request to its arrival. Every subscriber should
receive every publication of its channels: the report gives the
deliveries expected and received and those lost (waiting up to 2 s after
the last publication), and the latency of deliveries. The gateway's
default limits allow 128 channels and 100 commands a second per
connection.

A progress line goes to stderr every --progress. At the end a report
goes to stdout: connections, messages sent and echoed (or publications
and deliveries), throughput, the latency of echoes or deliveries (p50,
p90, p99, p99.9, max and a histogram, within 1%), and errors by kind;
with --json, the same as a JSON object for scripts. The exit status is
0 when there was no error (and no delivery was lost), 1 otherwise, 2 for
a wrong command line.

A client has about 28,000 ports to connect from to one server address.
--local-addrs N spreads the connections over the source addresses
127.0.0.1 to 127.0.0.N, each with its own ports, for servers on a
loopback address.

--http2 opens each WebSocket as a stream of an HTTP/2 connection (RFC
8441 extended CONNECT; wss:// only, see duplex connect --help): connection
i is a stream of TCP connection i/--http2-streams (default 100 streams
each), so -c 1000 is 1,000 WebSockets on 10 TCP and TLS connections,
more only when the server allows fewer streams on one. The report says
how many streams ran on how many TCP connections, and, with
--http2=fallback, how many connections fell back to HTTP/1.1.`,
		Example: `  duplex bench ws://127.0.0.1:9001
  duplex bench --connections 1000 --connect-rate 500 --message-rate 10 --duration 30s ws://127.0.0.1:9001
  duplex bench --connections 60000 --local-addrs 4 --size 16 --duration 1m ws://127.0.0.1:9001
  duplex bench --http2 --http2-streams 250 -c 1000 --ca ca.pem wss://127.0.0.1:9443
  duplex bench --connections 4 --messages 1000 --json ws://127.0.0.1:9001 | jq .latency_ns.p99
  duplex bench --mode subscribe -c 1000 --channel demo:bench --rate 10 --duration 30s ws://127.0.0.1:8080
  duplex bench --mode subscribe -c 10000 --channel-prefix demo:c --rate 1 --local-addrs 2 ws://127.0.0.1:8080
  DUPLEX_API_KEY=secret duplex bench --mode subscribe -c 100 --json wss://gw.example.com | jq .deliveries`,
		Args: connectArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.mode, "mode", "echo", "`mode` echo, or subscribe for a Duplex gateway (see above)")
	fl.IntVarP(&f.connections, "connections", "c", 10, fmt.Sprintf("open `N` connections, at most %d", maxBenchConnections))
	fl.Float64Var(&f.connectRate, "connect-rate", 100,
		"open connections at this `rate` per second; 0 for all at once\n(--ramp-rate is the same)")
	fl.IntVar(&f.size, "size", 64, "message size in `bytes`; in subscribe mode, of the publications'\ndata")
	fl.BoolVar(&f.text, "text", false, "send text messages instead of binary")
	fl.Float64Var(&f.messageRate, "message-rate", 0,
		"send at this `rate` per second on each connection; 0 sends each message\non the echo of the last")
	fl.IntVar(&f.messages, "messages", 0,
		"send `N` messages on each connection (subscribe mode: publish N times on\neach channel); 0 for as many as --duration allows")
	fl.DurationVarP(&f.duration, "duration", "d", 10*time.Second, "how long the bench may run, at most 24h")
	fl.IntVar(&f.localAddrs, "local-addrs", 0,
		"connect from the source addresses 127.0.0.1 to 127.0.0.`N` in turn\n(loopback servers only); 0 lets the system choose")
	fl.IntVar(&f.http2Conns, "http2-streams", DefaultBenchHTTP2Streams,
		"with --http2, put up to `N` WebSockets on one TCP connection, as streams:\nconnection i on TCP connection i/N")
	fl.DurationVar(&f.progress, "progress", time.Second, "write a progress line to stderr this often; 0 for never")
	fl.BoolVar(&f.json, "json", false, "write the report as JSON")
	fl.StringArrayVar(&f.channels, "channel", nil,
		"subscribe mode: every connection subscribes to this `channel`;\nrepeatable (default demo:bench)")
	fl.StringVar(&f.channelPrefix, "channel-prefix", "",
		"subscribe mode: each connection subscribes to channels of its own,\nnamed `P` and a number")
	fl.IntVar(&f.channelsPerConn, "channels-per-conn", 1, "subscribe mode: each connection has `N` channels of its own")
	fl.Float64Var(&f.rate, "rate", 10, "subscribe mode: publish at this `rate` per second on\neach channel")
	fl.StringVar(&f.apiURL, "api-url", "", "subscribe mode: the gateway's API at `URL`/api/ (default: the gateway's\naddress over http:// or https://)")
	fl.StringVar(&f.apiKey, "api-key", "", "subscribe mode: the API `key` (default: the environment variable\nDUPLEX_API_KEY)")
	fl.StringVar(&f.token, "token", "", "subscribe mode: connect with this connection `token` (a JWT)")
	f.dial.register(cmd)
	fl.Float64Var(&f.connectRate, "ramp-rate", 100, "the same as --connect-rate")
	fl.MarkHidden("ramp-rate")
	return cmd
}

// config checks the flags and returns the bench they describe; changed
// says which flags were given.
func (f *benchFlags) config(rawURL string, changed func(string) bool) (*benchConfig, error) {
	d, err := f.dial.dialer(rawURL)
	if err != nil {
		return nil, err
	}
	// The flags of the other mode.
	var otherMode string
	var otherFlags []string
	switch f.mode {
	case "echo":
		otherMode = "subscribe"
		otherFlags = []string{"channel", "channel-prefix", "channels-per-conn", "rate", "api-url", "api-key", "token"}
	case "subscribe":
		otherMode = "echo"
		otherFlags = []string{"text", "message-rate"}
	default:
		return nil, usageError{fmt.Errorf("--mode must be echo or subscribe, not %q", f.mode)}
	}
	for _, name := range otherFlags {
		if changed(name) {
			return nil, usageError{fmt.Errorf("--%s is for --mode %s", name, otherMode)}
		}
	}
	maxSize := maxBenchSize
	if f.mode == "subscribe" {
		maxSize = maxBenchPublishSize
	}
	switch {
	case f.connections < 1 || f.connections > maxBenchConnections:
		return nil, usageError{fmt.Errorf("--connections must be from 1 to %d, not %d", maxBenchConnections, f.connections)}
	case f.connectRate < 0:
		return nil, usageError{fmt.Errorf("--connect-rate must be 0 or more, not %v", f.connectRate)}
	case f.size < 0 || f.size > maxSize:
		return nil, usageError{fmt.Errorf("--size must be from 0 to %d bytes, not %d", maxSize, f.size)}
	case f.messageRate < 0:
		return nil, usageError{fmt.Errorf("--message-rate must be 0 or more, not %v", f.messageRate)}
	case f.messages < 0:
		return nil, usageError{fmt.Errorf("--messages must be 0 or more, not %d", f.messages)}
	case f.duration <= 0 || f.duration > maxBenchDuration:
		return nil, usageError{fmt.Errorf("--duration must be positive and at most %v, not %v", maxBenchDuration, f.duration)}
	case f.localAddrs < 0 || f.localAddrs > maxBenchLocalAddrs:
		return nil, usageError{fmt.Errorf("--local-addrs must be from 0 to %d, not %d", maxBenchLocalAddrs, f.localAddrs)}
	case f.localAddrs > 0 && !loopbackHost(d.url.Hostname()):
		return nil, usageError{fmt.Errorf("--local-addrs needs a server on a loopback address, not %q", d.url.Hostname())}
	case f.progress < 0:
		return nil, usageError{fmt.Errorf("--progress must be 0 or more, not %v", f.progress)}
	case f.http2Conns < 1:
		return nil, usageError{fmt.Errorf("--http2-streams must be 1 or more, not %d", f.http2Conns)}
	case changed("http2-streams") && d.http2 == http2Off:
		return nil, usageError{errors.New("--http2-streams needs --http2")}
	}
	cfg := &benchConfig{
		dialer:      d,
		connections: f.connections,
		connectRate: f.connectRate,
		size:        f.size,
		text:        f.text,
		messageRate: f.messageRate,
		messages:    f.messages,
		duration:    f.duration,
		localAddrs:  f.localAddrs,
		http2Conns:  f.http2Conns,
	}
	if f.mode == "subscribe" {
		gatewayPath(d.url)
		if !slices.Contains(d.subprotocols, gatewaySubprotocol) {
			d.subprotocols = append(slices.Clone(d.subprotocols), gatewaySubprotocol)
		}
		if cfg.sub, err = f.subscribeConfig(d, changed); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// subscribeConfig checks the flags of --mode subscribe and returns what
// they describe.
func (f *benchFlags) subscribeConfig(d *dialer, changed func(string) bool) (*subscribeConfig, error) {
	sc := &subscribeConfig{channels: f.channels, perConn: f.channelsPerConn, rate: f.rate, token: f.token}
	own := changed("channel-prefix") || changed("channels-per-conn")
	switch {
	case own && len(f.channels) > 0:
		return nil, usageError{fmt.Errorf("--channel and --channel-prefix or --channels-per-conn exclude each other")}
	case f.rate <= 0:
		return nil, usageError{fmt.Errorf("--rate must be positive, not %v", f.rate)}
	case f.channelsPerConn < 1 || f.channelsPerConn > maxBenchChannelsPerConn:
		return nil, usageError{fmt.Errorf("--channels-per-conn must be from 1 to %d, not %d", maxBenchChannelsPerConn, f.channelsPerConn)}
	case f.connections*f.channelsPerConn > maxBenchChannels:
		return nil, usageError{fmt.Errorf("--connections times --channels-per-conn must be at most %d, not %d",
			maxBenchChannels, f.connections*f.channelsPerConn)}
	case changed("channel-prefix") && f.channelPrefix == "":
		return nil, usageError{fmt.Errorf("--channel-prefix must not be empty")}
	}
	for _, ch := range f.channels {
		if ch == "" {
			return nil, usageError{fmt.Errorf("--channel must not be empty")}
		}
	}
	switch {
	case own:
		sc.prefix = f.channelPrefix
		if sc.prefix == "" {
			sc.prefix = benchDefaultPrefix
		}
	case len(f.channels) == 0:
		sc.channels = []string{benchDefaultChannel}
	}
	apiURL := f.apiURL
	if apiURL == "" {
		apiURL = d.url.String()
	}
	base, err := apiBaseURL(apiURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("--api-url: %v", err)}
	}
	key := f.apiKey
	if !changed("api-key") {
		key = os.Getenv(apiKeyEnv)
	}
	sc.api = newAPIClient(base, key, d.tls, benchPublishConcurrency, defaultAPITimeout)
	return sc, nil
}

func runBench(cmd *cobra.Command, rawURL string, f *benchFlags) error {
	cfg, err := f.config(rawURL, cmd.Flags().Changed)
	if err != nil {
		return err
	}
	if cfg.sub != nil {
		defer cfg.sub.api.close()
	}
	b := newBench(cfg)
	stderr := cmd.ErrOrStderr()
	stopProgress := b.startProgress(stderr, f.progress)
	var elapsed time.Duration
	if cfg.sub != nil {
		elapsed = b.runSubscribe(cmd.Context())
	} else {
		elapsed = b.run(cmd.Context())
	}
	stopProgress()
	if b.h2 != nil {
		b.h2.close() // every WebSocket has closed
	}

	r := b.report(elapsed)
	if f.json {
		err = r.writeJSON(cmd.OutOrStdout())
	} else {
		err = r.writeText(cmd.OutOrStdout())
	}
	if err != nil {
		return err
	}
	if n := b.errorCount(); n > 0 {
		return fmt.Errorf("%d errors", n)
	}
	if b.opened.Load() == 0 {
		return errors.New("no connection opened")
	}
	if b.sub != nil {
		if b.sub.subscribed.Load() == 0 {
			return errors.New("no connection subscribed")
		}
		if lost := r.Deliveries.Lost; lost > 0 {
			return fmt.Errorf("%d deliveries lost", lost)
		}
	}
	return nil
}

// startProgress writes a progress line to w every interval until the
// returned stop is called. On a terminal the line rewrites itself.
func (b *bench) startProgress(w io.Writer, interval time.Duration) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	_, onTerminal := terminalFile(w)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		var last int64
		lastAt := time.Now()
		for {
			select {
			case <-ctx.Done():
				if onTerminal {
					io.WriteString(w, "\n")
				}
				return
			case now := <-t.C:
				received := b.received.Load()
				rate := float64(received-last) / now.Sub(lastAt).Seconds()
				last, lastAt = received, now
				line := fmt.Sprintf("%6.1fs  connections %d open, %d opened, %d failed  messages %.0f/s, %d echoed  errors %d",
					now.Sub(b.start).Seconds(), b.open.Load(), b.opened.Load(), b.failed.Load(), rate, received, b.errorCount())
				if b.sub != nil {
					line = fmt.Sprintf("%6.1fs  connections %d open, %d opened, %d failed, %d subscribed  "+
						"published %d  deliveries %.0f/s, %d received  errors %d",
						now.Sub(b.start).Seconds(), b.open.Load(), b.opened.Load(), b.failed.Load(), b.sub.subscribed.Load(),
						b.sub.accepted.Load(), rate, received, b.errorCount())
				}
				if onTerminal {
					io.WriteString(w, "\r\x1b[K"+line)
				} else {
					io.WriteString(w, line+"\n")
				}
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
