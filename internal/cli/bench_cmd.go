package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	progress    time.Duration
	json        bool
}

// maxBenchSize bounds --size: the default read limit of duplex echo.
const maxBenchSize = DefaultEchoReadLimit

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench URL",
		Short: "Load-test a WebSocket echo server",
		Long: `Open many connections to a WebSocket server that echoes, such as duplex
echo, send messages on each and measure how long their echoes take.

Connections open at --connect-rate. Each then sends messages of --size
bytes: by default the next as soon as the echo of the last has come, or
with --message-rate at that rate whether echoes have come or not (up to
1024 awaiting their echo; past that the sender waits). Each echo is
checked against what was sent; a connection ends at its first error,
which counts once. The bench ends when every connection has sent
--messages, or after --duration (connecting included): echoes still
awaited then get 2 more seconds, and every connection is closed with
1000. SIGINT ends it at once, with a report all the same.

A progress line goes to stderr every --progress. At the end a report
goes to stdout: connections, messages sent and echoed, throughput, the
latency of echoes (p50, p90, p99, p99.9, max and a histogram, within 1%),
and errors by kind; with --json, the same as a JSON object for scripts.
The exit status is 0 when there was no error, 1 otherwise, 2 for a wrong
command line.

A client has about 28,000 ports to connect from to one server address.
--local-addrs N spreads the connections over the source addresses
127.0.0.1 to 127.0.0.N, each with its own ports, for servers on a
loopback address.`,
		Example: `  duplex bench ws://127.0.0.1:9001
  duplex bench --connections 1000 --connect-rate 500 --message-rate 10 --duration 30s ws://127.0.0.1:9001
  duplex bench --connections 60000 --local-addrs 4 --size 16 --duration 1m ws://127.0.0.1:9001
  duplex bench --connections 4 --messages 1000 --json ws://127.0.0.1:9001 | jq .latency_ns.p99`,
		Args: connectArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.IntVarP(&f.connections, "connections", "c", 10, fmt.Sprintf("open `N` connections, at most %d", maxBenchConnections))
	fl.Float64Var(&f.connectRate, "connect-rate", 100, "open connections at this `rate` per second; 0 for all at once")
	fl.IntVar(&f.size, "size", 64, "message size in `bytes`")
	fl.BoolVar(&f.text, "text", false, "send text messages instead of binary")
	fl.Float64Var(&f.messageRate, "message-rate", 0,
		"send at this `rate` per second on each connection; 0 sends each message\non the echo of the last")
	fl.IntVar(&f.messages, "messages", 0, "send `N` messages on each connection; 0 for as many as --duration allows")
	fl.DurationVarP(&f.duration, "duration", "d", 10*time.Second, "how long the bench may run, at most 24h")
	fl.IntVar(&f.localAddrs, "local-addrs", 0,
		"connect from the source addresses 127.0.0.1 to 127.0.0.`N` in turn\n(loopback servers only); 0 lets the system choose")
	fl.DurationVar(&f.progress, "progress", time.Second, "write a progress line to stderr this often; 0 for never")
	fl.BoolVar(&f.json, "json", false, "write the report as JSON")
	f.dial.register(cmd)
	return cmd
}

// config checks the flags and returns the bench they describe.
func (f *benchFlags) config(rawURL string) (*benchConfig, error) {
	d, err := f.dial.dialer(rawURL)
	if err != nil {
		return nil, err
	}
	switch {
	case f.connections < 1 || f.connections > maxBenchConnections:
		return nil, usageError{fmt.Errorf("--connections must be from 1 to %d, not %d", maxBenchConnections, f.connections)}
	case f.connectRate < 0:
		return nil, usageError{fmt.Errorf("--connect-rate must be 0 or more, not %v", f.connectRate)}
	case f.size < 0 || f.size > maxBenchSize:
		return nil, usageError{fmt.Errorf("--size must be from 0 to %d bytes, not %d", maxBenchSize, f.size)}
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
	}
	return &benchConfig{
		dialer:      d,
		connections: f.connections,
		connectRate: f.connectRate,
		size:        f.size,
		text:        f.text,
		messageRate: f.messageRate,
		messages:    f.messages,
		duration:    f.duration,
		localAddrs:  f.localAddrs,
	}, nil
}

func runBench(cmd *cobra.Command, rawURL string, f *benchFlags) error {
	cfg, err := f.config(rawURL)
	if err != nil {
		return err
	}
	b := newBench(cfg)
	stderr := cmd.ErrOrStderr()
	stopProgress := b.startProgress(stderr, f.progress)
	elapsed := b.run(cmd.Context())
	stopProgress()

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
