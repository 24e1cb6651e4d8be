package cli

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

const (
	echoFirstLine  = `^duplex echo listening on (ws://127\.0\.0\.1:\d+)$`
	proxyFirstLine = `^duplex proxy listening on (wss?://127\.0\.0\.1:\d+), relaying to `
)

// startDuplexProxy runs duplex proxy from bin in front of to, with args.
func startDuplexProxy(t *testing.T, ctx context.Context, bin, to string, args ...string) *process {
	t.Helper()
	return startDuplex(t, ctx, bin, proxyFirstLine, append([]string{"proxy", "--listen", "127.0.0.1:0", "--to", to}, args...)...)
}

// wantInOrder checks that each pattern (a regular expression matched
// against whole lines, (?m)) comes after the one before it in out.
func wantInOrder(t *testing.T, out string, patterns ...string) {
	t.Helper()
	at := 0
	for _, p := range patterns {
		loc := regexp.MustCompile(`(?m)` + p).FindStringIndex(out[at:])
		if loc == nil {
			t.Errorf("after byte %d, the output lacks %q:\n%s", at, p, out)
			return
		}
		at += loc[1]
	}
}

// TestProxyShowsFramesBothWays relays our client's session with duplex
// echo through duplex proxy, both real binaries: the handshake and every
// frame are printed in order both ways, with time, connection, direction,
// opcode, flags, length and payload (JSON indented with --json, binary in
// hex), the credential hidden; and --record holds the same session.
func TestProxyShowsFramesBothWays(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0", "--subprotocol", "chat")
	record := filepath.Join(t.TempDir(), "session.jsonl")
	proxy := startDuplexProxy(t, ctx, bin, echo.addr, "--json", "--record", record)

	const secret = "Bearer s3cret-token"
	c, resp, err := websocket.Dial(ctx, proxy.addr+"/room?x=1", &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {secret}},
		Subprotocols: []string{"chat"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "chat" || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("through the proxy: status %d, subprotocol %q; want 101 and chat, agreed end to end", resp.StatusCode, c.Subprotocol())
	}
	roundTrip := func(typ websocket.MessageType, p []byte) {
		t.Helper()
		if err := c.Write(ctx, typ, p); err != nil {
			t.Fatal(err)
		}
		if gt, got, err := c.Read(ctx); err != nil || gt != typ || !bytes.Equal(got, p) {
			t.Fatalf("echo through the proxy: %v %q %v, want %v %q", gt, got, err, typ, p)
		}
	}
	roundTrip(websocket.MessageText, []byte("hello"))
	roundTrip(websocket.MessageText, []byte(`{"a":1,"b":[true]}`))
	roundTrip(websocket.MessageBinary, []byte{0, 1, 2, 0xff})
	// A ping, answered while a Read is waiting (it takes the pong in),
	// then a message.
	echoed := make(chan error, 1)
	go func() {
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != "after the ping" {
			err = fmt.Errorf("echo %q", got)
		}
		echoed <- err
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("after the ping")); err != nil {
		t.Fatal(err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo after the ping: %v", err)
	}
	if err := c.Close(4001, "bye"); err != nil {
		t.Fatalf("close through the proxy: %v", err)
	}
	waitFor(t, proxy.stdout, "-- connection closed")

	out := proxy.stdout.String()
	ts := `\d\d:\d\d:\d\d\.\d{6} #1 `
	wantInOrder(t, out,
		ts+`in  GET /room\?x=1 HTTP/1\.1 \(from 127\.0\.0\.1:\d+\)$`,
		ts+`in  Authorization: \[19 bytes hidden\]$`,
		ts+`in  Sec-Websocket-Protocol: chat$`,
		ts+`out HTTP/1\.1 101 Switching Protocols$`,
		ts+`out Sec-Websocket-Protocol: chat$`,
		ts+`in  text fin len=5: hello$`,
		ts+`out text fin len=5: hello$`,
		ts+`in  text fin len=18: \{\n  "a": 1,\n  "b": \[\n    true\n  \]\n\}$`,
		ts+`out text fin len=18: \{\n`,
		ts+`in  binary fin len=4: 000102ff$`,
		ts+`out binary fin len=4: 000102ff$`,
		ts+`in  ping fin len=\d+: [0-9a-f]*$`,
		ts+`out pong fin len=\d+: [0-9a-f]*$`,
		ts+`in  text fin len=14: after the ping$`,
		ts+`out text fin len=14: after the ping$`,
		ts+`in  close fin len=5: code=4001 reason="bye"$`,
		ts+`out close fin len=\d+: code=4001`,
		ts+`-- connection closed$`,
	)
	if strings.Contains(out, "s3cret") {
		t.Errorf("the printout shows the credential:\n%s", out)
	}

	// The recording holds the handshake and the frames in order.
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("s3cret")) {
		t.Errorf("the recording holds the credential:\n%s", b)
	}
	var hs handshakeRecord
	var frames []frameRecord
	for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var kind struct{ Type string }
		if err := json.Unmarshal(line, &kind); err != nil {
			t.Fatalf("recording line %d is not JSON: %v: %s", i+1, err, line)
		}
		switch kind.Type {
		case "handshake":
			if err := json.Unmarshal(line, &hs); err != nil {
				t.Fatal(err)
			}
		case "frame":
			var f frameRecord
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatal(err)
			}
			if f.Opcode != "ping" && f.Opcode != "pong" {
				frames = append(frames, f)
			}
		}
	}
	if hs.Conn != 1 || hs.Request.URI != "/room?x=1" || hs.Request.Headers.Get("Authorization") != "[19 bytes hidden]" ||
		hs.Response.Status != 101 || hs.Response.Headers.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Errorf("recorded handshake: %+v", hs)
	}
	type want struct {
		dir, opcode string
		masked      bool
		text        string
		binary      []byte
		closeCode   int
	}
	wants := []want{
		{"in", "text", true, "hello", nil, 0}, {"out", "text", false, "hello", nil, 0},
		{"in", "text", true, `{"a":1,"b":[true]}`, nil, 0}, {"out", "text", false, `{"a":1,"b":[true]}`, nil, 0},
		{"in", "binary", true, "", []byte{0, 1, 2, 0xff}, 0}, {"out", "binary", false, "", []byte{0, 1, 2, 0xff}, 0},
		{"in", "text", true, "after the ping", nil, 0}, {"out", "text", false, "after the ping", nil, 0},
		{"in", "close", true, "", nil, 4001}, {"out", "close", false, "", nil, 4001},
	}
	if len(frames) != len(wants) {
		t.Fatalf("recorded %d data and close frames, want %d:\n%s", len(frames), len(wants), b)
	}
	for i, w := range wants {
		f := frames[i]
		text := ""
		if f.Text != nil {
			text = *f.Text
		}
		if f.Conn != 1 || f.Dir != w.dir || f.Opcode != w.opcode || !f.Fin || f.RSV1 || f.Masked != w.masked ||
			text != w.text || (w.binary != nil && !bytes.Equal(f.Base64, w.binary)) || f.CloseCode != w.closeCode {
			t.Errorf("recorded frame %d: %+v (text %q), want %+v", i+1, f, text, w)
		}
		if i > 0 && f.Time.Before(frames[i-1].Time) {
			t.Errorf("recorded frame %d is older than the one before it", i+1)
		}
	}
}

