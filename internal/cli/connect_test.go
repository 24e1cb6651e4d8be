package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// runCLI runs duplex in-process with stdin, as a user would from a shell,
// and returns its exit status and output.
func runCLI(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut lockedBuffer
	code = executeWithInput(testContext(t), args, stdin, &out, &errOut)
	return code, out.String(), errOut.String()
}

// startCommand runs duplex in-process in the background and returns its
// exit status on a channel.
func startCommand(t *testing.T, ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, args ...string) <-chan int {
	t.Helper()
	exit := make(chan int, 1)
	go func() { exit <- executeWithInput(ctx, args, stdin, stdout, stderr) }()
	return exit
}

// waitExit waits for a command started by startCommand to exit.
func waitExit(t *testing.T, exit <-chan int) int {
	t.Helper()
	select {
	case code := <-exit:
		return code
	case <-time.After(testTimeout):
		t.Fatal("duplex did not exit")
		return -1
	}
}

// waitFor waits until buf contains want.
func waitFor(t *testing.T, buf *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%s", want, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startCloser runs a WebSocket server that reads one message on each
// connection and then closes it with code, or, when code is 0, drops it
// without a close frame.
func startCloser(t *testing.T, code websocket.StatusCode) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if _, _, err := c.Read(r.Context()); err != nil {
			return
		}
		if code != 0 {
			c.Close(code, "bye")
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestConnectOnce(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	for _, tc := range []struct {
		args        []string
		stdin, want string
	}{
		{nil, "hi\n", "hi\n"},
		{nil, "two\nlines\r\n", "two\nlines\n"},
		{nil, "", "\n"},
		{[]string{"--binary"}, "hi", "6869\n"},
	} {
		args := append(append([]string{"connect", "--once"}, tc.args...), srv.url)
		code, stdout, stderr := runCLI(t, strings.NewReader(tc.stdin), args...)
		if code != exitOK || stdout != tc.want || stderr != "" {
			t.Errorf("%q with stdin %q: exit %d, stdout %q, stderr %q; want exit 0 and %q", args, tc.stdin, code, stdout, stderr, tc.want)
		}
	}
}

// blockingPipe returns a pipe whose read end is in blocking mode, as a
// pipe that a shell hands a process as its stdin is.
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "stdin"), os.NewFile(uintptr(fds[1]), "stdin-writer")
}

// stdinKinds are the pipes a test gives duplex connect as stdin: one Go
// reads through its poller, and a blocking one, which duplex opens again to
// be able to stop reading it.
var stdinKinds = []struct {
	name string
	pipe func(t *testing.T) (r, w *os.File)
}{
	{"PollablePipe", func(t *testing.T) (*os.File, *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}},
	{"BlockingPipe", blockingPipe},
}

func TestConnectPipe(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	for _, kind := range stdinKinds {
		t.Run(kind.name, func(t *testing.T) {
			r, w := kind.pipe(t)
			defer r.Close()
			defer w.Close()
			var stdout, stderr lockedBuffer
			exit := startCommand(t, testContext(t), r, &stdout, &stderr, "connect", "--wait", "0", srv.url)
			io.WriteString(w, "a\nb\n\n")
			waitFor(t, &stdout, "a\nb\n\n")
			io.WriteString(w, "c\r\n")
			waitFor(t, &stdout, "c\n")
			w.Close()
			if code := waitExit(t, exit); code != exitOK {
				t.Errorf("exit %d, stderr %q", code, &stderr)
			}
			if got, want := stdout.String(), "a\nb\n\nc\n"; got != want {
				t.Errorf("stdout %q, want %q", got, want)
			}
			if stderr.String() != "" {
				t.Errorf("stderr %q", &stderr)
			}
		})
	}
}

