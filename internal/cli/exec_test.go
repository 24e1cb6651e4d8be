package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// writeScript writes a /bin/sh script into a temporary directory and
// returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("duplex exec runs programs on Unix systems only")
	}
	path := filepath.Join(t.TempDir(), "program.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// startExec runs duplex exec with flags and the script body.
func startExec(t *testing.T, script string, flags ...string) *process {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	args := append([]string{"exec", "--listen", "127.0.0.1:0"}, flags...)
	return startTool(t, append(args, "--", writeScript(t, script))...)
}

// readClose reads from c until the connection ends and returns the close
// frame the server sent.
func readClose(t *testing.T, ctx context.Context, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

// processGone reports whether process pid has ended: it does not exist,
// or is a zombie no one has reaped yet.
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	return bytes.HasPrefix(bytes.TrimSpace(rest), []byte("Z"))
}

// waitGone waits up to within for each of pids to end.
func waitGone(t *testing.T, within time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still running %v after the end", pid, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// readPIDs reads a text message of process ids separated by spaces.
func readPIDs(t *testing.T, ctx context.Context, c *websocket.Conn) []int {
	t.Helper()
	_, p, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(p)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%q is not a list of process ids", p)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if processGone(pid) {
			t.Fatalf("process %d is not running to begin with", pid)
		}
	}
	return pids
}

// TestExecLines runs a line program: each line it writes is a text
// message, each message a line on its stdin; its stderr reaches duplex's
// with the connection's number; when it exits 0 the client is closed with
// 1000.
func TestExecLines(t *testing.T) {
	p := startExec(t, `echo ready
echo "on stderr" >&2
while read -r line; do
	[ "$line" = end ] && exit 0
	printf 'got %s\r\n' "$line"
done
`)
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	readText(t, ctx, c, "ready")
	for _, m := range []string{"one", "two words", "ünïcødé ✓"} {
		writeText(t, ctx, c, m)
		readText(t, ctx, c, "got "+m) // "\r\n" is a line end too
	}
	writeText(t, ctx, c, "three\nfour") // a message holding a newline is two lines
	readText(t, ctx, c, "got three")
	readText(t, ctx, c, "got four")
	writeText(t, ctx, c, "end")
	if ce := readClose(t, ctx, c); ce.Code != websocket.StatusNormalClosure || ce.Reason != "exit status 0" {
		t.Errorf("program exited 0: close %d %q, want 1000 %q", ce.Code, ce.Reason, "exit status 0")
	}
	waitFor(t, p.stderr, "[1] on stderr\n")
	waitFor(t, p.stderr, `msg="connection closed" conn=1`)
	if !regexp.MustCompile(`msg="connection closed" conn=1 .* program="exit status 0" closed_by=server code=1000`).MatchString(p.stderr.String()) {
		t.Errorf("the log lacks how the connection ended:\n%s", p.stderr)
	}
}

// TestExecLinesBinaryRefused checks that without --binary a binary message
// closes the connection with 1003, and ends the program.
func TestExecLinesBinaryRefused(t *testing.T) {
	p := startExec(t, "echo $$\nwhile read -r line; do :; done\n")
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	pids := readPIDs(t, ctx, c)
	if err := c.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if ce := readClose(t, ctx, c); ce.Code != websocket.StatusUnsupportedData {
		t.Errorf("binary message without --binary: close %d %q, want 1003", ce.Code, ce.Reason)
	}
	waitGone(t, 5*time.Second, pids...)
}

// TestExecBinary runs cat with --binary: bytes that are not UTF-8 come back
// as they were sent, in binary messages.
func TestExecBinary(t *testing.T) {
	p := startExec(t, "exec cat\n", "--binary")
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	sent := []byte{0xff, 0xfe, 0x00, '\n', 0x80, 0xc3, 0x28, '\r', 0xf8}
	big := payload(websocket.MessageBinary, 100<<10)
	for _, msg := range [][]byte{sent, big} {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for len(got) < len(msg) {
			typ, p, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if typ != websocket.MessageBinary || len(p) > execChunk {
				t.Fatalf("got a %v message of %d bytes, want binary of at most %d", typ, len(p), execChunk)
			}
			got = append(got, p...)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes sent, %d different ones came back", len(msg), len(got))
		}
	}
	// Text goes to stdin as it is too, with no newline added.
	writeText(t, ctx, c, "text")
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || string(got) != "text" {
		t.Fatalf("text with --binary: %v %q %v", typ, got, err)
	}
}

