package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// startTool builds duplex and runs it with args, which must make it print
// "duplex COMMAND listening on ws://ADDR" first, and waits for that line.
// The process is killed when the test ends, if it is still running.
func startTool(t *testing.T, args ...string) *process {
	t.Helper()
	return startDuplex(t, t.Context(), buildDuplex(t, buildContext(t)), `^duplex \w+ listening on (wss?://127\.0\.0\.1:\d+)$`, args...)
}

// buildContext bounds building the binary, which takes more than
// testTimeout when the build cache is cold and the machine busy.
func buildContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// typeLine writes line and a newline to the tool's stdin.
func (p *process) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the tool to exit and returns its exit code.
func (p *process) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("duplex still running after %v", within)
		return -1
	}
}

// readText reads a message from c and checks it is the text want.
func readText(t *testing.T, ctx context.Context, c *websocket.Conn, want string) {
	t.Helper()
	typ, p, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(p) != want {
		t.Fatalf("read %v %q %v; want text %q", typ, p, err, want)
	}
}

func writeText(t *testing.T, ctx context.Context, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatal(err)
	}
}

// dialRefused dials url and checks that the handshake is refused with
// status.
func dialRefused(t *testing.T, ctx context.Context, url string, status int) {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("dial %s: accepted, want %d", url, status)
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("dial %s: %v (response %v), want %d", url, err, resp, status)
	}
}

// TestListenTwoClients runs duplex listen with two clients: each one's
// messages are printed with its number, a line typed reaches both, /to N
// reaches N alone, a client's close is printed with its code, and SIGTERM
// closes the rest with 1001.
func TestListenTwoClients(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startTool(t, "listen", "--listen", "127.0.0.1:0")

	c1 := dial(t, ctx, p.addr+"/one?x=1", nil)
	waitFor(t, p.stdout, "[1] connected from 127.0.0.1:")
	c2 := dial(t, ctx, p.addr+"/two", nil)
	waitFor(t, p.stdout, "[2] connected from 127.0.0.1:")
	writeText(t, ctx, c1, "from one")
	writeText(t, ctx, c2, "from two")
	if err := c2.Write(ctx, websocket.MessageBinary, []byte{0, 0xff}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.stdout, "[1] < text 8 B: from one")
	waitFor(t, p.stdout, "[2] < text 8 B: from two")
	waitFor(t, p.stdout, "[2] < binary 2 B: 00ff")

	p.typeLine(t, "to everyone")
	readText(t, ctx, c1, "to everyone")
	readText(t, ctx, c2, "to everyone")
	waitFor(t, p.stdout, "[1 2] > text 11 B: to everyone")

	p.typeLine(t, "/to 2 only two")
	p.typeLine(t, "/to 1 only one")
	readText(t, ctx, c2, "only two")
	readText(t, ctx, c1, "only one") // not "only two": /to 2 did not reach 1
	p.typeLine(t, "/binary 01fe")
	for _, c := range []*websocket.Conn{c1, c2} {
		if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || string(got) != "\x01\xfe" {
			t.Fatalf("/binary: %v %q %v", typ, got, err)
		}
	}
	p.typeLine(t, "/to 7 nobody")
	waitFor(t, p.stderr, "no client 7")

	if err := c2.Close(4000, "bye"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.stdout, `[2] disconnected: the client closed with 4000 "bye"`)
	p.typeLine(t, "after two left")
	readText(t, ctx, c1, "after two left")
	waitFor(t, p.stdout, "[1] > text 14 B: after two left")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c1.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after SIGTERM: %v, want close 1001", err)
	}
	if code := p.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("after SIGTERM: exit %d, want 0", code)
	}
	waitFor(t, p.stdout, `[1] closed with 1001 (GoingAway) "server shutting down"`)
}

