package cli

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway"
)

// TestConnectGatewayOnce subscribes with duplex connect --channel --once,
// publishes with duplex publish, and checks that connect prints the data.
func TestConnectGatewayOnce(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	var stdout, stderr lockedBuffer
	// The URL without a path: connect dials /ws.
	exit := startCommand(t, testContext(t), strings.NewReader(""), &stdout, &stderr,
		"connect", "--channel", "demo:news", "--once", gw.url)
	gw.waitSubscriptions(t, 1)

	code, out, errOut := execute(t, "publish", "--url", gw.url, "--channel", "demo:news", `{"text": "hi"}`)
	if code != exitOK || !regexp.MustCompile(`^offset=1 epoch=\S+\n$`).MatchString(out) || errOut != "" {
		t.Errorf("publish: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("connect: exit %d, stderr %q", code, &stderr)
	}
	if got, want := stdout.String(), `{"text":"hi"}`+"\n"; got != want {
		t.Errorf("connect printed %q, want %q", got, want)
	}
	if stderr.String() != "" {
		t.Errorf("connect stderr %q", &stderr)
	}
	gw.waitConnections(t, 0) // connect closed with 1000, and the gateway saw it
}

// TestConnectGatewaySince recovers publications with --since and prints
// whole push lines with --json.
func TestConnectGatewaySince(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	epoch := gw.publish(t, "demo:log", `{"n":1}`)
	gw.publish(t, "demo:log", `{"n":2}`)
	gw.publish(t, "demo:log", `"three"`)

	code, stdout, stderr := execute(t, "connect", "--channel", "demo:log", "--since", "1:"+epoch, "--once", gw.ws)
	if code != exitOK || stdout != `{"n":2}`+"\n" || stderr != "" {
		t.Errorf("--since 1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = execute(t, "connect", "--channel", "demo:log", "--since", "2:"+epoch, "--once", "--json", gw.ws)
	want := `{"push":"pub","channel":"demo:log","offset":3,"epoch":"` + epoch + `","data":"three"}` + "\n"
	if code != exitOK || stdout != want || stderr != "" {
		t.Errorf("--since 2 --json: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
	}

	// From another epoch nothing can be recovered: a warning, then the
	// next live publication.
	gw.waitSubscriptions(t, 0) // the connections before have gone
	var out, errOut lockedBuffer
	exit := startCommand(t, testContext(t), strings.NewReader(""), &out, &errOut,
		"connect", "--channel", "demo:log", "--since", "1:other", "--once", gw.ws)
	gw.waitSubscriptions(t, 1)
	gw.publish(t, "demo:log", `{"n":4}`)
	if code := waitExit(t, exit); code != exitOK || out.String() != `{"n":4}`+"\n" {
		t.Errorf("--since 1:other: exit %d, stdout %q, stderr %q", code, &out, &errOut)
	}
	if !strings.Contains(errOut.String(), "demo:log: could not recover every publication") {
		t.Errorf("no warning about the recovery in stderr %q", &errOut)
	}
}

// TestConnectGatewayPipe publishes the lines of stdin and prints the
// publications, its own included, until interrupted.
func TestConnectGatewayPipe(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	for _, kind := range stdinKinds {
		t.Run(kind.name, func(t *testing.T) {
			channel := "demo:pipe" + kind.name
			r, w := kind.pipe(t)
			defer r.Close()
			defer w.Close()
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			var stdout, stderr lockedBuffer
			exit := startCommand(t, ctx, r, &stdout, &stderr, "connect", "--channel", channel, gw.ws)
			io.WriteString(w, "{\"text\": \"hi\"}\nplain text\n\n42\n")
			want := `{"text":"hi"}` + "\n" + `"plain text"` + "\n42\n"
			waitFor(t, &stdout, want)

			// stdin ends; duplex goes on printing publications.
			w.Close()
			time.Sleep(100 * time.Millisecond)
			gw.publish(t, channel, `{"from":"api"}`)
			want += `{"from":"api"}` + "\n"
			waitFor(t, &stdout, want)
			select {
			case code := <-exit:
				t.Fatalf("exited with %d when stdin ended", code)
			default:
			}
			cancel() // SIGINT
			if code := waitExit(t, exit); code != exitOK {
				t.Errorf("exit %d, stderr %q", code, &stderr)
			}
			if stdout.String() != want || stderr.String() != "" {
				t.Errorf("stdout %q, want %q; stderr %q", &stdout, want, &stderr)
			}
		})
	}
}

// TestConnectGatewayWait checks that with --wait duplex closes once stdin
// has ended and the replies have come, and that error replies go to
// stderr with their code.
func TestConnectGatewayWait(t *testing.T) {
	cfg := demoGatewayConfig()
	cfg.Namespaces = append(cfg.Namespaces, gateway.Namespace{Name: "feed", Anonymous: true}) // only the backend publishes
	gw := startTestGateway(t, cfg)

	code, stdout, stderr := runCLI(t, strings.NewReader("one\n{\"two\":2}\n"), "connect", "--channel", "demo:w", "--wait", "0", gw.ws)
	if code != exitOK || stdout != `"one"`+"\n"+`{"two":2}`+"\n" || stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, stdout, stderr = runCLI(t, strings.NewReader("x\n"), "connect", "--channel", "feed:a", "--wait", "0", gw.ws)
	if code != exitOK || stdout != "" || !strings.Contains(stderr, "publish to feed:a failed: permission denied (error 103)") {
		t.Errorf("publishing where only the backend may: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestConnectGatewayFailures(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	echo := startEcho(t, &EchoServer{})
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"UnknownNamespace", []string{"--channel", "demo:ok", "--channel", "nope:x", gw.ws}, exitError,
			"duplex: subscribe to nope:x: unknown namespace or invalid channel (error 102)\n"},
		{"BadToken", []string{"--channel", "demo:x", "--token", "not-a-jwt", gw.ws}, 3, "closed by peer with 4501"},
		{"NotAGateway", []string{"--channel", "demo:x", echo.url}, exitError, "did not accept the subprotocol duplex.v1.json"},
		{"NoServer", []string{"--channel", "demo:x", "ws://127.0.0.1:1"}, exitError, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, strings.NewReader(""), append([]string{"connect", "--once"}, tc.args...)...)
			if code != tc.status || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tc.status, tc.stderr)
			}
		})
	}
}

