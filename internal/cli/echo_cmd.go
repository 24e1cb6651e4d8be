package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/websocket"
)

// echoFlags are the flags of duplex echo.
type echoFlags struct {
	listen         string
	readLimit      int64
	subprotocols   []string
	origins        []string
	insecureOrigin bool
	closeTimeout   time.Duration
}

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
only where nothing is worth protecting.`,
		Example: `  duplex echo --listen 127.0.0.1:9001
  duplex echo --listen 127.0.0.1:0 --subprotocol chat.v2 --subprotocol chat.v1`,
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
	fl.StringArrayVar(&f.subprotocols, "subprotocol", nil, "subprotocol `name` to accept; repeat it, most preferred first")
	fl.StringArrayVar(&f.origins, "origin", nil,
		"also accept browsers from this origin, repeatable: a path.Match `pattern`\nof host[:port], such as \"*.example.com\"")
	fl.BoolVar(&f.insecureOrigin, "insecure-origin", false, "accept browsers from every origin (dangerous: see above)")
	fl.DurationVar(&f.closeTimeout, "close-timeout", 5*time.Second, "how long a closing handshake may take before the connection is dropped")
	return cmd
}

// server checks the flags and builds the server they describe.
func (f *echoFlags) server(logger *slog.Logger) (*EchoServer, error) {
	if f.readLimit == 0 || f.readLimit < -1 {
		return nil, usageError{fmt.Errorf("--read-limit must be a positive number of bytes or -1, not %d", f.readLimit)}
	}
	if f.closeTimeout <= 0 {
		return nil, usageError{fmt.Errorf("--close-timeout must be positive, not %v", f.closeTimeout)}
	}
	if f.insecureOrigin && len(f.origins) > 0 {
		return nil, usageError{errors.New("--origin and --insecure-origin exclude each other")}
	}
	return &EchoServer{
		Accept: websocket.AcceptOptions{
			Subprotocols:             f.subprotocols,
			OriginPatterns:           f.origins,
			InsecureSkipVerifyOrigin: f.insecureOrigin,
			CloseTimeout:             f.closeTimeout,
		},
		ReadLimit: f.readLimit,
		Logger:    logger,
	}, nil
}

func runEcho(cmd *cobra.Command, f *echoFlags) error {
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	srv, err := f.server(logger)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", f.listen)
	if err != nil {
		return err
	}
	if f.insecureOrigin {
		logger.Warn("accepting browsers from every origin (--insecure-origin): any web page can connect with its visitors' cookies")
	}
	fmt.Fprintf(cmd.OutOrStdout(), "duplex echo listening on ws://%s\n", ln.Addr())
	return srv.Serve(ctx, ln)
}
