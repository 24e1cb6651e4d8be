package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// connectFlags are the flags of duplex connect.
type connectFlags struct {
	dial         dialFlags
	once         bool
	binary       bool
	trace        bool
	readLimit    int64
	pingInterval time.Duration
	wait         time.Duration
	waitGiven    bool // --wait was given

	// Gateway mode.
	channels []string
	token    string
	since    string
	json     bool
}

// DefaultConnectReadLimit is the largest message duplex connect accepts
// unless told otherwise: 64 MiB.
const DefaultConnectReadLimit = 64 << 20

func newConnectCommand() *cobra.Command {
	var f connectFlags
	cmd := &cobra.Command{
		Use:   "connect URL",
		Short: "Talk to a WebSocket server or a Duplex gateway from the terminal or a script",
		Long: `Connect to a WebSocket server at a ws:// or wss:// URL and exchange messages;
with --channel, to a Duplex gateway (duplex serve), whose channels it follows.

In a terminal (stdin and stdout both terminals), each line typed is sent
as a text message, and messages print as they come and go, with the time
and their direction ("<" received, ">" sent), type and size. An empty line
sends nothing; a line that starts with "//" sends the line without its
first "/". Commands at the prompt:
  /ping                   ping the server and print the round trip
  /close [code] [reason]  close with code (default 1000) and reason
  /binary <hex|base64>    send the bytes as a binary message
  /help                   list the commands
Ctrl-D or Ctrl-C closes the connection with 1000.

Otherwise (pipe mode, for scripts), each line of stdin, without its line
end, is sent as a text message, and each message received is written to
stdout followed by a newline: text as it is, binary in hex. When stdin
ends, duplex waits until no message has come for --wait, then closes with
1000; messages the server sends after that are dropped (RFC 6455 section
1.4). With --once, all of stdin, less one final newline, is sent as one
message, and duplex prints the first message that comes back and closes.

Gateway mode (--channel) talks to a Duplex gateway (duplex serve; see
PROTOCOL.md): duplex offers the subprotocol duplex.v1.json, dials /ws
when the URL has no path, connects with --token (anonymously without
one), subscribes to each --channel and prints the publications as they
come. In pipe mode each is a line on stdout with its data alone, such as
{"text":"hi"}; with --json, the whole push line, and join, leave, gap and
unsubscribe pushes too. In a terminal each is a line with the time,
channel, offset, publisher and data, as are joins and leaves.

Each line of stdin, or typed at the prompt, is published to the first
--channel: as it is when it is JSON, else as a JSON string ("hi" for
hi); empty lines are skipped. At the prompt, /publish <channel> <data>
publishes to another channel; /ping, /close and /help work as above.
Error replies print on stderr with their code, such as "publish to
demo:news failed: permission denied (error 103)"; a refused connect or
subscribe ends duplex with status 1.

When stdin ends, duplex goes on printing until SIGINT or until the
gateway closes; with --wait given, it waits instead for the replies to
its publications, then closes once no message has come for --wait. With
--once it reads no stdin, prints the first publication (recovered or
live) and closes. --since offset:epoch (with one --channel) first
replays the publications after that position from the channel's
history; when the history no longer holds them all, a warning says so
on stderr.

--trace writes to stderr (in a terminal, above the prompt) the handshake
request and response, the TLS session, and every frame in both
directions: opcode, FIN and RSV bits, masking key, payload length (for a
compressed message, its length on the wire), and the content of control
frames; message lines then also give a compressed message's wire size.
For wss:// through a proxy, TLS runs inside the proxy's tunnel and only
byte counts can be shown. Authorization, Proxy-Authorization, Cookie and
Set-Cookie values are shown as their length only.

--http2 opens the WebSocket as a stream of an HTTP/2 connection (RFC
8441: an extended CONNECT with :protocol websocket), over TLS (wss://),
not through a proxy. The server must choose h2 in TLS's ALPN and send
SETTINGS_ENABLE_CONNECT_PROTOCOL; if it does not, --http2 (or
--http2=only) fails saying which, and --http2=fallback connects over
HTTP/1.1 and says why on stderr. With --trace, the HTTP/2 side shows
instead of the HTTP/1.1 handshake: the server's SETTINGS, the stream id,
the request's pseudo-headers and headers and the response's, END_STREAM
and RST_STREAM; the WebSocket frames in the stream's DATA show as above.

Exit status:
  0      the connection closed normally: the server closed with 1000, or
         duplex closed (stdin ended, --once got its reply, /close, Ctrl-D,
         SIGINT) and the server answered
  1      an error: no connection, a refused handshake, a connection lost
         without a close frame, a message over --read-limit, the gateway
         refusing connect or subscribe
  2      a wrong command line
  3      the server closed with an application code, 3000 to 4999 (the
         gateway's codes, such as 4501 unauthorized)
  11-25  the server closed with 1001 to 1015: 10 + (code - 1000), so 11
         going away, 12 protocol error, 15 no code, 18 policy violation,
         19 message too big, 21 internal error`,
		Example: `  duplex connect ws://127.0.0.1:9001
  echo hi | duplex connect --once ws://127.0.0.1:9001
  duplex connect --trace --compress context -H "Authorization: Bearer $TOKEN" wss://example.com/feed
  duplex connect --http2 --trace --ca ca.pem wss://127.0.0.1:9443
  printf 'a\nb\n' | duplex connect --wait 200ms ws://127.0.0.1:9001 > replies.txt
  duplex connect --channel demo:chat ws://127.0.0.1:8080
  duplex connect --channel demo:chat --once ws://127.0.0.1:8080 | jq .text
  duplex connect --channel demo:chat --since 41:p3bX2q --token "$TOKEN" ws://127.0.0.1:8080 >> chat.log
  echo '{"text":"hi"}' | duplex connect --channel demo:chat --wait 0 ws://127.0.0.1:8080`,
		Args: connectArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.waitGiven = cmd.Flags().Changed("wait")
			return runConnect(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.BoolVar(&f.once, "once", false,
		"send stdin as one message, print one reply and close (gateway mode:\nprint one publication and close)")
	fl.BoolVar(&f.binary, "binary", false, "send binary messages instead of text")
	fl.DurationVar(&f.wait, "wait", time.Second,
		"in pipe mode, after stdin ends, close once no message has come\nfor this long (gateway mode: only when given)")
	fl.BoolVar(&f.trace, "trace", false, "show the handshake and every frame on stderr (see above)")
	fl.Int64Var(&f.readLimit, "read-limit", DefaultConnectReadLimit,
		"largest message accepted, in `bytes` (67108864 = 64 MiB); a larger one\ncloses the connection with 1009; -1 for no limit")
	fl.DurationVar(&f.pingInterval, "ping-interval", 0,
		"ping the server at this interval and close with 1008 when a pong\ndoes not come within it; 0 for no pings")
	fl.StringArrayVar(&f.channels, "channel", nil,
		"gateway mode: subscribe to this `channel`, such as demo:chat; repeatable;\nstdin publishes to the first")
	fl.StringVar(&f.token, "token", "", "gateway mode: connect with this connection `token` (a JWT)")
	fl.StringVar(&f.since, "since", "", "gateway mode: first recover what the channel had after `offset:epoch`")
	fl.BoolVar(&f.json, "json", false, "gateway mode: print whole push lines, not only the data")
	f.dial.register(cmd)
	return cmd
}

// connectArgs accepts exactly one argument, the URL.
func connectArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes one URL, got %d arguments", cmd.CommandPath(), len(args))}
	}
	return nil
}

