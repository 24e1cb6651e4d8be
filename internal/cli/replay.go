package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/websocket"
)

// exitReplayDiffers is duplex replay's exit status when the server's
// answers differ from the recording.
const exitReplayDiffers = 3

// replayFlags are the flags of duplex replay.
type replayFlags struct {
	to               string
	speed            float64
	wait             time.Duration
	insecure         bool
	caFile           string
	handshakeTimeout time.Duration
	readLimit        int64
}

func newReplayCommand() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay FILE --to URL",
		Short: "Play the client side of a duplex proxy recording against a server",
		Long: `Play the client side of a recording made by duplex proxy --record against
the server at --to, and report where the server's answers differ from the
recording.

Each recorded connection is opened again at its original time from the
start of the recording, with the recorded subprotocols and
permessage-deflate offer and the recorded headers (hop-by-hop headers, Host,
Sec-WebSocket-* and the credentials the recording hides are left out). When
--to has a path other than "/", every connection goes to that path;
otherwise each goes to its recorded path and query. Each message the client
sent is sent again at its original time (--speed 2 plays twice as fast),
as a whole message of its type, compressed or not as the new connection
agreed. Then the client closes as it did in the recording, or, when the
server closed first, waits for the server to close.

The server's data messages are compared, in order, with the recorded ones:
a message that differs, one that did not come within --wait after the last
one sent, and one that is not in the recording are each reported on a line,
and so is a close code of the server's that differs.

Exit status: 0 when every answer is as recorded, 3 when any differs, 1
when the recording cannot be read or a connection cannot be made, 2 for a
wrong command line.`,
		Example: `  duplex proxy --listen 127.0.0.1:8081 --to ws://127.0.0.1:9001 --record session.jsonl
  duplex replay session.jsonl --to ws://127.0.0.1:9001
  duplex replay session.jsonl --to ws://127.0.0.1:9001 --speed 10`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one recording FILE, got %d arguments", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.to, "to", "", "the server to play against: a ws:// or wss:// `URL` (required)")
	fl.Float64Var(&f.speed, "speed", 1, "play this many `times` faster than recorded; 1 keeps the original timing")
	fl.DurationVar(&f.wait, "wait", 5*time.Second, "how long to wait for the server's answers after the last message sent")
	fl.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate of the server (wss:// only; dangerous)")
	fl.StringVar(&f.caFile, "ca", "", "trust the CA certificates in this PEM `file` instead of the system's")
	fl.DurationVar(&f.handshakeTimeout, "handshake-timeout", 10*time.Second, "how long connecting and the opening handshake may take")
	fl.Int64Var(&f.readLimit, "read-limit", DefaultEchoReadLimit, "largest message read from the server, in `bytes` (67108864 = 64 MiB)")
	return cmd
}

func runReplay(cmd *cobra.Command, file string, f *replayFlags) error {
	switch {
	case f.to == "":
		return usageError{errors.New("--to is required: the ws:// or wss:// URL of the server to play against")}
	case f.speed <= 0:
		return usageError{fmt.Errorf("--speed must be positive, not %v", f.speed)}
	case f.wait <= 0:
		return usageError{fmt.Errorf("--wait must be positive, not %v", f.wait)}
	case f.readLimit <= 0:
		return usageError{fmt.Errorf("--read-limit must be a positive number of bytes, not %d", f.readLimit)}
	}
	df := dialFlags{insecure: f.insecure, caFile: f.caFile, compress: "off", proxy: "none", handshakeTimeout: f.handshakeTimeout}
	d, err := df.dialer(f.to)
	if err != nil {
		return err
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	conns, err := readRecording(in)
	in.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	ctx := cmd.Context()
	start := time.Now()
	results := make([]replayResult, len(conns))
	var wg sync.WaitGroup
	for i, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = replayOne(ctx, d, rc, start, f)
		}()
	}
	wg.Wait()
	out := cmd.OutOrStdout()
	differences, failed := 0, 0
	for i, res := range results {
		for _, line := range res.lines {
			fmt.Fprintf(out, "conn %d: %s\n", conns[i].n, line)
		}
		differences += res.differences
		if res.err != nil {
			failed++
			fmt.Fprintf(out, "conn %d: %v\n", conns[i].n, res.err)
		}
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d of %d connections could not be replayed", failed, len(conns))
	case differences > 0:
		return &exitStatusError{code: exitReplayDiffers, err: fmt.Errorf("%d answers differ from the recording", differences)}
	}
	fmt.Fprintf(out, "every answer as recorded (%d connections)\n", len(conns))
	return nil
}

// replayResult is what replaying one connection found.
type replayResult struct {
	lines       []string
	differences int
	err         error // the connection could not be replayed
}

func (r *replayResult) differ(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
	r.differences++
}