// TestProxyCompressed puts duplex proxy in front of duplex echo --compress
// context: the client and the server agree on permessage-deflate through
// it, the frames reach the client still compressed (RSV1 set, a deflate
// stream that inflates to the message), and the printout shows every
// message inflated, context takeover followed in both directions. A frame
// that does not inflate is printed as such and relayed all the same.
func TestProxyCompressed(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0", "--compress", "context", "--compress-threshold", "0")
	proxy := startDuplexProxy(t, ctx, bin, echo.addr)

	// Our client compresses too, with context takeover: the second and
	// third messages refer back to the first.
	c, resp, err := websocket.Dial(ctx, proxy.addr, &websocket.DialOptions{
		Compression: websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Threshold: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("agreed through the proxy: %q, want permessage-deflate", ext)
	}
	msg := strings.Repeat("the quick brown fox jumps over the lazy dog; ", 8)
	for range 3 {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo through the proxy: %q %v", got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, proxy.stdout, "#1 -- connection closed")
	out := proxy.stdout.String()
	line := regexp.MustCompile(`(?m)#1 (in |out) text fin rsv1 len=(\d+): \(inflated to 360 bytes\) ` + regexp.QuoteMeta(msg) + `$`)
	lens := map[string][]int{}
	for _, m := range line.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		lens[m[1]] = append(lens[m[1]], n)
	}
	for _, dir := range []string{"in ", "out"} {
		if len(lens[dir]) != 3 {
			t.Fatalf("%q: %d compressed messages shown inflated, want 3:\n%s", dir, len(lens[dir]), out)
		}
		// With context takeover the later messages are a few bytes of
		// back-references: had the proxy not followed the window, they
		// would not have inflated at all.
		if lens[dir][1] >= lens[dir][0] {
			t.Errorf("%q: compressed lengths %v: the second message does not refer back to the first", dir, lens[dir])
		}
	}

	// A raw client sees the relayed frames as the server compressed them.
	conn, br, ext := rawDialOffer(t, ctx, proxy.addr, "permessage-deflate")
	if !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("raw client: agreed %q", ext)
	}
	conn.Write(maskedTextFrame([]byte(msg)))
	rsv1, op, payload := readRawFrame(t, br)
	if !rsv1 || op != 1 {
		t.Fatalf("the echo reached the client with rsv1 %v, opcode %d; want a compressed text frame", rsv1, op)
	}
	inflated, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader(deflateTail))))
	if err != nil || string(inflated) != msg {
		t.Fatalf("the compressed echo inflates to %q, %v", inflated, err)
	}

	// A message marked compressed that is no deflate stream: the proxy
	// says so and passes it on, and the server's answer (a close) comes
	// back through it.
	bad := maskedTextFrame([]byte{0xff, 0xff, 0xff, 0xff})
	bad[0] |= 0x40
	conn.Write(bad)
	if _, op, _ := readRawFrame(t, br); op != 8 {
		t.Fatalf("after a frame that does not inflate, the client got opcode %d, want the server's close", op)
	}
	waitFor(t, proxy.stdout, "#2 in  text fin rsv1 len=4: inflate failed: ")
	waitFor(t, proxy.stdout, "#2 out close fin")
}