// TestExecProgramDies checks the close a program's end brings: 1000 when
// it exits 0, else 1011 with how it ended; what it wrote before comes
// first.
func TestExecProgramDies(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		code         websocket.StatusCode
		reason       string
	}{
		{"exit 0", "echo last words\nexit 0\n", websocket.StatusNormalClosure, "exit status 0"},
		{"exit 3", "echo last words\nexit 3\n", websocket.StatusInternalError, "exit status 3"},
		{"killed", "echo last words\nkill -KILL $$\n", websocket.StatusInternalError, "signal: killed"},
		{"segfault", "echo last words\nkill -SEGV $$\n", websocket.StatusInternalError, "signal: segmentation fault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startExec(t, tc.script)
			ctx := testContext(t)
			c := dial(t, ctx, p.addr, nil)
			readText(t, ctx, c, "last words")
			ce := readClose(t, ctx, c)
			if ce.Code != tc.code || !strings.HasPrefix(ce.Reason, tc.reason) {
				t.Errorf("close %d %q, want %d %q", ce.Code, ce.Reason, tc.code, tc.reason)
			}
		})
	}
}

// TestExecClientLeaves checks that when the client leaves, the program and
// the process it started are ended: by SIGTERM, or, when they ignore it,
// by SIGKILL after --grace.
func TestExecClientLeaves(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		grace        time.Duration
	}{
		{"SIGTERM", "sleep 1000 &\necho $$ $!\nwait\n", 3 * time.Second},
		{"SIGKILL", "trap '' TERM\nsleep 1000 &\necho $$ $!\nwhile :; do wait; done\n", 500 * time.Millisecond},
	} {
		for _, leave := range []string{"close", "drop"} {
			t.Run(tc.name+"/"+leave, func(t *testing.T) {
				p := startExec(t, tc.script, "--grace", tc.grace.String())
				ctx := testContext(t)
				c := dial(t, ctx, p.addr, nil)
				pids := readPIDs(t, ctx, c)
				if len(pids) != 2 {
					t.Fatalf("want the program's and its child's process ids, got %v", pids)
				}
				left := time.Now()
				if leave == "close" {
					if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
						t.Fatal(err)
					}
				} else {
					c.CloseNow() // no close frame: the TCP connection ends
				}
				waitGone(t, 5*time.Second, pids...)
				// duplex logs the end once the group is gone.
				waitFor(t, p.stderr, `msg="connection closed" conn=1`)
				took := time.Since(left)
				if tc.name == "SIGKILL" && took < tc.grace {
					t.Errorf("processes that ignore SIGTERM ended after %v, before --grace", took)
				}
				if tc.name == "SIGTERM" && took > tc.grace/2 {
					t.Errorf("processes that obey SIGTERM took %v to be seen gone, near --grace %v", took, tc.grace)
				}
			})
		}
	}
}

// TestExecChildOutlivesProgram checks that when the program exits on its
// own, what it started in the background is ended too.
func TestExecChildOutlivesProgram(t *testing.T) {
	p := startExec(t, "sleep 1000 &\necho $$ $!\nread -r line\nexit 4\n", "--grace", "500ms")
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	pids := readPIDs(t, ctx, c)
	writeText(t, ctx, c, "go")
	if ce := readClose(t, ctx, c); ce.Code != websocket.StatusInternalError || ce.Reason != "exit status 4" {
		t.Errorf("close %d %q, want 1011 \"exit status 4\"", ce.Code, ce.Reason)
	}
	waitGone(t, 5*time.Second, pids...)
}

