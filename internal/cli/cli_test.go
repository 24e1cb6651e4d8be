package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

func execute(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Execute(testContext(t), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{
			[]string{"--help"},
			[]string{"Duplex: WebSocket toolkit", "echo", "Run a WebSocket echo server", "duplex echo --listen 127.0.0.1:9001", "--version"},
		},
		{
			[]string{"echo", "--help"},
			[]string{
				"duplex echo [flags]", "duplex echo --listen 127.0.0.1:9001",
				"--listen", `(default "127.0.0.1:9001")`,
				"--read-limit", "67108864 = 64 MiB", "1009",
				"--subprotocol", "--origin", "--insecure-origin", "cross-site WebSocket hijacking",
				"--close-timeout", "(default 5s)",
				"SIGTERM", "1001",
			},
		},
	} {
		code, stdout, stderr := execute(t, tc.args...)
		if code != 0 || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: output lacks %q:\n%s", tc.args, w, stdout)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := execute(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "duplex ") {
		t.Errorf("exit %d, output %q", code, stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ech"}, `unknown command "ech"; did you mean echo?`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"echo", "extra"}, "takes no arguments"},
		{[]string{"echo", "--read-limit", "64MiB"}, `invalid argument "64MiB"`},
		{[]string{"echo", "--read-limit", "0"}, "--read-limit must be"},
		{[]string{"echo", "--read-limit", "-2"}, "--read-limit must be"},
		{[]string{"echo", "--close-timeout", "0s"}, "--close-timeout must be positive"},
		{[]string{"echo", "--origin", "a.example", "--insecure-origin"}, "exclude each other"},
	} {
		code, _, stderr := execute(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help' for usage") {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

func TestEchoCommandListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, stdout, stderr := execute(t, "echo", "--listen", ln.Addr().String())
	if code != exitError || stdout != "" || !strings.Contains(stderr, "address already in use") {
		t.Errorf("listening on a busy address: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestEchoBinary runs the real binary: it prints its address, echoes,
// enforces --read-limit, and on SIGTERM closes with 1001 and exits 0.
func TestEchoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startBinary(t, ctx, `^duplex echo listening on (ws://127\.0\.0\.1:\d+)$`,
		"echo", "--listen", "127.0.0.1:0", "--read-limit", "4096", "--close-timeout", "2s")
	url, cmd, exited := p.addr, p.cmd, p.exited

	c := dial(t, ctx, url+"/chat", nil)
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(got) != "hello" {
		t.Fatalf("echo: %v %q %v", typ, got, err)
	}

	big := dial(t, ctx, url, nil)
	if err := big.Write(ctx, websocket.MessageBinary, make([]byte, 4097)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := big.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("message over --read-limit: %v, want close %d", err, websocket.StatusMessageTooBig)
	}

	readErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		readErr <- err
	}()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after SIGTERM: %v, want close %d", err, websocket.StatusGoingAway)
	}
	select {
	case <-exited:
		if p.waitErr != nil {
			t.Errorf("after SIGTERM: %v, want exit status 0", p.waitErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("duplex still running 5s after SIGTERM")
	}

	log := p.stderr.String()
	for _, want := range []string{
		"path=/chat",
		`msg="connection closed"`, "code=1009", `code=1001 reason="server shutting down"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
}

// process is a duplex binary run by a test, with all its output.
type process struct {
	cmd     *exec.Cmd
	addr    string // the group of firstLine in its first line of output
	stdin   io.WriteCloser
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	exited  chan struct{} // closed when it exited
	waitErr error         // its exit status, once exited is closed
}

// startBinary builds duplex, runs it with args, and waits for its first
// line of output to match firstLine, whose group is the address it
// listens on. The process is killed when the test ends.
func startBinary(t *testing.T, ctx context.Context, firstLine string, args ...string) *process {
	t.Helper()
	return startDuplex(t, ctx, buildDuplex(t, ctx), firstLine, args...)
}

// startDuplex runs the duplex binary bin with args until the test ends
// (or ctx does), and waits for its first line of output to match
// firstLine, whose group is returned as addr.
func startDuplex(t *testing.T, ctx context.Context, bin, firstLine string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.CommandContext(ctx, bin, args...), stdout: new(lockedBuffer), stderr: new(lockedBuffer), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = time.Second
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("duplex %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	re := regexp.MustCompile(firstLine)
	deadline := time.Now().Add(testTimeout)
	for {
		if line, _, ok := strings.Cut(p.stdout.String(), "\n"); ok {
			m := re.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("duplex %s: first line %q does not match %q", strings.Join(args, " "), line, firstLine)
			}
			p.addr = m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("duplex %s exited before its first line: %v\n%s", strings.Join(args, " "), p.waitErr, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("duplex %s printed no first line", strings.Join(args, " "))
		}
	}
}

// buildDuplex builds cmd/duplex into a temporary directory.
func buildDuplex(t *testing.T, ctx context.Context) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "duplex")
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/duplexws/duplex/cmd/duplex").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// firstLineWriter is a writer that sends the first line written to it on line
// and discards the rest.
type firstLineWriter struct {
	line chan string
	mu   sync.Mutex
	buf  []byte
	sent bool
}

func (w *firstLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if line, _, ok := bytes.Cut(w.buf, []byte("\n")); ok {
		w.line <- string(line)
		w.sent = true
	}
	return len(p), nil
}

// wantUsageError runs the command line args and checks that it fails as a
// usage error: exit 2, nothing on stdout, and want and the pointer to
// --help on stderr.
func wantUsageError(t *testing.T, want string, args ...string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, strings.NewReader(""), args...)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, want) || !strings.Contains(stderr, "--help' for usage") {
		t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, stdout, stderr, want)
	}
}