// TestConnectGatewayShutdown checks that the gateway's drain (1001) gives
// exit status 11, as for any server.
func TestConnectGatewayShutdown(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	var stdout, stderr lockedBuffer
	exit := startCommand(t, testContext(t), strings.NewReader(""), &stdout, &stderr, "connect", "--channel", "demo:x", "--once", gw.ws)
	gw.waitSubscriptions(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := gw.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, exit); code != 11 || !strings.Contains(stderr.String(), "1001") {
		t.Errorf("exit %d, stderr %q; want 11 (1001)", code, &stderr)
	}
}

// TestConnectGatewayTrace checks that --trace gives the protocol's lines,
// with the token hidden.
func TestConnectGatewayTrace(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	var stdout, stderr lockedBuffer
	exit := startCommand(t, testContext(t), strings.NewReader(""), &stdout, &stderr,
		"connect", "--trace", "--channel", "demo:t", "--once", gw.ws)
	gw.waitSubscriptions(t, 1)
	gw.publish(t, "demo:t", `{"n":1}`)
	if code := waitExit(t, exit); code != exitOK || stdout.String() != `{"n":1}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, &stdout, &stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m) << Sec-WebSocket-Protocol: duplex\.v1\.json$`),
		regexp.MustCompile(`(?m) >> message: text \d+ B\n.* >>   \{"id":1,"method":"connect","name":"duplex-cli"\}\n` +
			`.* >>   \{"id":2,"method":"subscribe","channel":"demo:t"\}$`),
		regexp.MustCompile(`(?m) <<   \{"id":2,"result":\{"recoverable":true\}\}$`), // no stream yet: no epoch
		regexp.MustCompile(`(?m) <<   \{"push":"pub","channel":"demo:t","offset":1,"epoch":"[^"]+","data":\{"n":1\}\}$`),
		regexp.MustCompile(`(?m) >> close fin masked key=[0-9a-f]{8} len=2 code=1000 \(NormalClosure\)$`),
	} {
		if !want.MatchString(stderr.String()) {
			t.Errorf("trace lacks %v:\n%s", want, &stderr)
		}
	}

	code, _, errOut := runCLI(t, strings.NewReader(""), "connect", "--trace", "--channel", "demo:t", "--token", "secret-token", gw.ws)
	if code != 3 || !strings.Contains(errOut, `>>   {"id":1,"method":"connect","token":"[12 bytes hidden]","name":"duplex-cli"}`) ||
		strings.Contains(errOut, "secret-token") {
		t.Errorf("with a token the gateway refuses: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestConnectGatewayInteractive runs gateway mode in a terminal.
func TestConnectGatewayInteractive(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	p := openPTY(t)
	var stderr lockedBuffer
	exit := startCommand(t, testContext(t), p.tty, p.tty, &stderr, "connect", "--channel", "demo:room", gw.ws)
	waitFor(t, &p.screen, "Ctrl-D closes")
	screen := p.screen.String()
	for _, want := range []string{
		"connected to " + gw.ws + " (subprotocol duplex.v1.json)",
		"connected anonymously (client ",
		"subscribed to demo:room at offset 0 (epoch ",
		"type JSON or text and Enter to publish to demo:room",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q", want)
		}
	}

	gw.publish(t, "demo:room", `{"n":1}`)
	waitFor(t, &p.screen, `< demo:room #1 from the API: {"n":1}`)
	for _, step := range []struct{ typed, want string }{
		{"hello", `< demo:room #2 from anonymous `},
		{`/publish demo:other {"x": 1}`, "published to demo:other at offset 1"},
		{"/publish", "/publish <channel> <data>"},
		{"/publish nope:x 1", "publish to nope:x failed: unknown namespace or invalid channel (error 102)"},
		{"/ping", "pong after "},
		{"/bogus", "unknown command /bogus"},
		{"/help", "a line publishes to demo:room | /publish <channel> <data>"},
		{"//slash", `: "/slash"`},
	} {
		p.typeLine(t, step.typed)
		waitFor(t, &p.screen, step.want)
	}
	if !regexp.MustCompile(`\d\d:\d\d:\d\d\.\d{3} < demo:room #2 from anonymous \S+: "hello"\r\n`).MatchString(p.screen.String()) {
		t.Error("no line with the time for the publication typed")
	}
	io.WriteString(p.master, "\x04") // Ctrl-D
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("Ctrl-D: exit %d, stderr %q", code, &stderr)
	}
	waitFor(t, &p.screen, "closed with 1000 (NormalClosure); the server answered")
}

func TestConnectGatewayUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"connect", "--token", "t", "ws://a"}, "--token needs --channel"},
		{[]string{"connect", "--since", "1:e", "ws://a"}, "--since needs --channel"},
		{[]string{"connect", "--json", "ws://a"}, "--json needs --channel"},
		{[]string{"connect", "--channel", "", "ws://a"}, "--channel must not be empty"},
		{[]string{"connect", "--channel", "a", "--binary", "ws://a"}, "--binary does not go with --channel"},
		{[]string{"connect", "--channel", "a", "--channel", "b", "--since", "1:e", "ws://a"}, "--since goes with one --channel"},
		{[]string{"connect", "--channel", "a", "--since", "e", "ws://a"}, "--since wants offset:epoch"},
		{[]string{"connect", "--channel", "a", "ftp://a"}, "URL must start with ws:// or wss://"},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}

// TestGatewayCommandsHelp checks the help of the gateway-aware commands
// and flags.
func TestGatewayCommandsHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"publish", "Publish to channels of a Duplex gateway"}},
		{[]string{"connect", "--help"}, []string{
			"Gateway mode (--channel)", "duplex.v1.json", "--channel channel", "--token token", "--since offset:epoch",
			"--json", "duplex connect --channel demo:chat ws://127.0.0.1:8080", "(error 103)", "4501 unauthorized",
		}},
		{[]string{"publish", "--help"}, []string{
			"duplex publish DATA|- [flags]", "/api/publish", "/api/broadcast", "DUPLEX_API_KEY", "offset=N epoch=E",
			"--channel channel", "--url URL", `(default "http://127.0.0.1:8080")`, "--api-key key", "--json", "--timeout duration",
			"Exit status:", `duplex publish --channel demo:chat '{"text":"hi"}'`,
		}},
		{[]string{"bench", "--help"}, []string{
			"--mode mode", "--mode subscribe", "--channel channel", "--channel-prefix P", "--channels-per-conn N",
			"--rate rate", "--api-url URL", "--api-key key", "--token token", "10,000 channels of 1 subscriber",
			"/api/broadcast", "lost", "duplex bench --mode subscribe -c 1000",
		}},
	} {
		code, stdout, stderr := runCLI(t, strings.NewReader(""), tc.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: output lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		if strings.Contains(stdout, "--ramp-rate float") {
			t.Errorf("%q: the hidden --ramp-rate shows:\n%s", tc.args, stdout)
		}
		for i, line := range strings.Split(stdout, "\n") {
			if len([]rune(line)) > 110 && !strings.HasPrefix(line, "  duplex ") && !strings.HasPrefix(line, "  DUPLEX_") {
				t.Errorf("%q: line %d is %d characters long: %q", tc.args, i+1, len([]rune(line)), line)
			}
		}
	}
}