// TestExecMaxProcs checks that connection --max-procs + 1 is refused with
// 503 before the handshake, and that one is accepted again once a client
// has left and its program ended.
func TestExecMaxProcs(t *testing.T) {
	p := startExec(t, "echo ready\nwhile read -r line; do :; done\n", "--max-procs", "2")
	ctx := testContext(t)
	c1 := dial(t, ctx, p.addr, nil)
	readText(t, ctx, c1, "ready")
	c2 := dial(t, ctx, p.addr, nil)
	readText(t, ctx, c2, "ready")
	dialRefused(t, ctx, p.addr, http.StatusServiceUnavailable)
	waitFor(t, p.stderr, "--max-procs programs are running")

	if err := c1.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c3, resp, err := websocket.Dial(ctx, p.addr, nil)
		if err == nil {
			t.Cleanup(func() { c3.CloseNow() })
			readText(t, ctx, c3, "ready")
			break
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after a client left: %v", err)
		}
	}
	dialRefused(t, ctx, p.addr, http.StatusServiceUnavailable)
	writeText(t, ctx, c2, "still served")
}

// TestExecEnvironment checks the program's CGI-style environment: the
// client's address and port, the path and query, headers as HTTP_*,
// credentials only when --pass-header names them, and nothing of
// duplex's own environment that could pass for the client's.
func TestExecEnvironment(t *testing.T) {
	script := `for v in REMOTE_ADDR REMOTE_PORT SERVER_NAME SERVER_PORT PATH_INFO QUERY_STRING REQUEST_URI DUPLEX_CONNECTION HTTPS HTTP_X_TEST HTTP_USER_AGENT HTTP_COOKIE HTTP_AUTHORIZATION HTTP_INJECTED HTTP_X_TWO HTTP_PROXY; do
	eval "printf '%s=%s\n' $v \"\${$v-unset}\""
done
echo end
`
	for _, tc := range []struct {
		name  string
		flags []string
		want  map[string]string
	}{
		{"default", nil, map[string]string{"HTTP_COOKIE": "unset", "HTTP_AUTHORIZATION": "unset"}},
		{"pass credentials", []string{"--pass-header", "Cookie", "--pass-header", "authorization"},
			map[string]string{"HTTP_COOKIE": "session=secret", "HTTP_AUTHORIZATION": "Bearer token"}},
		{"tls", []string{"--tls-self-signed"}, map[string]string{"HTTP_COOKIE": "unset", "HTTP_AUTHORIZATION": "unset", "HTTPS": "on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("builds the duplex binary")
			}
			t.Setenv("HTTP_INJECTED", "from duplex's environment")
			t.Setenv("QUERY_STRING", "from duplex's environment")
			args := append([]string{"exec", "--listen", "127.0.0.1:0"}, tc.flags...)
			p := startTool(t, append(args, "--", writeScript(t, script))...)
			ctx := testContext(t)
			var localAddr net.Addr
			header := http.Header{}
			header.Set("X-Test", "yes")
			header.Add("X-Two", "a")
			header.Add("X-Two", "b")
			header.Set("Cookie", "session=secret")
			header.Set("Authorization", "Bearer token")
			header.Set("Proxy", "http://evil.example")
			c := dial(t, ctx, p.addr+"/some/path?q=1&r=%20", &websocket.DialOptions{
				HTTPHeader: header,
				TLSConfig:  &tls.Config{InsecureSkipVerify: true}, // a certificate made at start
				NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := new(net.Dialer).DialContext(ctx, network, addr)
					if err == nil {
						localAddr = conn.LocalAddr()
					}
					return conn, err
				},
			})
			got := map[string]string{}
			for {
				_, line, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if string(line) == "end" {
					break
				}
				k, v, _ := strings.Cut(string(line), "=")
				got[k] = v
			}
			_, localPort, _ := net.SplitHostPort(localAddr.String())
			_, serverPort, _ := net.SplitHostPort(p.addr[strings.Index(p.addr, "//")+2:])
			https := tc.want["HTTPS"]
			if https == "" {
				https = "off"
			}
			want := map[string]string{
				"REMOTE_ADDR":        "127.0.0.1",
				"REMOTE_PORT":        localPort,
				"SERVER_NAME":        "127.0.0.1",
				"SERVER_PORT":        serverPort,
				"PATH_INFO":          "/some/path",
				"QUERY_STRING":       "q=1&r=%20",
				"REQUEST_URI":        "/some/path?q=1&r=%20",
				"DUPLEX_CONNECTION":  "1",
				"HTTPS":              https,
				"HTTP_X_TEST":        "yes",
				"HTTP_X_TWO":         "a, b",
				"HTTP_USER_AGENT":    "Go-http-client/1.1",
				"HTTP_INJECTED":      "unset",
				"HTTP_PROXY":         "unset",
				"HTTP_COOKIE":        tc.want["HTTP_COOKIE"],
				"HTTP_AUTHORIZATION": tc.want["HTTP_AUTHORIZATION"],
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s=%q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestExecMaxTime checks that a program running over --max-time is ended,
// with what it started, and the client closed with 1011.
func TestExecMaxTime(t *testing.T) {
	p := startExec(t, "sleep 1000 &\necho $$ $!\nwait\n", "--max-time", "300ms", "--grace", "500ms")
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	start := time.Now()
	pids := readPIDs(t, ctx, c)
	ce := readClose(t, ctx, c)
	if ce.Code != websocket.StatusInternalError || ce.Reason != "over --max-time 300ms: signal: terminated" {
		t.Errorf("close %d %q, want 1011 %q", ce.Code, ce.Reason, "over --max-time 300ms: signal: terminated")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("closed after %v, before --max-time", took)
	}
	waitGone(t, 5*time.Second, pids...)
}

// TestExecMaxMemory checks that --max-memory reaches the program as its
// address-space limit (RLIMIT_AS), which sh's ulimit -v shows in KiB, and
// that the program's process id is the one duplex started (the limit is
// set by /bin/sh, which then becomes the program).
func TestExecMaxMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("--max-memory is supported on Linux only")
	}
	const limit = 300 << 20
	p := startExec(t, "echo $$\nulimit -v\n", "--max-memory", strconv.Itoa(limit))
	ctx := testContext(t)
	c := dial(t, ctx, p.addr, nil)
	_, pidLine, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readText(t, ctx, c, strconv.Itoa(limit/1024))
	if ce := readClose(t, ctx, c); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("close %d %q, want 1000", ce.Code, ce.Reason)
	}
	waitFor(t, p.stderr, `msg="connection opened" conn=1`)
	if !strings.Contains(p.stderr.String(), "pid="+string(pidLine)+"\n") {
		t.Errorf("the program's process id %s is not the one logged:\n%s", pidLine, p.stderr)
	}
}