// check validates the flags that the dialer does not.
func (f *connectFlags) check() error {
	if f.readLimit == 0 || f.readLimit < -1 {
		return usageError{fmt.Errorf("--read-limit must be a positive number of bytes or -1, not %d", f.readLimit)}
	}
	if f.pingInterval < 0 {
		return usageError{fmt.Errorf("--ping-interval must be 0 or more, not %v", f.pingInterval)}
	}
	if f.wait < 0 {
		return usageError{fmt.Errorf("--wait must be 0 or more, not %v", f.wait)}
	}
	if len(f.channels) == 0 {
		for _, fl := range []struct {
			name string
			set  bool
		}{{"--token", f.token != ""}, {"--since", f.since != ""}, {"--json", f.json}} {
			if fl.set {
				return usageError{fmt.Errorf("%s needs --channel (gateway mode)", fl.name)}
			}
		}
		return nil
	}
	for _, ch := range f.channels {
		if ch == "" {
			return usageError{fmt.Errorf("--channel must not be empty")}
		}
	}
	if f.binary {
		return usageError{fmt.Errorf("--binary does not go with --channel: the gateway speaks JSON text")}
	}
	if f.since != "" && len(f.channels) > 1 {
		return usageError{fmt.Errorf("--since goes with one --channel, not %d", len(f.channels))}
	}
	return nil
}
