package cli

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// execFlags are the flags of duplex exec.
type execFlags struct {
	listen       string
	binary       bool
	maxProcs     int
	maxMemory    uint64
	maxTime      time.Duration
	grace        time.Duration
	readLimit    int64
	closeTimeout time.Duration
	passHeaders  []string
	tls          tlsServerFlags
	acceptFlags
}

func newExecCommand() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] -- PROGRAM [ARGS...]",
		Short: "Run a program for each WebSocket connection, wired to its stdin and stdout",
		Long: `Run PROGRAM with ARGS for each WebSocket connection. Each line the program
writes to stdout is sent to the client as a text message (without the
line end, "\n" or "\r\n"; invalid UTF-8 replaced by U+FFFD; a line over
1 MiB in pieces of 1 MiB), and each text message from the client is
written to the program's stdin followed by "\n" (a message holding
newlines makes several lines). Without --binary a binary message closes
the connection with 1003. With --binary each read of the program's stdout
(up to 32 KiB) is sent as a binary message, and every message from the
client is written to stdin as it is, with nothing added.

The program's stderr goes to duplex's stderr, each line after the
connection's number in brackets; duplex logs each connection when it opens
(with the program's process id) and when it closes (with how the program
ended, and the close code).

The program runs in a process group of its own. When the client leaves,
the program's stdin is closed and its group gets SIGTERM, then SIGKILL
after --grace. When the program exits on its own, what is left of its group
is ended the same way, what it wrote is sent, and the client is closed:
with 1000 when it exited with status 0, else with 1011 (internal error)
and the reason "exit status N" or "signal: NAME". A program that runs over
--max-time is ended the same way and closed with 1011 and the reason
"over --max-time D: ...". A process that leaves the group (setsid) is out
of reach.

A program that stops reading its stdin holds back the client's messages,
and with them the news that the client has left, until it reads again or
ends: --max-time bounds how long.

Connections over --max-procs are refused with 503 before the handshake.
--max-memory limits each program's address space (RLIMIT_AS, in whole
KiB): /bin/sh sets it with ulimit -v and then becomes the program, so
that it holds from the program's first instruction; it is supported on
Linux only, and refused elsewhere.
duplex exec runs on Unix systems only.

The program's environment is duplex's, without any HTTP_* variable and
without the variables below, with these added:

  REMOTE_ADDR, REMOTE_PORT  the client's address and port
  SERVER_NAME               the host of the request's Host header
  SERVER_PORT               the port the connection came to
  REQUEST_METHOD, SERVER_PROTOCOL, SERVER_SOFTWARE, HTTPS (on or off)
  REQUEST_URI               the path and query as sent
  PATH_INFO, QUERY_STRING   the decoded path, and the query as sent
  DUPLEX_CONNECTION         the connection's number, from 1
  HTTP_NAME                 each request header, as HTTP_USER_AGENT for
                            User-Agent; several values joined with ", "

Credentials are kept from the program unless --pass-header names them:
Cookie, Authorization and Proxy-Authorization. A header whose name holds a
character other than a letter, digit or "-" is left out (so X_Real_IP
cannot pose as X-Real-IP), and so is Proxy, which would become the proxy
setting HTTP_PROXY (httpoxy).

Browsers may connect only from pages of the server's own host unless
--origin allows more. --insecure-origin lets every web page a user visits
run the program with the user's cookies (cross-site WebSocket hijacking):
use it only where nothing is worth protecting.

On SIGINT or SIGTERM duplex closes every connection with 1001 (going
away), ends every program as above and exits with status 0.`,
		Example: `  duplex exec --listen 127.0.0.1:9001 -- ./count.sh
  duplex exec --max-procs 8 --max-time 1m --max-memory 268435456 -- python3 bot.py
  duplex exec --binary -- gzip -c`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("duplex exec needs a program to run: duplex exec [flags] -- PROGRAM [ARGS...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.SetInterspersed(false) // the program's flags are its own
	fl.StringVar(&f.listen, "listen", "127.0.0.1:9001", "TCP `address` to listen on; port 0 picks a free one")
	fl.BoolVar(&f.binary, "binary", false, "carry bytes as binary messages instead of lines as text messages")
	fl.IntVar(&f.maxProcs, "max-procs", 64, "most programs running at once; connections over it are refused with 503")
	fl.Uint64Var(&f.maxMemory, "max-memory", 0, "address space of each program, in `bytes` (RLIMIT_AS; Linux only); 0 for no limit")
	fl.DurationVar(&f.maxTime, "max-time", 0, "how long each program may run before it is ended and the client\nclosed with 1011; 0 for no limit")
	fl.DurationVar(&f.grace, "grace", 3*time.Second, "how long a program has after SIGTERM before SIGKILL")
	fl.Int64Var(&f.readLimit, "read-limit", defaultListenReadLimit,
		"largest message from a client, in `bytes` (1048576 = 1 MiB); a larger one\ncloses the connection with 1009; -1 for no limit")
	fl.DurationVar(&f.closeTimeout, "close-timeout", 5*time.Second, "how long a closing handshake may take before the connection is dropped")
	fl.StringArrayVar(&f.passHeaders, "pass-header", nil,
		"also pass this credential `header` to the program: Cookie, Authorization or\nProxy-Authorization (see above); repeatable")
	f.registerHandshake(fl)
	f.tls.register(fl)
	f.registerCompression(fl)
	return cmd
}