// TestExecShutdown checks that SIGTERM closes every client with 1001 and
// ends every program before duplex exits 0.
func TestExecShutdown(t *testing.T) {
	p := startExec(t, "sleep 1000 &\necho $$ $!\nwait\n", "--grace", "500ms")
	ctx := testContext(t)
	var all []int
	var conns []*websocket.Conn
	for range 2 {
		c := dial(t, ctx, p.addr, nil)
		all = append(all, readPIDs(t, ctx, c)...)
		conns = append(conns, c)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if ce := readClose(t, ctx, c); ce.Code != websocket.StatusGoingAway {
			t.Errorf("after SIGTERM: close %d %q, want 1001", ce.Code, ce.Reason)
		}
	}
	if code := p.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("after SIGTERM: exit %d, want 0", code)
	}
	waitGone(t, time.Second, all...)
}

// TestExecOrigin checks that a browser from another site is refused with
// 403, as by duplex echo, and allowed with --origin.
func TestExecOrigin(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  int
	}{
		{nil, http.StatusForbidden},
		{[]string{"--origin", "*.example.com"}, http.StatusSwitchingProtocols},
	} {
		t.Run(fmt.Sprint(tc.flags), func(t *testing.T) {
			p := startExec(t, "echo hi\n", tc.flags...)
			ctx := testContext(t)
			c, resp, err := websocket.Dial(ctx, p.addr, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
			if err == nil {
				defer c.CloseNow()
			}
			if resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("origin app.example.com: %v (response %v), want %d", err, resp, tc.want)
			}
		})
	}
}

func TestExecUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"needs a program to run", []string{"exec"}},
		{"--max-procs must be 1 or more", []string{"exec", "--max-procs", "0", "--", "cat"}},
		{"--grace must be positive", []string{"exec", "--grace", "0s", "--", "cat"}},
		{"--max-time must be 0 or more", []string{"exec", "--max-time", "-1s", "--", "cat"}},
		{"--pass-header takes Authorization, Cookie, Proxy-Authorization", []string{"exec", "--pass-header", "X-Foo", "--", "cat"}},
		{"exclude each other", []string{"exec", "--origin", "a.example", "--insecure-origin", "--", "cat"}},
		{"--read-limit must be", []string{"exec", "--read-limit", "0", "--", "cat"}},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
	code, _, stderr := runCLI(t, strings.NewReader(""), "exec", "--listen", "127.0.0.1:0", "--", "/nonexistent/program")
	if code != exitError || !strings.Contains(stderr, "/nonexistent/program") {
		t.Errorf("a program that does not exist: exit %d, stderr %q", code, stderr)
	}
}

// TestExecHelp checks that the help states each flag's default and what
// the program is told and when it is ended.
func TestExecHelp(t *testing.T) {
	code, stdout, stderr := execute(t, "exec", "--help")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"duplex exec [flags] -- PROGRAM [ARGS...]",
		"--max-procs int", "(default 64)", "--grace duration", "(default 3s)", "--max-time duration",
		"--max-memory bytes", "Linux only", "--pass-header header", "--binary",
		"SIGTERM, then SIGKILL", "1011", "exit status N", "REMOTE_ADDR", "QUERY_STRING", "HTTP_USER_AGENT",
		"Cookie, Authorization and Proxy-Authorization", "httpoxy", "--origin", "--tls-self-signed", "--compress",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("exec --help lacks %q", want)
		}
	}
}

// pythonClient is a client written with Python's websockets (Debian's
// python3-websockets): it sends each argument after the first, the URL, as
// a text message, and prints each message received as "text: ..." or
// "binary: HEX", and the close as "close: CODE REASON".
const pythonClient = `
import asyncio, sys, websockets

def show(m):
    return "binary: " + m.hex() if isinstance(m, bytes) else "text: " + m

async def main(url, messages):
    async with websockets.connect(url) as ws:
        print(show(await ws.recv()), flush=True)
        for m in messages:
            await ws.send(m)
            try:
                print(show(await ws.recv()), flush=True)
            except websockets.ConnectionClosed as e:
                print("close:", e.code, e.reason, flush=True)
                return

asyncio.run(main(sys.argv[1], sys.argv[2:]))
`

// TestExecPythonClient runs a client of another implementation, Python's
// websockets, against duplex exec: lines both ways, then the program's
// crash seen by that client as 1011 with the exit status.
func TestExecPythonClient(t *testing.T) {
	python, err := exec.LookPath("/usr/bin/python3")
	if err != nil || exec.Command(python, "-c", "import websockets").Run() != nil {
		t.Skip("no Python websockets (Debian's python3-websockets)")
	}
	p := startExec(t, `echo hello
while read -r line; do
	[ "$line" = crash ] && exit 3
	echo "you said $line"
done
`)
	ctx := testContext(t)
	out, err := exec.CommandContext(ctx, python, "-c", pythonClient, p.addr+"/py", "one", "two", "crash").CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	want := "text: hello\ntext: you said one\ntext: you said two\nclose: 1011 exit status 3\n"
	if string(out) != want {
		t.Errorf("the Python client saw:\n%s\nwant:\n%s", out, want)
	}
}