// TestListenCloseCommand checks that /close N closes client N alone, with
// the code and reason typed.
func TestListenCloseCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startTool(t, "listen", "--listen", "127.0.0.1:0")
	c1 := dial(t, ctx, p.addr, nil)
	waitFor(t, p.stdout, "[1] connected")
	c2 := dial(t, ctx, p.addr, nil)
	waitFor(t, p.stdout, "[2] connected")
	p.typeLine(t, "/close 1 4001 enough")
	var ce *websocket.CloseError
	if _, _, err := c1.Read(ctx); websocket.CloseStatus(err) != 4001 || !errors.As(err, &ce) || ce.Reason != "enough" {
		t.Fatalf("/close 1 4001 enough: %v", err)
	}
	waitFor(t, p.stdout, `[1] closed with 4001 "enough"; the client answered`)
	p.typeLine(t, "still here")
	readText(t, ctx, c2, "still here")
	waitFor(t, p.stdout, "[2] > text 10 B: still here")
}

// TestListenOnce checks --once: a second client is refused with 503 while
// the first is connected, and duplex exits 0 when the first leaves.
func TestListenOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startTool(t, "listen", "--listen", "127.0.0.1:0", "--once")
	c := dial(t, ctx, p.addr, nil)
	waitFor(t, p.stdout, "[1] connected")
	dialRefused(t, ctx, p.addr, http.StatusServiceUnavailable)
	writeText(t, ctx, c, "only me")
	waitFor(t, p.stdout, "[1] < text 7 B: only me")
	select {
	case <-p.exited:
		t.Fatal("duplex exited while its client was connected")
	default:
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("--once: exit %d after the client left, want 0", code)
	}
	if !strings.Contains(p.stdout.String(), `[1] disconnected: the client closed with 1000 (NormalClosure) ""`) {
		t.Errorf("the disconnect is not printed:\n%s", p.stdout)
	}
}

// TestListenTerminal types on a terminal, in its usual cooked mode, where
// Enter arrives as "\n": each line reaches the client.
func TestListenTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	term := openPTY(t)
	bin := buildDuplex(t, buildContext(t))
	cmd := exec.Command(bin, "listen", "--listen", "127.0.0.1:0")
	var out lockedBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term.tty, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	waitFor(t, &out, "listening on ws://")
	url := "ws://" + regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(out.String())
	c := dial(t, ctx, url, nil)
	waitFor(t, &out, "[1] connected")
	term.typeLine(t, "typed on a terminal")
	readText(t, ctx, c, "typed on a terminal")
	term.typeLine(t, "/to 1 again")
	readText(t, ctx, c, "again")
	cmd.Process.Signal(syscall.SIGINT)
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after SIGINT: %v, want close 1001", err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("after SIGINT: %v, want exit 0", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("duplex still running after SIGINT")
	}
}

// TestListenTLSCompressSubprotocol runs duplex listen with
// --tls-self-signed, --compress and --subprotocol: a client that checks
// the certificate by the fingerprint printed connects over TLS, agrees on
// permessage-deflate and the subprotocol, and talks both ways.
func TestListenTLSCompressSubprotocol(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startTool(t, "listen", "--listen", "127.0.0.1:0", "--tls-self-signed", "--compress", "context", "--subprotocol", "chat.v2")
	if !strings.HasPrefix(p.addr, "wss://") {
		t.Fatalf("with --tls-self-signed the address is %s, want wss://", p.addr)
	}
	waitFor(t, p.stdout, "SHA-256 fingerprint ")
	m := regexp.MustCompile(`SHA-256 fingerprint ([0-9A-F:]+)\n`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no fingerprint line:\n%s", p.stdout)
	}
	tlsConfig := &tls.Config{
		InsecureSkipVerify: true, // checked below, by the fingerprint printed
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := fingerprint(cs.PeerCertificates[0].Raw); got != m[1] {
				return fmt.Errorf("certificate fingerprint %s, printed %s", got, m[1])
			}
			return nil
		},
	}
	c, resp, err := websocket.Dial(ctx, p.addr+"/secure", &websocket.DialOptions{
		TLSConfig:    tlsConfig,
		Subprotocols: []string{"chat.v1", "chat.v2"},
		Compression:  websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Errorf("Sec-WebSocket-Extensions %q, want permessage-deflate", ext)
	}
	if c.Subprotocol() != "chat.v2" {
		t.Errorf("subprotocol %q, want chat.v2", c.Subprotocol())
	}
	waitFor(t, p.stdout, "[1] connected from 127.0.0.1:")
	waitFor(t, p.stdout, ": /secure, subprotocol chat.v2\n")
	msg := strings.Repeat("compressed both ways ", 50)
	writeText(t, ctx, c, msg)
	waitFor(t, p.stdout, fmt.Sprintf("[1] < text %d B: compressed both ways", len(msg)))
	p.typeLine(t, msg)
	readText(t, ctx, c, msg)
}

func TestListenUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"takes no arguments", []string{"listen", "extra"}},
		{"--read-limit must be", []string{"listen", "--read-limit", "0"}},
		{"--close-timeout must be positive", []string{"listen", "--close-timeout", "0s"}},
		{"exclude each other", []string{"listen", "--origin", "a.example", "--insecure-origin"}},
		{"--compress must be off, no-context or context", []string{"listen", "--compress", "always"}},
		{"--server-window-bits needs --compress", []string{"listen", "--server-window-bits", "9"}},
		{"--tls-cert and --tls-key go together", []string{"listen", "--tls-cert", "c.pem"}},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}

// TestListenHelp checks that the help states the commands typed and each
// flag's default.
func TestListenHelp(t *testing.T) {
	code, stdout, stderr := execute(t, "listen", "--help")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"/to N <line>", "/binary <hex|base64>", "/close N [code [reason]]", "/list", "//text",
		"--once", `(default "127.0.0.1:9001")`, "(default 1048576)", "(default 5s)",
		"--subprotocol", "--origin", "--insecure-origin", "cross-site WebSocket hijacking",
		"--tls-cert", "--tls-self-signed", "--compress", "1001",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("listen --help lacks %q", want)
		}
	}
}

// nodeClient is a client written with Node's ws (peers/node_modules): it
// sends "from node", prints the first message it gets, and closes with
// 4001 "node done".
const nodeClient = `
const WebSocket = require("ws");
const ws = new WebSocket(process.argv[1]);
ws.on("open", () => ws.send("from node"));
ws.on("message", (data, isBinary) => {
  console.log((isBinary ? "binary " : "text ") + data.toString());
  ws.close(4001, "node done");
});
ws.on("error", (err) => { console.error(err.message); process.exit(1); });
`

// TestListenNodeClient runs a client of another implementation, Node's
// ws, against duplex listen: its message is printed, a typed line reaches
// it, and its close code is printed.
func TestListenNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	modules, _ := filepath.Abs("../../peers/node_modules")
	if _, statErr := os.Stat(filepath.Join(modules, "ws")); err != nil || statErr != nil {
		t.Skip("no node, or no ws in peers/node_modules (npm ci in peers)")
	}
	p := startTool(t, "listen", "--listen", "127.0.0.1:0")
	ctx := testContext(t)
	client := exec.CommandContext(ctx, node, "-e", nodeClient, p.addr+"/node")
	client.Env = append(os.Environ(), "NODE_PATH="+modules)
	var out lockedBuffer
	client.Stdout, client.Stderr = &out, &out
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.stdout, "[1] < text 9 B: from node")
	p.typeLine(t, "to node")
	if err := client.Wait(); err != nil {
		t.Fatalf("node client: %v\n%s", err, &out)
	}
	if out.String() != "text to node\n" {
		t.Errorf("the node client printed %q, want %q", &out, "text to node\n")
	}
	waitFor(t, p.stdout, `[1] disconnected: the client closed with 4001 "node done"`)
}