func runExec(cmd *cobra.Command, f *execFlags, args []string) error {
	if errExecUnsupported != nil {
		return errExecUnsupported
	}
	switch {
	case f.maxProcs < 1:
		return usageError{fmt.Errorf("--max-procs must be 1 or more, not %d", f.maxProcs)}
	case f.maxTime < 0:
		return usageError{fmt.Errorf("--max-time must be 0 or more, not %v", f.maxTime)}
	case f.grace <= 0:
		return usageError{fmt.Errorf("--grace must be positive, not %v", f.grace)}
	case f.readLimit == 0 || f.readLimit < -1:
		return usageError{fmt.Errorf("--read-limit must be a positive number of bytes or -1, not %d", f.readLimit)}
	case f.closeTimeout <= 0:
		return usageError{fmt.Errorf("--close-timeout must be positive, not %v", f.closeTimeout)}
	case f.maxMemory > 0 && !memoryLimitSupported:
		return usageError{errors.New("--max-memory is supported on Linux only")}
	}
	for _, h := range f.passHeaders {
		if !slices.ContainsFunc(credentialHeaders, func(c string) bool { return strings.EqualFold(c, h) }) {
			return usageError{fmt.Errorf("--pass-header takes %s, not %q: other headers are passed anyway", strings.Join(credentialHeaders, ", "), h)}
		}
	}
	accept, err := f.acceptOptions(cmd.Flags().Changed)
	if err != nil {
		return err
	}
	accept.CloseTimeout = f.closeTimeout
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	stderr := &lineWriter{w: cmd.ErrOrStderr()}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	var notes bytes.Buffer
	ln, scheme, err := openListener(cmd.Context(), f.listen, &f.tls, &notes)
	if err != nil {
		return err
	}
	printListening(stdout, "exec", scheme, ln, &notes)
	if f.insecureOrigin {
		logger.Warn("accepting browsers from every origin (--insecure-origin): any web page can run the program with its visitors' cookies")
	}
	s := &execServer{
		path:       path,
		args:       args[1:],
		binary:     f.binary,
		maxProcs:   f.maxProcs,
		maxMemory:  f.maxMemory,
		maxTime:    f.maxTime,
		grace:      f.grace,
		readLimit:  f.readLimit,
		passHeader: f.passHeaders,
		accept:     accept,
		tls:        scheme == "wss",
		logger:     logger,
		stderr:     stderr,
	}
	return serveConns(cmd.Context(), ln, s.serve, logger)
}
