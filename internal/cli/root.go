// Package cli implements the duplex command: its root and its
// subcommands, each in a file of its own. cmd/duplex only calls Execute.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Version is the version duplex reports. Release builds set it with
// -ldflags "-X github.com/duplexws/duplex/internal/cli.Version=v1.2.3";
// when it is empty, the module version recorded in the binary is used.
var Version = ""

// Exit codes of Execute.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

// Execute runs the duplex command line args (without the program name),
// reading input from os.Stdin, writing output to stdout and errors and logs
// to stderr, and returns the process's exit code: 0 on success, 1 when the
// command fails, 2 when the command line is wrong, or a code of the
// command's own that its help documents. Long-running commands stop
// gracefully when ctx ends and then succeed.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeWithInput(ctx, args, os.Stdin, stdout, stderr)
}

// executeWithInput is Execute reading input from stdin.
func executeWithInput(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "duplex: %v\n", err)
	var ue usageError
	var se *exitStatusError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	case errors.As(err, &se):
		return se.code
	}
	return exitError
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:     "duplex",
		Short:   "Duplex: WebSocket toolkit — gateway, echo, connect and bench tools",
		Example: "  duplex echo --listen 127.0.0.1:9001\n  duplex connect ws://127.0.0.1:9001\n  duplex bench --connections 100 --duration 10s ws://127.0.0.1:9001",
		Version: version(),
		Args:    noCommandArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		SilenceErrors: true, // Execute prints them, once
		SilenceUsage:  true, // a failure at run time is not a usage problem
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: true,
		},
	}
	root.SetVersionTemplate("duplex {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(newServeCommand(), newEchoCommand(), newConnectCommand(), newBenchCommand(), newPublishCommand(), newProxyCommand(), newReplayCommand(), newListenCommand(), newExecCommand())
	return root
}

// version returns Version, or the module version the binary was built
// from, or "dev".
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// usageError is an error in the command line, as opposed to a failure of
// the command; Execute exits with exitUsage for it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitStatusError is a failure for which a command documents an exit
// status of its own; Execute prints err and exits with code.
type exitStatusError struct {
	code int
	err  error
}

func (e *exitStatusError) Error() string { return e.err.Error() }
func (e *exitStatusError) Unwrap() error { return e.err }

// noCommandArgs rejects arguments to the root command: any argument there
// is an unknown subcommand.
func noCommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// noArgs rejects positional arguments to a command that takes none.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}
