package cli

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/websocket"
)

// proxyFlags are the flags of duplex proxy.
type proxyFlags struct {
	listen     string
	to         string
	tlsServer  tlsServerFlags
	insecure   bool
	caFile     string
	keepHost   bool
	json       bool
	maxShown   int
	record     string
	quiet      bool
	filters    []string
	readLimit  int64
	delay      time.Duration
	dropAfter  int
	closeCode  int
	closeAfter int
	countDir   string
}

func newProxyCommand() *cobra.Command {
	var f proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy --listen ADDR --to URL",
		Short: "Relay WebSocket connections and show every frame both ways",
		Long: `Relay every WebSocket connection made to --listen to the server at --to,
and print what the two ends say to each other: the opening handshake, then
each frame both ways as it crosses the proxy.

The client's handshake is passed on with its Sec-WebSocket-Key, subprotocols
and extensions, so the client and the server negotiate end to end: a
compressed session stays compressed, and the proxy relays the frames as they
are, masked and compressed, without re-encoding them. Hop-by-hop headers
(Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding) are
dropped; the Host header names the server of --to (with --keep-host, the
client's Host is passed on: a server that checks a browser's Origin against
its Host then accepts pages loaded through the proxy). When --to has a path
other than "/", every connection goes to that path and query; otherwise the
client's path and query are passed on. Requests that are not WebSocket
upgrades (a page, its scripts) are passed on too, each printed on one line.

Each frame is printed as
  TIME #CONN DIR OPCODE [fin] [rsv1] len=N: PAYLOAD
where DIR is "in" from the client to the server and "out" from the server
to the client, and the payload is text as it is, binary in hex (the first
--max-shown bytes of either), and close frames as their code and reason.
With permessage-deflate, the message is inflated for display on its last
frame, following each direction's context takeover and window; a message
that does not inflate is printed as such and the relay goes on. Credential headers (Authorization, Cookie and their
kin) are hidden, as connect --trace hides them.

--filter KEY=VALUE chooses the frames printed; repeat it. Values of the same
key are alternatives, different keys must all hold:
  conn=N             connection number N (handshakes are filtered by it too)
  dir=in|out         direction
  op=NAME            text, binary, continuation, close, ping, pong, data
                     (text, binary and continuation) or control
  has=TEXT           the payload shown (inflated, unmasked) contains TEXT
--record FILE writes every handshake and frame as JSON lines, whatever the
filters; duplex replay plays it back. --quiet records without printing.

Faults, for testing how clients cope. They count the data messages passed
on, per connection, in both directions together unless --count says in
(client to server) or out (server to client):
  --delay D          hold each frame D before passing it on (at most 1 MiB
                     of frames, or one larger frame, wait in each
                     direction: beyond it the sender is slowed)
  --drop-after N     after the Nth message, close both TCP connections
                     without a close frame (the client sees 1006)
  --close-after N    after the Nth message, send a close frame with
  --close-code CODE  CODE to both ends, relay nothing more, and close once
                     both have answered (or after 5s)

On SIGINT or SIGTERM the proxy stops accepting, sends 1001 (going away) to
both ends of every connection and exits with status 0.`,
		Example: `  duplex proxy --listen 127.0.0.1:8081 --to ws://127.0.0.1:9001
  duplex proxy --listen 127.0.0.1:8443 --tls-self-signed --to wss://example.com/socket --json
  duplex proxy --listen 127.0.0.1:8081 --to ws://127.0.0.1:9001 --record session.jsonl --quiet
  duplex proxy --listen 127.0.0.1:8081 --to ws://127.0.0.1:9001 --filter dir=out --filter has=error
  duplex proxy --listen 127.0.0.1:8081 --to ws://127.0.0.1:9001 --close-after 3 --close-code 4000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxy(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8081", "TCP `address` to listen on; port 0 picks a free one")
	fl.StringVar(&f.to, "to", "", "the server to relay to: a ws:// or wss:// `URL` (required)")
	f.tlsServer.register(fl)
	fl.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate of the server of a wss:// --to (dangerous)")
	fl.StringVar(&f.caFile, "ca", "", "trust the CA certificates in this PEM `file` for a wss:// --to, instead\nof the system's")
	fl.BoolVar(&f.keepHost, "keep-host", false, "pass the client's Host header on instead of the host of --to (see above)")
	fl.BoolVar(&f.json, "json", false, "print JSON payloads indented")
	fl.IntVar(&f.maxShown, "max-shown", 4096, "print at most this many `bytes` of each payload, then how many more\nthere are; 0 prints them whole")
	fl.StringVar(&f.record, "record", "", "write every handshake and frame to this `file` as JSON lines")
	fl.BoolVar(&f.quiet, "quiet", false, "print nothing but the listening line (with --record)")
	fl.StringArrayVar(&f.filters, "filter", nil, "print only the frames that match `KEY=VALUE`; repeatable (see above)")
	fl.Int64Var(&f.readLimit, "read-limit", DefaultEchoReadLimit,
		"largest frame, and largest message inflated for display, in `bytes`\n(67108864 = 64 MiB); a larger frame closes both ends with 1009")
	fl.DurationVar(&f.delay, "delay", 0, "hold each frame this `duration` before passing it on")
	fl.IntVar(&f.dropAfter, "drop-after", 0, "cut each connection without a close frame after `N` messages; 0: never")
	fl.IntVar(&f.closeAfter, "close-after", 0, "send --close-code to both ends after `N` messages; 0: never")
	fl.IntVar(&f.closeCode, "close-code", 0, "the close `code` of --close-after: 1000-1003, 1007-1011 or 3000-4999")
	fl.StringVar(&f.countDir, "count", "both", "the messages --drop-after and --close-after count: `dir` in, out or both")
	return cmd
}

// proxyConfig is what the flags of duplex proxy describe.
type proxyConfig struct {
	target     *url.URL // ws:// or wss://
	dial       dialFlags
	keepHost   bool
	json       bool
	quiet      bool
	filter     frameFilter
	readLimit  int64
	delay      time.Duration
	dropAfter  int
	closeAfter int
	closeCode  websocket.StatusCode
	countDir   string // "in", "out" or "both"
}

// counts reports whether the faults count the messages of direction dir.
func (c *proxyConfig) counts(dir string) bool { return c.countDir == "both" || c.countDir == dir }

// config checks the flags and returns the proxy they describe.
func (f *proxyFlags) config() (*proxyConfig, error) {
	if f.to == "" {
		return nil, usageError{errors.New("--to is required: the ws:// or wss:// URL of the server to relay to")}
	}
	u, err := url.Parse(f.to)
	if err != nil {
		return nil, usageError{fmt.Errorf("--to: bad URL: %v", err)}
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, usageError{fmt.Errorf("--to must start with ws:// or wss://, not %q", f.to)}
	}
	if u.Host == "" {
		return nil, usageError{fmt.Errorf("--to %q has no host", f.to)}
	}
	if u.Scheme == "ws" && (f.insecure || f.caFile != "") {
		return nil, usageError{errors.New("--insecure and --ca are for a wss:// --to")}
	}
	if f.quiet && f.record == "" {
		return nil, usageError{errors.New("--quiet prints nothing: it needs --record")}
	}
	if f.maxShown < 0 {
		return nil, usageError{fmt.Errorf("--max-shown must be 0 or more bytes, not %d", f.maxShown)}
	}
	if f.readLimit <= 0 {
		return nil, usageError{fmt.Errorf("--read-limit must be a positive number of bytes, not %d", f.readLimit)}
	}
	if f.delay < 0 {
		return nil, usageError{fmt.Errorf("--delay must be 0 or more, not %v", f.delay)}
	}
	if f.dropAfter < 0 || f.closeAfter < 0 {
		return nil, usageError{errors.New("--drop-after and --close-after count messages: 0 or more")}
	}
	if (f.closeAfter > 0) != (f.closeCode != 0) {
		return nil, usageError{errors.New("--close-after and --close-code go together")}
	}
	if f.closeCode != 0 && (f.closeCode > 0xffff || !frame.ValidCloseCode(uint16(f.closeCode))) {
		return nil, usageError{fmt.Errorf("--close-code %d cannot be sent: use 1000-1003, 1007-1011 or 3000-4999", f.closeCode)}
	}
	if f.dropAfter > 0 && f.closeAfter > 0 {
		return nil, usageError{errors.New("--drop-after and --close-after exclude each other")}
	}
	switch f.countDir {
	case "in", "out", "both":
	default:
		return nil, usageError{fmt.Errorf("--count must be in, out or both, not %q", f.countDir)}
	}
	filter, err := parseFrameFilter(f.filters)
	if err != nil {
		return nil, usageError{err}
	}
	return &proxyConfig{
		target:     u,
		dial:       dialFlags{insecure: f.insecure, caFile: f.caFile},
		keepHost:   f.keepHost,
		json:       f.json,
		quiet:      f.quiet,
		filter:     filter,
		readLimit:  f.readLimit,
		delay:      f.delay,
		dropAfter:  f.dropAfter,
		closeAfter: f.closeAfter,
		closeCode:  websocket.StatusCode(f.closeCode),
		countDir:   f.countDir,
	}, nil
}

func runProxy(cmd *cobra.Command, f *proxyFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var fingerprint bytes.Buffer
	tlsCfg, err := f.tlsServer.config(&fingerprint)
	if err != nil {
		return err
	}
	upstreamTLS, err := cfg.dial.tlsConfig()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var rec *recorder
	if f.record != "" {
		file, err := os.Create(f.record)
		if err != nil {
			return fmt.Errorf("--record: %w", err)
		}
		defer file.Close()
		rec = newRecorder(file)
	}
	ctx := cmd.Context()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", f.listen)
	if err != nil {
		return err
	}
	scheme := "ws"
	if tlsCfg != nil {
		scheme = "wss"
	}
	fmt.Fprintf(out, "duplex proxy listening on %s://%s, relaying to %s\n", scheme, ln.Addr(), cfg.target)
	if fingerprint.Len() > 0 {
		out.Write(fingerprint.Bytes())
	}
	p := &proxy{
		cfg:         cfg,
		upstreamTLS: upstreamTLS,
		printer:     newFramePrinter(out, cfg.json, f.maxShown, cfg.quiet, cfg.filter),
		rec:         rec,
		logger:      slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
	}
	err = p.serve(ctx, ln, tlsCfg)
	if rec != nil {
		if rerr := rec.err(); rerr != nil && err == nil {
			err = fmt.Errorf("--record %s: %w", f.record, rerr)
		}
	}
	return err
}

// hiddenValue reports whether a header value is one the proxy hid.
func hiddenValue(v string) bool {
	return strings.HasPrefix(v, "[") && strings.HasSuffix(v, " bytes hidden]")
}