func TestPipeLines(t *testing.T) {
	read := pipeLines(strings.NewReader("a\r\n\nb\nlast"))
	var got []string
	for {
		line, err := read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line)
	}
	if want := []string{"a", "", "b", "last"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestConnectPipeServerCloses checks that duplex connect ends when the
// server closes while stdin is still open, with the documented status.
func TestConnectPipeServerCloses(t *testing.T) {
	for _, kind := range stdinKinds {
		t.Run(kind.name, func(t *testing.T) {
			srv := startEcho(t, &EchoServer{})
			r, w := kind.pipe(t)
			defer r.Close()
			defer w.Close()
			var stdout, stderr lockedBuffer
			exit := startCommand(t, testContext(t), r, &stdout, &stderr, "connect", srv.url)
			io.WriteString(w, "ping\n")
			waitFor(t, &stdout, "ping\n")
			if err := srv.stop(); err != nil { // closes with 1001
				t.Fatal(err)
			}
			if code := waitExit(t, exit); code != 11 {
				t.Errorf("exit %d, want 11 (1001); stderr %q", code, &stderr)
			}
			if want := "duplex: websocket: closed by peer with 1001 (GoingAway): server shutting down\n"; stderr.String() != want {
				t.Errorf("stderr %q, want %q", &stderr, want)
			}
		})
	}
}

func TestConnectExitStatus(t *testing.T) {
	for _, tc := range []struct {
		code   websocket.StatusCode
		status int
		stderr string
	}{
		{websocket.StatusNormalClosure, 0, ""},
		{websocket.StatusGoingAway, 11, "closed by peer with 1001 (GoingAway): bye"},
		{websocket.StatusPolicyViolation, 18, "1008"},
		{websocket.StatusInternalError, 21, "1011"},
		{3000, 3, "3000"},
		{4999, 3, "4999"},
		{0, 1, "connection lost without a close frame"},
	} {
		url := startCloser(t, tc.code)
		code, stdout, stderr := runCLI(t, strings.NewReader("x"), "connect", "--once", url)
		if code != tc.status || stdout != "" || !strings.Contains(stderr, tc.stderr) || (tc.stderr == "") != (stderr == "") {
			t.Errorf("server closing with %d: exit %d, stdout %q, stderr %q; want exit %d and %q",
				tc.code, code, stdout, stderr, tc.status, tc.stderr)
		}
	}
}

func TestCloseExitStatus(t *testing.T) {
	for code, want := range map[websocket.StatusCode]int{
		1000: 0, 1001: 11, 1002: 12, 1003: 13, 1005: 15, 1007: 17, 1009: 19, 1015: 25,
		3000: 3, 4000: 3, 4999: 3, 1016: 1, 2000: 1, 5000: 1,
	} {
		if got := closeExitStatus(code); got != want {
			t.Errorf("closeExitStatus(%d) = %d, want %d", code, got, want)
		}
	}
}

func TestConnectFailures(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	refuser := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no WebSocket for you", http.StatusForbidden)
	}))
	defer refuser.Close()

	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"ReadLimit", []string{"--read-limit", "10", srv.url}, strings.Repeat("x", 11), "read limit of 10 bytes exceeded"},
		{"Refused", []string{"ws" + strings.TrimPrefix(refuser.URL, "http")}, "x", `403 Forbidden: "no WebSocket for you"`},
		{"NoServer", []string{"ws://127.0.0.1:1"}, "x", "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"connect", "--once"}, tc.args...)
			code, stdout, stderr := runCLI(t, strings.NewReader(tc.stdin), args...)
			if code != exitError || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestConnectTrace(t *testing.T) {
	srv := startEcho(t, &EchoServer{Accept: websocket.AcceptOptions{
		Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover},
	}})
	msg := strings.Repeat("compressible ", 40) // 520 bytes
	code, stdout, stderr := runCLI(t, strings.NewReader(msg), "connect", "--once", "--trace", "--compress", "context",
		"-H", "Authorization: Bearer secret", srv.url+"/chat")
	if code != exitOK || stdout != msg+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3} -- connected to 127\.0\.0\.1:\d+ from 127\.0\.0\.1:\d+$`),
		regexp.MustCompile(`(?m) >> GET /chat HTTP/1\.1$`),
		regexp.MustCompile(`(?m) >> Authorization: \[13 bytes hidden\]$`),
		regexp.MustCompile(`(?m) >> Sec-WebSocket-Extensions: permessage-deflate`),
		regexp.MustCompile(`(?m) << HTTP/1\.1 101 Switching Protocols$`),
		regexp.MustCompile(`(?m) << Sec-WebSocket-Extensions: permessage-deflate`),
		regexp.MustCompile(`(?m) >> text fin rsv1 masked key=[0-9a-f]{8} len=\d\d \(compressed\)$`),
		regexp.MustCompile(`(?m) >> message: text 520 B$`),
		regexp.MustCompile(`(?m) << text fin rsv1 len=\d\d \(compressed\)$`),
		regexp.MustCompile(`(?m) << message: text 520 B \(\d\d B on the wire, compressed\)$`),
		regexp.MustCompile(`(?m) >> close fin masked key=[0-9a-f]{8} len=2 code=1000 \(NormalClosure\)$`),
		regexp.MustCompile(`(?m) << close fin len=2 code=1000 \(NormalClosure\)$`),
		regexp.MustCompile(`(?m) -- connection closed: \d+ bytes sent, \d+ received$`),
	} {
		if !want.MatchString(stderr) {
			t.Errorf("trace lacks %v:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "secret") {
		t.Errorf("trace shows the Authorization header:\n%s", stderr)
	}
}

func TestConnectUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"connect"}, "takes one URL, got 0 arguments"},
		{[]string{"connect", "ws://a", "ws://b"}, "takes one URL, got 2 arguments"},
		{[]string{"connect", "ftp://a"}, "URL must start with ws:// or wss://"},
		{[]string{"connect", "ws://"}, "has no host"},
		{[]string{"connect", "-H", "NoColon", "ws://a"}, `-H wants "Name: value"`},
		{[]string{"connect", "-H", "Origin: x", "--origin", "y", "ws://a"}, "exclude each other"},
		{[]string{"connect", "--read-limit", "0", "ws://a"}, "--read-limit must be"},
		{[]string{"connect", "--compress", "max", "ws://a"}, "--compress must be"},
		{[]string{"connect", "--key", "k.pem", "ws://a"}, "--key needs --cert"},
		{[]string{"connect", "--proxy", "socks5://p:1080", "ws://a"}, "--proxy must be"},
		{[]string{"connect", "--handshake-timeout", "0s", "ws://a"}, "--handshake-timeout must be positive"},
		{[]string{"connect", "--wait", "-1s", "ws://a"}, "--wait must be"},
		{[]string{"bench"}, "takes one URL"},
		{[]string{"bench", "-c", "0", "ws://a"}, "--connections must be from 1"},
		{[]string{"bench", "-c", "100001", "ws://a"}, "--connections must be from 1"},
		{[]string{"bench", "--duration", "0s", "ws://a"}, "--duration must be positive"},
		{[]string{"bench", "--duration", "25h", "ws://a"}, "at most 24h"},
		{[]string{"bench", "--size", "-1", "ws://a"}, "--size must be"},
		{[]string{"bench", "--message-rate", "-1", "ws://a"}, "--message-rate must be"},
		{[]string{"bench", "--local-addrs", "2", "ws://example.com"}, "--local-addrs needs a server on a loopback address"},
		{[]string{"bench", "--local-addrs", "255", "ws://127.0.0.1"}, "--local-addrs must be from 0 to 254"},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}

func TestConnectAndBenchHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"connect", "Talk to a WebSocket server", "bench", "Load-test", "duplex connect ws://127.0.0.1:9001"}},
		{[]string{"connect", "--help"}, []string{
			"duplex connect URL [flags]", "echo hi | duplex connect --once ws://127.0.0.1:9001",
			"/ping", "/close [code] [reason]", "/binary <hex|base64>", "Ctrl-D",
			"pipe mode", "--wait", "--once", "--binary", "--trace", "opcode", "byte counts can be shown",
			"Exit status:", "10 + (code - 1000)", "3000 to 4999",
			`-H, --header "Name: value"`, "--origin URL", "--subprotocol name", "--compress mode",
			"--insecure", "--ca file", "--cert file", "--key file", "--proxy URL", "--read-limit bytes", "--ping-interval duration",
		}},
		{[]string{"bench", "--help"}, []string{
			"duplex bench URL [flags]", "-c, --connections N", "--connect-rate rate", "--size bytes", "--text",
			"--message-rate rate", "--messages N", "-d, --duration duration", "--local-addrs N", "127.0.0.N",
			"--progress duration", "--json", "p99.9", "errors by kind", "The exit status",
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
		for i, line := range strings.Split(stdout, "\n") {
			if len([]rune(line)) > 110 && !strings.HasPrefix(line, "  duplex ") {
				t.Errorf("%q: line %d is %d characters long: %q", tc.args, i+1, len([]rune(line)), line)
			}
		}
	}
}

// TestConnectBinary runs the real binary with a real pipe for stdin, as in
// the README: echo hi | duplex connect --once URL.
func TestConnectBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	srv := startEcho(t, &EchoServer{})

	cmd := exec.CommandContext(ctx, "sh", "-c", `echo hi | "$0" connect --once "$1"`, bin, srv.url)
	out, err := cmd.Output()
	if err != nil || string(out) != "hi\n" {
		t.Errorf("echo hi | duplex connect --once: %v, stdout %q", err, out)
	}

	// In a terminal, inherited in blocking mode as a shell hands it over.
	p := openPTY(t)
	var ttyStderr lockedBuffer
	cmd = exec.CommandContext(ctx, bin, "connect", srv.url)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.tty, p.tty, &ttyStderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &p.screen, "Ctrl-D closes")
	p.typeLine(t, "hi")
	waitFor(t, &p.screen, "< text 2 B: hi")
	io.WriteString(p.master, "\x04") // Ctrl-D
	if err := cmd.Wait(); err != nil {
		t.Errorf("interactive, after Ctrl-D: %v; stderr %q", err, &ttyStderr)
	}

	// Pipe mode, stdin left open: the server's close ends the command,
	// which must stop reading its stdin.
	cmd = exec.CommandContext(ctx, bin, "connect", srv.url)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "hello\n")
	waitFor(t, &stdout, "hello\n")
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 11 {
		t.Errorf("after the server closed with 1001: %v, exit %d, want 11; stderr %q", err, code, &stderr)
	}
}

func TestParseCloseArgs(t *testing.T) {
	for _, tc := range []struct {
		arg    string
		code   websocket.StatusCode
		reason string
		err    string
	}{
		{"", 1000, "", ""},
		{"4000", 4000, "", ""},
		{"1001  going away now ", 1001, "going away now", ""},
		{"abc", 0, "", `"abc" is not a code`},
		{"999", 0, "", "999 may not be sent"},
		{"1005", 0, "", "1005 may not be sent"},
		{"1000 " + strings.Repeat("r", 124), 0, "", "at most 123 bytes"},
	} {
		code, reason, err := parseCloseArgs(tc.arg)
		if code != tc.code || reason != tc.reason || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parseCloseArgs(%q) = %d, %q, %v; want %d, %q, %q", tc.arg, code, reason, err, tc.code, tc.reason, tc.err)
		}
	}
}

func TestDecodeBinary(t *testing.T) {
	for arg, want := range map[string]string{
		"0102ff":   "\x01\x02\xff",
		"01 02 ff": "\x01\x02\xff",
		"aGk=":     "hi",
		"aGk":      "hi",
		"_-8":      "\xff\xef",
		"":         "",
	} {
		if got, err := decodeBinary(arg); err != nil || string(got) != want {
			t.Errorf("decodeBinary(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	if _, err := decodeBinary("zz!"); err == nil {
		t.Error("decodeBinary(\"zz!\") succeeded")
	}
}
