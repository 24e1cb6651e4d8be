package cli

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// runDuplex runs the duplex binary bin with args to its end and returns
// its exit status and output.
func runDuplex(t *testing.T, ctx context.Context, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("duplex %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errOut.String()
}

// recordSession records, through duplex proxy in front of duplex echo
// --compress context, two connections: a compressed one that sends two
// texts 600ms apart and a binary message, and a plain one on another path.
// It returns the recording and the echo server's URL.
func recordSession(t *testing.T, ctx context.Context, bin string) (record, echoURL string) {
	t.Helper()
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0", "--compress", "context", "--compress-threshold", "0")
	record = filepath.Join(t.TempDir(), "session.jsonl")
	proxy := startDuplexProxy(t, ctx, bin, echo.addr, "--record", record, "--quiet")

	first := dial(t, ctx, proxy.addr+"/one", &websocket.DialOptions{
		Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Threshold: -1},
	})
	second := dial(t, ctx, proxy.addr+"/two", nil)
	exchange := func(c *websocket.Conn, typ websocket.MessageType, p string) {
		t.Helper()
		if err := c.Write(ctx, typ, []byte(p)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != p {
			t.Fatalf("echo %q: %q %v", p, got, err)
		}
	}
	exchange(first, websocket.MessageText, "first message, compressed")
	exchange(second, websocket.MessageText, "on the other connection")
	time.Sleep(600 * time.Millisecond)
	exchange(first, websocket.MessageText, "first message, compressed, again")
	exchange(first, websocket.MessageBinary, "\x00\x01binary")
	first.Close(websocket.StatusNormalClosure, "")
	second.Close(4002, "done")
	deadline := time.Now().Add(testTimeout)
	for {
		b, _ := os.ReadFile(record)
		if bytes.Count(b, []byte(`"event":"connection closed"`)) == 2 {
			if !bytes.Contains(b, []byte(`"inflated":"first message, compressed, again"`)) {
				t.Fatalf("the recording lacks the compressed message inflated:\n%s", b)
			}
			return record, echo.addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recording does not end:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplayMatches plays a recording back against duplex echo with the
// original timing: every answer matches, exit status 0, and the replay
// takes at least as long as the pause in the recording.
func TestReplayMatches(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	record, echoURL := recordSession(t, ctx, bin)

	start := time.Now()
	code, stdout, stderr := runDuplex(t, ctx, bin, "replay", record, "--to", echoURL)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("replay against the server recorded: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"conn 1: 3 messages sent, 3 answers as recorded\n",
		"conn 2: 1 messages sent, 1 answers as recorded\n",
		"every answer as recorded (2 connections)\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("replay output lacks %q:\n%s", want, stdout)
		}
	}
	if took < 550*time.Millisecond {
		t.Errorf("the replay took %v: the recording's 600ms pause was not kept", took)
	}
}

// TestReplayDiffers plays a recording back against a server that answers
// in upper case: each answer is reported as differing and the exit status
// is 3. A server that is not there fails with status 1.
func TestReplayDiffers(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	record, _ := recordSession(t, ctx, bin)

	var handlers sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, p, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if typ == websocket.MessageText {
				p = bytes.ToUpper(p)
			}
			if err := c.Write(r.Context(), typ, p); err != nil {
				return
			}
		}
	}))
	defer func() {
		srv.Close()
		handlers.Wait()
	}()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	code, stdout, stderr := runDuplex(t, ctx, bin, "replay", record, "--to", url, "--speed", "10", "--wait", "2s")
	if code != exitReplayDiffers {
		t.Fatalf("replay against a server that answers differently: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitReplayDiffers, stdout, stderr)
	}
	for _, want := range []string{
		`conn 1: answer 1 differs: got text "FIRST MESSAGE, COMPRESSED", recorded text "first message, compressed"` + "\n",
		`conn 1: answer 2 differs: got text "FIRST MESSAGE, COMPRESSED, AGAIN", recorded text "first message, compressed, again"` + "\n",
		`conn 2: answer 1 differs: got text "ON THE OTHER CONNECTION", recorded text "on the other connection"` + "\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("replay output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "answer 3") {
		t.Errorf("the binary answer, the same as recorded, is reported:\n%s", stdout)
	}
	if !strings.Contains(stderr, "3 answers differ from the recording") {
		t.Errorf("stderr: %q", stderr)
	}

	srv.Close()
	code, stdout, _ = runDuplex(t, ctx, bin, "replay", record, "--to", url, "--speed", "10")
	if code != exitError || !regexp.MustCompile(`conn 1: cannot connect to ws://127\.0\.0\.1:\d+/one`).MatchString(stdout) {
		t.Errorf("replay against no server: exit %d, want 1, output:\n%s", code, stdout)
	}
}

// TestReplayBadRecording checks that a file that is not a recording fails
// with status 1 and says what is wrong, before any connection is made.
func TestReplayBadRecording(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", "no handshake in it: not a recording of duplex proxy --record"},
		{"not-json", "hello\n", "object 1: invalid character"},
		{"frame-first", `{"type":"frame","conn":1,"dir":"in","opcode":"text","fin":true,"text":"x"}` + "\n", "object 1: a frame of connection 1 before its handshake"},
		{"continuation-first", `{"type":"handshake","conn":1,"response":{"status":101}}` + "\n" +
			`{"type":"frame","conn":1,"dir":"in","opcode":"continuation","fin":true,"text":"x"}` + "\n", "object 2: a continuation frame with no message before it"},
		{"client-message-not-inflated", `{"type":"handshake","conn":1,"response":{"status":101}}` + "\n" +
			`{"type":"frame","conn":1,"dir":"in","opcode":"text","fin":true,"rsv1":true,"base64":"/w==","inflate_error":"inflate failed: x"}` + "\n",
			"object 2: the client's message cannot be replayed: inflate failed: x"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI(t, strings.NewReader(""), "replay", path, "--to", "ws://127.0.0.1:1")
		if code != exitError || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.name, code, stdout, stderr, tc.want)
		}
	}
}
