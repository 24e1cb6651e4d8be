package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/duplexws/duplex/websocket"
)

// echoFlags are the flags of duplex echo.
type echoFlags struct {
	listen       string
	readLimit    int64
	closeTimeout time.Duration
	frameRate    float64
	frameBurst   int
	controlRate  float64
	controlBurst int
	byteRate     float64
	byteBurst    int
	tls          tlsServerFlags
	acceptFlags
}

// acceptFlags are the handshake and compression flags that the commands
// which accept connections (echo, listen, exec) share.
type acceptFlags struct {
	subprotocols   []string
	origins        []string
	insecureOrigin bool

	compress          string
	serverWindowBits  int
	clientWindowBits  int
	compressLevel     int
	compressThreshold int
}

// compressTuning are the flags that tune --compress, meaningless without it.
var compressTuning = []string{"server-window-bits", "client-window-bits", "compress-level", "compress-threshold"}

func newEchoCommand() *cobra.Command {
	var f echoFlags
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Run a WebSocket echo server",
		Long: `Run a WebSocket server that sends every data message back to its sender
with the same type, text or binary, on every path. Messages are streamed,
never held whole, so their size costs no memory. Each connection is logged
to stderr when it opens and when it closes.

On SIGINT or SIGTERM the server stops accepting, closes every connection
with 1001 (going away) and exits with status 0; a second signal exits at
once.

Browsers may connect only from pages of the server's own host unless
--origin allows more. --insecure-origin lets every web page a user visits
connect with the user's cookies (cross-site WebSocket hijacking): use it
only where nothing is worth protecting.

Each connection may send --control-rate pings, pongs and closes a second
(100 by default, in bursts of as many), --frame-rate frames a second of
any kind (100000), and --byte-rate bytes a second (no limit by default);
one over any is closed with 1008. A ping costs the server a pong, so
without the limit a client pinging as fast as it can takes a core and the
latency of everyone else; a client sending data as fast as it can is
echoed.

--compress agrees on permessage-deflate (RFC 7692) with clients that offer
it. "no-context" compresses each message on its own and keeps nothing
between messages: about 256 bytes per connection. "context" lets each
message refer back to the ones before it, which compresses streams of
similar messages far better, but keeps windows between messages: 4 KiB
of history to compress (2^--server-window-bits at most) and
2^--client-window-bits bytes to inflate, about 36 KiB per connection with
the defaults.

With --tls-cert and --tls-key, or --tls-self-signed, the server speaks TLS
and takes WebSockets over HTTP/1.1 and over HTTP/2 (RFC 8441 extended
CONNECT) on the one port; browsers use HTTP/2 when a page of the same
origin came over it. Go enables extended CONNECT only when GODEBUG holds
http2xconnect=1 as the process starts, so echo runs itself again with it
added when it is missing (on Unix; elsewhere set it yourself).`,
		Example: `  duplex echo --listen 127.0.0.1:9001
  duplex echo --listen 127.0.0.1:9443 --tls-self-signed
  duplex echo --listen 127.0.0.1:0 --subprotocol chat.v2 --subprotocol chat.v1
  duplex echo --compress context --client-window-bits 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEcho(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.listen, "listen", "127.0.0.1:9001", "TCP `address` to listen on; port 0 picks a free one")
	fl.Int64Var(&f.readLimit, "read-limit", DefaultEchoReadLimit,
		"largest message echoed, in `bytes` (67108864 = 64 MiB); a larger one\ncloses the connection with 1009; -1 for no limit")
	f.registerHandshake(fl)
	fl.DurationVar(&f.closeTimeout, "close-timeout", 5*time.Second, "how long a closing handshake may take before the connection is dropped")
	fl.Float64Var(&f.frameRate, "frame-rate", DefaultEchoFrameRate,
		"frames a connection may send per `second`, pings included; over it the\nconnection is closed with 1008 (see above); 0 for no limit")
	fl.IntVar(&f.frameBurst, "frame-burst", 0, "frames a connection may send at once, above --frame-rate; 0 for\nas many as --frame-rate")
	fl.Float64Var(&f.controlRate, "control-rate", DefaultEchoControlRate,
		"pings, pongs and closes a connection may send per `second`; over it the\nconnection is closed with 1008 (see above); 0 for no limit")
	fl.IntVar(&f.controlBurst, "control-burst", 0, "control frames a connection may send at once, above --control-rate;\n0 for as many as --control-rate")
	fl.Float64Var(&f.byteRate, "byte-rate", 0, "bytes a connection may send per `second`, headers included; over it\nthe connection is closed with 1008; 0 for no limit")
	fl.IntVar(&f.byteBurst, "byte-burst", 0, "bytes a connection may send at once, above --byte-rate, at least its\nlargest frame; 0 for twice --byte-rate, at least 1 MiB")
	f.registerCompression(fl)
	f.tls.register(fl)
	return cmd
}

// registerHandshake adds --subprotocol, --origin and --insecure-origin to
// fl. The command's help explains origins and the danger of
// --insecure-origin.
func (f *acceptFlags) registerHandshake(fl *pflag.FlagSet) {
	fl.StringArrayVar(&f.subprotocols, "subprotocol", nil, "subprotocol `name` to accept; repeat it, most preferred first")
	fl.StringArrayVar(&f.origins, "origin", nil,
		"also accept browsers from this origin, repeatable: a path.Match `pattern`\nof host[:port], such as \"*.example.com\"")
	fl.BoolVar(&f.insecureOrigin, "insecure-origin", false, "accept browsers from every origin (dangerous: see above)")
}

// registerCompression adds --compress and the flags that tune it to fl.
// The command's help explains the modes and their memory.
func (f *acceptFlags) registerCompression(fl *pflag.FlagSet) {
	fl.StringVar(&f.compress, "compress", "off", "permessage-deflate `mode`: off, no-context or context (see above)")
	fl.IntVar(&f.serverWindowBits, "server-window-bits", 15,
		"largest window the server compresses with, 8 to 15 `bits`; a client may ask for less")
	fl.IntVar(&f.clientWindowBits, "client-window-bits", 15,
		"largest window clients may compress with, 8 to 15 `bits`: what the server\nkeeps per connection with --compress context (clients that do not offer\nclient_max_window_bits use 15)")
	fl.IntVar(&f.compressLevel, "compress-level", 1, "compression `level`, 1 (fastest) to 9 (smallest)")
	fl.IntVar(&f.compressThreshold, "compress-threshold", websocket.DefaultCompressionThreshold,
		"messages under this many `bytes` are echoed uncompressed; 0 compresses all\n(a message over 32 KiB is streamed back, always compressed)")
}

// acceptOptions checks the handshake and compression flags and returns the
// options they describe. changed reports whether a flag was given.
func (f *acceptFlags) acceptOptions(changed func(name string) bool) (websocket.AcceptOptions, error) {
	if f.insecureOrigin && len(f.origins) > 0 {
		return websocket.AcceptOptions{}, usageError{errors.New("--origin and --insecure-origin exclude each other")}
	}
	compression, err := f.compression(changed)
	if err != nil {
		return websocket.AcceptOptions{}, err
	}
	return websocket.AcceptOptions{
		Subprotocols:             f.subprotocols,
		OriginPatterns:           f.origins,
		InsecureSkipVerifyOrigin: f.insecureOrigin,
		Compression:              compression,
	}, nil
}

// server checks the flags and builds the server they describe. changed
// reports whether a flag was given on the command line.
func (f *echoFlags) server(logger *slog.Logger, changed func(name string) bool) (*EchoServer, error) {
	if f.readLimit == 0 || f.readLimit < -1 {
		return nil, usageError{fmt.Errorf("--read-limit must be a positive number of bytes or -1, not %d", f.readLimit)}
	}
	if f.closeTimeout <= 0 {
		return nil, usageError{fmt.Errorf("--close-timeout must be positive, not %v", f.closeTimeout)}
	}
	accept, err := f.acceptOptions(changed)
	if err != nil {
		return nil, err
	}
	rate, err := f.readRate(changed)
	if err != nil {
		return nil, err
	}
	accept.CloseTimeout = f.closeTimeout
	accept.ReadRate = rate
	return &EchoServer{
		Accept:    accept,
		ReadLimit: f.readLimit,
		Logger:    logger,
	}, nil
}

// readRate checks the rate flags and returns the limit they describe.
func (f *echoFlags) readRate(changed func(name string) bool) (websocket.RateLimit, error) {
	var r websocket.RateLimit
	for _, v := range []struct {
		flag  string
		value float64
	}{{"frame-rate", f.frameRate}, {"frame-burst", float64(f.frameBurst)}, {"control-rate", f.controlRate}, {"control-burst", float64(f.controlBurst)}, {"byte-rate", f.byteRate}, {"byte-burst", float64(f.byteBurst)}} {
		if v.value < 0 {
			return r, usageError{fmt.Errorf("--%s must be 0 or more, not %v", v.flag, v.value)}
		}
	}
	if f.frameRate == 0 && changed("frame-burst") {
		return r, usageError{errors.New("--frame-burst needs a --frame-rate")}
	}
	if f.controlRate == 0 && changed("control-burst") {
		return r, usageError{errors.New("--control-burst needs a --control-rate")}
	}
	if f.byteRate == 0 && changed("byte-burst") {
		return r, usageError{errors.New("--byte-burst needs a --byte-rate")}
	}
	if f.frameRate > 0 {
		r.Frames, r.FrameBurst = f.frameRate, f.frameBurst
		if r.FrameBurst == 0 {
			r.FrameBurst = int(min(max(f.frameRate, 1), 1<<30))
		}
	}
	if f.controlRate > 0 {
		r.Controls, r.ControlBurst = f.controlRate, f.controlBurst
		if r.ControlBurst == 0 {
			r.ControlBurst = int(min(max(f.controlRate, 1), 1<<30))
		}
	}
	if f.byteRate > 0 {
		r.Bytes, r.ByteBurst = f.byteRate, f.byteBurst
		if r.ByteBurst == 0 {
			r.ByteBurst = int(min(max(2*f.byteRate, 1<<20), 1<<40))
		}
	}
	return r, nil
}

// compression checks the compression flags and returns the options they
// describe.
func (f *acceptFlags) compression(changed func(name string) bool) (opts websocket.CompressionOptions, err error) {
	switch f.compress {
	case "off":
		for _, name := range compressTuning {
			if changed(name) {
				return opts, usageError{fmt.Errorf("--%s needs --compress no-context or context", name)}
			}
		}
		return opts, nil
	case "no-context":
		opts.Mode = websocket.CompressionNoContextTakeover
	case "context":
		opts.Mode = websocket.CompressionContextTakeover
	default:
		return opts, usageError{fmt.Errorf("--compress must be off, no-context or context, not %q", f.compress)}
	}
	for _, bits := range []struct {
		flag  string
		value int
	}{{"--server-window-bits", f.serverWindowBits}, {"--client-window-bits", f.clientWindowBits}} {
		if bits.value < 8 || bits.value > 15 {
			return opts, usageError{fmt.Errorf("%s must be from 8 to 15, not %d", bits.flag, bits.value)}
		}
	}
	if f.compressLevel < 1 || f.compressLevel > 9 {
		return opts, usageError{fmt.Errorf("--compress-level must be from 1 to 9, not %d", f.compressLevel)}
	}
	if f.compressThreshold < 0 {
		return opts, usageError{fmt.Errorf("--compress-threshold must be 0 or more bytes, not %d", f.compressThreshold)}
	}
	opts.Level = f.compressLevel
	opts.ServerMaxWindowBits = f.serverWindowBits
	opts.ClientMaxWindowBits = f.clientWindowBits
	opts.Threshold = f.compressThreshold
	if opts.Threshold == 0 {
		opts.Threshold = -1 // to the library, 0 means its default and a negative value none
	}
	return opts, nil
}

func runEcho(cmd *cobra.Command, f *echoFlags) error {
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	srv, err := f.server(logger, cmd.Flags().Changed)
	if err != nil {
		return err
	}
	scheme := "ws"
	if f.tls.enabled() {
		if err := enableExtendedConnect(); err != nil {
			logger.Warn("WebSockets over HTTP/2 are off: set GODEBUG=http2xconnect=1", "error", err)
		}
		if srv.TLSConfig, err = f.tls.config(cmd.OutOrStdout()); err != nil {
			return err
		}
		scheme = "wss"
	}
	ctx := cmd.Context()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", f.listen)
	if err != nil {
		return err
	}
	if f.insecureOrigin {
		logger.Warn("accepting browsers from every origin (--insecure-origin): any web page can connect with its visitors' cookies")
	}
	fmt.Fprintf(cmd.OutOrStdout(), "duplex echo listening on %s://%s\n", scheme, ln.Addr())
	return srv.Serve(ctx, ln)
}