// TestProxyTLSBothSides chains two proxies: the first listens with
// --tls-self-signed in front of duplex echo, the second relays ws:// to
// the first's wss:// with --insecure.
func TestProxyTLSBothSides(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0")
	secure := startDuplexProxy(t, ctx, bin, echo.addr, "--tls-self-signed")
	if !strings.HasPrefix(secure.addr, "wss://") {
		t.Fatalf("with --tls-self-signed the proxy listens on %s", secure.addr)
	}
	waitFor(t, secure.stdout, "TLS certificate made at start, SHA-256 fingerprint ")
	front := startDuplexProxy(t, ctx, bin, secure.addr, "--insecure")
	c := dial(t, ctx, front.addr, nil)
	if err := c.Write(ctx, websocket.MessageText, []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "over TLS" {
		t.Fatalf("echo through both proxies: %q %v", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	for _, p := range []*process{front, secure} {
		waitFor(t, p.stdout, "#1 out text fin len=8: over TLS")
	}
}

// TestProxyFilterAndQuiet checks that --filter chooses the frames printed
// and that --quiet prints none, while --record keeps them all.
func TestProxyFilterAndQuiet(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0")
	record := filepath.Join(t.TempDir(), "quiet.jsonl")
	filtered := startDuplexProxy(t, ctx, bin, echo.addr, "--filter", "dir=out", "--filter", "op=text", "--filter", "has=keep", "--filter", "has=also")
	quiet := startDuplexProxy(t, ctx, bin, echo.addr, "--quiet", "--record", record)
	for _, p := range []*process{filtered, quiet} {
		c := dial(t, ctx, p.addr, nil)
		for _, m := range []string{"keep me", "drop me", "also me"} {
			c.Write(ctx, websocket.MessageText, []byte(m))
			if _, _, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
		c.Write(ctx, websocket.MessageBinary, []byte("keep binary"))
		c.Read(ctx)
		c.Close(websocket.StatusNormalClosure, "")
	}
	waitFor(t, filtered.stdout, "#1 -- connection closed")
	// Handshakes are filtered by conn= alone: the frames are what the
	// other keys choose.
	var frames []string
	for _, m := range regexp.MustCompile(`(?m)(#\d+ (in |out) (text|binary|close|ping|pong|continuation) .*)$`).FindAllStringSubmatch(filtered.stdout.String(), -1) {
		frames = append(frames, m[1])
	}
	if want := []string{"#1 out text fin len=7: keep me", "#1 out text fin len=7: also me"}; !equalStrings(frames, want) {
		t.Errorf("filtered frames:\n%s\nwant:\n%s", strings.Join(frames, "\n"), strings.Join(want, "\n"))
	}
	deadline := time.Now().Add(testTimeout)
	for {
		b, _ := os.ReadFile(record)
		if bytes.Contains(b, []byte(`"event":"connection closed"`)) {
			if n := bytes.Count(b, []byte(`"type":"frame"`)); n != 10 {
				t.Errorf("--quiet --record holds %d frames, want 10 (4 messages and a close each way):\n%s", n, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recording does not end:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out := quiet.stdout.String(); strings.Count(out, "\n") != 1 {
		t.Errorf("--quiet printed more than its listening line:\n%s", out)
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// TestProxyFaults checks each fault as a client sees it: --delay holds
// each frame (measured loosely), --drop-after cuts the connection without
// a close frame after exactly N messages, --close-after sends exactly
// --close-code to the client and to the server.
func TestProxyFaults(t *testing.T) {
	ctx := testContext(t)
	bin := buildDuplex(t, ctx)
	echo := startDuplex(t, ctx, bin, echoFirstLine, "echo", "--listen", "127.0.0.1:0")

	t.Run("delay", func(t *testing.T) {
		p := startDuplexProxy(t, ctx, bin, echo.addr, "--delay", "300ms")
		c := dial(t, ctx, p.addr, nil)
		start := time.Now()
		c.Write(ctx, websocket.MessageText, []byte("slow"))
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		// Held both ways: at least 600ms, less a margin for clocks.
		if took := time.Since(start); took < 550*time.Millisecond {
			t.Errorf("an echo through --delay 300ms took %v, want at least 600ms", took)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("drop-after", func(t *testing.T) {
		p := startDuplexProxy(t, ctx, bin, echo.addr, "--drop-after", "3", "--count", "out")
		c := dial(t, ctx, p.addr, nil)
		for i := 1; ; i++ {
			c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "message %d", i))
			_, _, err := c.Read(ctx)
			if err == nil {
				if i > 3 {
					t.Fatalf("the client got message %d through --drop-after 3", i)
				}
				continue
			}
			if i != 4 {
				t.Fatalf("the connection ended after %d messages, want 3: %v", i-1, err)
			}
			if code := websocket.CloseStatus(err); code != -1 {
				t.Fatalf("the dropped connection ended with a close frame %d, want none (1006): %v", code, err)
			}
			break
		}
		waitFor(t, p.stdout, "#1 -- cut without a close frame after 3 messages (--drop-after)")
	})

	t.Run("close-code", func(t *testing.T) {
		p := startDuplexProxy(t, ctx, bin, echo.addr, "--close-after", "3", "--close-code", "4321")
		c := dial(t, ctx, p.addr, nil)
		// Both directions count: message, echo, message, then the close.
		c.Write(ctx, websocket.MessageText, []byte("one"))
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatal(err)
		}
		c.Write(ctx, websocket.MessageText, []byte("two"))
		_, got, err := c.Read(ctx)
		if code := websocket.CloseStatus(err); code != 4321 {
			t.Fatalf("after 3 messages the client read %q, %v; want close 4321", got, err)
		}
		waitFor(t, p.stdout, "#1 out close fin len=2 (sent by the proxy): code=4321")
		waitFor(t, p.stdout, "#1 in  close fin len=2 (sent by the proxy): code=4321")
		waitFor(t, p.stdout, "#1 -- connection closed")
		waitFor(t, echo.stderr, "code=4321")
	})
}

// TestProxyUsageErrors checks the flag combinations duplex proxy refuses.
func TestProxyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"--to is required", []string{"proxy"}},
		{"--to must start with ws:// or wss://", []string{"proxy", "--to", "http://x"}},
		{"--close-after and --close-code go together", []string{"proxy", "--to", "ws://x", "--close-after", "2"}},
		{"--close-code 1006 cannot be sent", []string{"proxy", "--to", "ws://x", "--close-after", "2", "--close-code", "1006"}},
		{"exclude each other", []string{"proxy", "--to", "ws://x", "--close-after", "2", "--close-code", "4000", "--drop-after", "1"}},
		{"--quiet prints nothing: it needs --record", []string{"proxy", "--to", "ws://x", "--quiet"}},
		{"--filter key must be conn, dir, op or has", []string{"proxy", "--to", "ws://x", "--filter", "size=3"}},
		{"--filter dir= wants in or out", []string{"proxy", "--to", "ws://x", "--filter", "dir=up"}},
		{"--count must be in, out or both", []string{"proxy", "--to", "ws://x", "--count", "all"}},
		{"--insecure and --ca are for a wss:// --to", []string{"proxy", "--to", "ws://x", "--insecure"}},
		{"--speed must be positive", []string{"replay", "f", "--to", "ws://x", "--speed", "0"}},
		{"takes one recording FILE", []string{"replay", "--to", "ws://x"}},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}

// TestProxyAndReplayHelp checks that the help says how each command is
// used, the filter syntax and the exit status of replay.
func TestProxyAndReplayHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"proxy", "--help"}, []string{"--filter KEY=VALUE", "dir=in|out", "has=TEXT", "--drop-after", "--close-code", "--delay",
			"--tls-self-signed", "--insecure", "--record", "--quiet", "--json", `(default "127.0.0.1:8081")`, `(default "both")`}},
		{[]string{"replay", "--help"}, []string{"replay FILE --to URL", "--speed", "(default 1)", "(default 5s)", "3 when any differs"}},
		{[]string{"--help"}, []string{"proxy", "replay"}},
	} {
		code, stdout, stderr := execute(t, tc.args...)
		if code != 0 || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: output lacks %q", tc.args, w)
			}
		}
	}
}