// replayOne plays one connection and compares the server's answers.
func replayOne(ctx context.Context, d *dialer, rc *replayConn, start time.Time, f *replayFlags) (res replayResult) {
	if rc.status != http.StatusSwitchingProtocols {
		res.lines = append(res.lines, fmt.Sprintf("not replayed: the server answered its handshake with %d in the recording", rc.status))
		return res
	}
	sleepUntil(ctx, start.Add(scaled(rc.at, f.speed)))
	opts, dialURL := replayDialOptions(d, rc)
	c, _, err := d.dial(ctx, opts, dialURL)
	if err != nil {
		res.err = fmt.Errorf("cannot connect to %s: %v", dialURL, err)
		return res
	}
	defer c.CloseNow()
	c.SetReadLimit(f.readLimit)
	connStart := start.Add(scaled(rc.at, f.speed))

	type answer struct {
		typ  websocket.MessageType
		data []byte
	}
	answers := make(chan answer, len(rc.answers)+1)
	readErr := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		for {
			typ, data, err := c.Read(readCtx)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case answers <- answer{typ, data}:
			case <-readCtx.Done():
				readErr <- readCtx.Err()
				return
			}
		}
	}()
	defer reading.Wait()

	var got []answer
	var closeErr error
	collect := func(deadline time.Time, want int) {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		for closeErr == nil && (want < 0 || len(got) < want) {
			select {
			case a := <-answers:
				got = append(got, a)
			case closeErr = <-readErr:
			case <-t.C:
				return
			}
		}
	}
	for _, m := range rc.sends {
		sendAt := connStart.Add(scaled(m.at-rc.at, f.speed))
		collect(sendAt, -1)
		if closeErr != nil {
			break
		}
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			break
		}
	}
	collect(time.Now().Add(f.wait), len(rc.answers))
	// Answers that come with the close are counted too.
	switch {
	case closeErr != nil:
	case rc.serverClosedFirst:
		collect(time.Now().Add(f.wait), -1)
	case rc.clientClose != nil && rc.clientClose.Code != websocket.StatusNoStatusRcvd:
		c.Close(rc.clientClose.Code, rc.clientClose.Reason)
	default:
		c.Close(websocket.StatusNormalClosure, "")
	}
	stopReading()
	for {
		select {
		case a := <-answers:
			got = append(got, a)
			continue
		default:
		}
		break
	}

	for i := range max(len(got), len(rc.answers)) {
		switch {
		case i >= len(got):
			res.differ("answer %d (%s) did not come within --wait %v", i+1, describeAnswer(rc.answers[i].typ, rc.answers[i].data), f.wait)
		case i >= len(rc.answers):
			res.differ("answer %d is not in the recording: %s", i+1, describeAnswer(got[i].typ, got[i].data))
		case rc.answers[i].unknown != "":
			// The recorded answer did not inflate: its content is unknown.
		case got[i].typ != rc.answers[i].typ || !bytes.Equal(got[i].data, rc.answers[i].data):
			res.differ("answer %d differs: got %s, recorded %s", i+1, describeAnswer(got[i].typ, got[i].data), describeAnswer(rc.answers[i].typ, rc.answers[i].data))
		}
	}
	if rc.serverClosedFirst {
		code := websocket.CloseStatus(closeErr)
		if code != rc.serverClose {
			res.differ("the server closed with %s, recorded %s", describeStatus(code), describeStatus(rc.serverClose))
		}
	}
	if res.differences == 0 {
		res.lines = append(res.lines, fmt.Sprintf("%d messages sent, %d answers as recorded", len(rc.sends), len(rc.answers)))
	}
	return res
}

// replayDialOptions returns the options and URL that open rc again.
func replayDialOptions(d *dialer, rc *replayConn) (*websocket.DialOptions, string) {
	u := *d.url
	if u.Path == "" || u.Path == "/" {
		if ru, err := url.ParseRequestURI(rc.request.URI); err == nil {
			u.Path, u.RawPath, u.RawQuery = ru.Path, ru.RawPath, ru.RawQuery
		}
	}
	h := http.Header{}
	for name, values := range rc.request.Headers {
		canon := http.CanonicalHeaderKey(name)
		if strings.HasPrefix(canon, "Sec-Websocket-") || canon == "Host" || slices.Contains(hopByHop, canon) {
			continue
		}
		for _, v := range values {
			if !hiddenValue(v) {
				h.Add(canon, v)
			}
		}
	}
	var subprotocols []string
	for _, v := range http.Header(rc.request.Headers).Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				subprotocols = append(subprotocols, p)
			}
		}
	}
	var compression websocket.CompressionOptions
	if ext := strings.Join(http.Header(rc.request.Headers).Values("Sec-WebSocket-Extensions"), ","); strings.Contains(ext, "permessage-deflate") {
		compression.Mode = websocket.CompressionContextTakeover
		if strings.Contains(ext, "client_no_context_takeover") {
			compression.Mode = websocket.CompressionNoContextTakeover
		}
	}
	opts := &websocket.DialOptions{
		HTTPHeader:   h,
		Subprotocols: subprotocols,
		TLSConfig:    d.tls,
		Compression:  compression,
		HTTPClient:   &http.Client{Transport: &http.Transport{}},
	}
	return opts, u.String()
}

// scaled divides a recorded duration by --speed.
func scaled(d time.Duration, speed float64) time.Duration {
	return time.Duration(float64(d) / speed)
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// describeAnswer shows a message in a line: its type and its start.
func describeAnswer(typ websocket.MessageType, data []byte) string {
	const most = 64
	if typ == websocket.MessageText {
		s := string(data)
		if len(s) > most {
			return fmt.Sprintf("text %q… (%d bytes)", s[:most], len(data))
		}
		return fmt.Sprintf("text %q", s)
	}
	if len(data) > most/2 {
		return fmt.Sprintf("binary %s… (%d bytes)", hex.EncodeToString(data[:most/2]), len(data))
	}
	return "binary " + hex.EncodeToString(data)
}

// describeStatus names a close status; -1 is no close frame.
func describeStatus(code websocket.StatusCode) string {
	if code == -1 {
		return "no close frame"
	}
	return describeCode(code)
}
