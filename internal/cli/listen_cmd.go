package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
)

// defaultListenReadLimit is the largest message duplex listen accepts
// unless --read-limit says otherwise: 1 MiB.
const defaultListenReadLimit = 1 << 20

// listenFlags are the flags of duplex listen.
type listenFlags struct {
	listen       string
	once         bool
	readLimit    int64
	closeTimeout time.Duration
	tls          tlsServerFlags
	acceptFlags
}

func newListenCommand() *cobra.Command {
	var f listenFlags
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "Run a WebSocket server you talk to from the terminal",
		Long: `Run a WebSocket server for trying a client by hand. Clients are numbered
from 1 in the order they connect. Each connect, each message a client
sends and each disconnect (with its close code) is printed on stdout as a
line with the time and the client's number in brackets; text is printed as
it is (quoted when it holds control characters), binary in hex, up to
4096 bytes of each.

Each line read from stdin is sent to every client as a text message, and
these commands are understood:

  /to N <line>             send to client N only
  /binary <hex|base64>     send a binary message (also after /to N)
  //text                   send "/text"
  /close N [code [reason]] close client N (1000 by default)
  /list                    list the clients
  /help                    show these commands

What was sent is printed as "[1 2] > text 5 B: hello"; what could not be
sent, and why, goes to stderr. When stdin ends the server goes on, without
input. On SIGINT or SIGTERM it closes every connection with 1001 (going
away) and exits with status 0. With --once it serves one client, refusing
others with 503 while that client is connected, and exits with status 0
when it leaves.

Browsers may connect only from pages of the server's own host unless
--origin allows more. --insecure-origin lets every web page a user visits
connect with the user's cookies (cross-site WebSocket hijacking): use it
only where nothing is worth protecting. --compress agrees on
permessage-deflate with clients that offer it; "duplex echo --help"
explains its modes and their memory.`,
		Example: `  duplex listen --listen 127.0.0.1:9001
  duplex listen --listen 127.0.0.1:0 --once --subprotocol chat.v1
  duplex listen --tls-self-signed --compress context`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runListen(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.listen, "listen", "127.0.0.1:9001", "TCP `address` to listen on; port 0 picks a free one")
	fl.BoolVar(&f.once, "once", false, "serve one client and exit when it leaves")
	fl.Int64Var(&f.readLimit, "read-limit", defaultListenReadLimit,
		"largest message accepted, in `bytes` (1048576 = 1 MiB); a larger one\ncloses the connection with 1009; -1 for no limit")
	fl.DurationVar(&f.closeTimeout, "close-timeout", 5*time.Second, "how long a closing handshake may take before the connection is dropped")
	f.registerHandshake(fl)
	f.tls.register(fl)
	f.registerCompression(fl)
	return cmd
}

func runListen(cmd *cobra.Command, f *listenFlags) error {
	if f.readLimit == 0 || f.readLimit < -1 {
		return usageError{fmt.Errorf("--read-limit must be a positive number of bytes or -1, not %d", f.readLimit)}
	}
	if f.closeTimeout <= 0 {
		return usageError{fmt.Errorf("--close-timeout must be positive, not %v", f.closeTimeout)}
	}
	accept, err := f.acceptOptions(cmd.Flags().Changed)
	if err != nil {
		return err
	}
	accept.CloseTimeout = f.closeTimeout

	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var notes bytes.Buffer
	ln, scheme, err := openListener(cmd.Context(), f.listen, &f.tls, &notes)
	if err != nil {
		return err
	}
	printListening(stdout, "listen", scheme, ln, &notes)
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if f.insecureOrigin {
		logger.Warn("accepting browsers from every origin (--insecure-origin): any web page can connect with its visitors' cookies")
	}

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	s := &listenServer{
		accept:    accept,
		readLimit: f.readLimit,
		out:       &console{out: stdout, log: stdout},
		log:       &console{out: stderr, log: stderr},
		once:      f.once,
		done:      cancel,
		clients:   make(map[int]*listenClient),
	}

	in, interrupt, release := interruptibleInput(cmd.InOrStdin())
	lines := startLineInput(pipeLines(in), interrupt)
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		for {
			select {
			case line, ok := <-lines.lines:
				if !ok {
					return // stdin ended: serve on without input
				}
				s.command(line)
			case <-ctx.Done():
				return
			}
		}
	}()

	err = serveConns(ctx, ln, s.serve, logger)
	cancel()
	<-inputDone
	lines.stop()
	release()
	return err
}
