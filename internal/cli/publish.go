package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// publishFlags are the flags of duplex publish.
type publishFlags struct {
	channels []string
	apiKey   string
	url      string
	json     bool
	timeout  time.Duration
	insecure bool
}

func newPublishCommand() *cobra.Command {
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish DATA|-",
		Short: "Publish to channels of a Duplex gateway through its backend API",
		Long: `Publish DATA to a channel of a Duplex gateway (duplex serve) as a backend
does: with POST /api/publish, or with one --channel per channel, POST
/api/broadcast. Every subscriber of the channel receives it.

DATA is JSON, such as '{"text":"hi"}', 42 or '"hi"'; an argument that is
not JSON is published as a JSON string (hi as "hi"). With "-" the data is
read from stdin, all of it, as one publication (without a final newline
when it is not JSON).

The gateway's API takes the API key, from --api-key or else the
environment variable DUPLEX_API_KEY, as "Authorization: apikey <key>";
a gateway without one serves only clients on its own machine.

On success duplex prints the publication's position in the channel's
history, "offset=N epoch=E" (for several channels, a line each, after
the channel's name), or with --json the API's reply as it came. A
namespace without history gives no position.

Exit status:
  0  published (to every channel)
  1  the API refused (its message and code go to stderr), could not be
     reached, or refused some of several channels
  2  a wrong command line`,
		Example: `  duplex publish --channel demo:chat '{"text":"hi"}'
  duplex publish --channel demo:chat hello
  echo '{"price":42.5}' | duplex publish --channel demo:prices -
  DUPLEX_API_KEY=secret duplex publish --url https://gw.example.com --channel news:eu --channel news:us '{"title":"…"}'
  duplex publish --json --channel demo:chat '{"text":"hi"}' | jq .offset`,
		Args: publishArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringArrayVar(&f.channels, "channel", nil, "publish to this `channel`, such as demo:chat; repeat it to broadcast")
	fl.StringVar(&f.url, "url", "http://127.0.0.1:8080", "the gateway's `URL`; its API is at <URL>/api/")
	fl.StringVar(&f.apiKey, "api-key", "", "the API `key` (default: the environment variable DUPLEX_API_KEY)")
	fl.BoolVar(&f.json, "json", false, "print the API's JSON reply")
	fl.DurationVar(&f.timeout, "timeout", defaultAPITimeout, "how long the request may take")
	fl.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate of the gateway (https:// only; dangerous)")
	return cmd
}

// publishArgs accepts exactly one argument, the data.
func publishArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes the data to publish (or - for stdin), got %d arguments", cmd.CommandPath(), len(args))}
	}
	return nil
}

func runPublish(cmd *cobra.Command, arg string, f *publishFlags) error {
	if len(f.channels) == 0 {
		return usageError{errors.New("--channel is required")}
	}
	for _, ch := range f.channels {
		if ch == "" {
			return usageError{errors.New("--channel must not be empty")}
		}
	}
	if f.timeout <= 0 {
		return usageError{fmt.Errorf("--timeout must be positive, not %v", f.timeout)}
	}
	base, err := apiBaseURL(f.url)
	if err != nil {
		return usageError{fmt.Errorf("--url: %v", err)}
	}
	ctx := cmd.Context()
	text := arg
	if arg == "-" {
		b, err := readAllInput(ctx, cmd.InOrStdin())
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	data := jsonData(text)

	var tlsConfig *tls.Config
	if f.insecure {
		tlsConfig = &tls.Config{InsecureSkipVerify: true}
	}
	api := newAPIClient(base, apiKeyFlag(cmd, f.apiKey), tlsConfig, 1, f.timeout)
	defer api.close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	out := cmd.OutOrStdout()

	if len(f.channels) == 1 {
		reply, err := api.call(ctx, "publish", map[string]any{"channel": f.channels[0], "data": data})
		if err != nil {
			return err
		}
		if f.json {
			return writeLine(out, reply)
		}
		var r gwPublishResult
		if err := json.Unmarshal(reply, &r); err != nil {
			return fmt.Errorf("the API's reply %s: %v", reply, err)
		}
		return writeLine(out, []byte(describePosition(r)))
	}

	reply, err := api.call(ctx, "broadcast", map[string]any{"channels": f.channels, "data": data})
	if err != nil {
		return err
	}
	var r struct {
		Results []gwPublishResult `json:"results"`
	}
	if err := json.Unmarshal(reply, &r); err != nil || len(r.Results) != len(f.channels) {
		return fmt.Errorf("the API's reply does not give a result for each channel: %s", reply)
	}
	if f.json {
		if err := writeLine(out, reply); err != nil {
			return err
		}
	}
	failed := 0
	for i, res := range r.Results {
		if res.Error != nil {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "duplex: %s: %v\n", f.channels[i], res.Error)
			continue
		}
		if !f.json {
			if err := writeLine(out, []byte(f.channels[i]+" "+describePosition(res))); err != nil {
				return err
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d channels refused the publication", failed, len(f.channels))
	}
	return nil
}

// describePosition formats the result of a publication.
func describePosition(r gwPublishResult) string {
	if r.Epoch == "" {
		return "published (no history in this namespace, so no offset)"
	}
	return fmt.Sprintf("offset=%d epoch=%s", r.Offset, r.Epoch)
}

// writeLine writes p and a newline.
func writeLine(w io.Writer, p []byte) error {
	_, err := w.Write(append(p[:len(p):len(p)], '\n'))
	return err
}
