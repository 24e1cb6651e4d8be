package cli

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// startEchoCommand runs duplex echo in-process, through its command line,
// with args after --listen 127.0.0.1:0, until the test ends, and returns
// its ws:// URL.
func startEchoCommand(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &firstLineWriter{line: make(chan string, 1)}
	stderr := &lockedBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- Execute(ctx, append([]string{"echo", "--listen", "127.0.0.1:0"}, args...), stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != exitOK {
				t.Errorf("duplex echo %q: exit %d after its context ended, want 0", args, code)
			}
		case <-time.After(testTimeout):
			t.Errorf("duplex echo %q still running %v after its context ended", args, testTimeout)
		}
		if t.Failed() {
			t.Logf("duplex echo stderr:\n%s", stderr)
		}
	})
	select {
	case line := <-stdout.line:
		m := regexp.MustCompile(`^duplex echo listening on (ws://127\.0\.0\.1:\d+)$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first line of output: %q", line)
		}
		return m[1]
	case code := <-exit:
		exit <- code // for Cleanup
		t.Fatalf("duplex echo %q exited with %d before listening:\n%s", args, code, stderr)
	case <-time.After(testTimeout):
		t.Fatalf("duplex echo %q printed no address", args)
	}
	return ""
}

// TestEchoCompression runs duplex echo with each --compress mode and checks
// the agreement its handshake answers to a client that offers compression,
// then echoes through it text and binary messages of every size. Echoes
// over 32 KiB are streamed back through a Writer, shorter ones written
// whole. The variants of the windows echo less, to spare the race detector
// megabytes of compression.
func TestEchoCompression(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name  string
		args  []string
		offer websocket.CompressionOptions
		want  string // Sec-WebSocket-Extensions of the response
		sizes []int
	}{
		{"off", nil, websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover}, "", []int{0, 1 << 10, MiB}},
		{
			"no-context", []string{"--compress", "no-context"},
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			[]int{0, 1 << 10, MiB},
		},
		{
			"context", []string{"--compress", "context"},
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover},
			"permessage-deflate",
			[]int{0, 1 << 10, MiB},
		},
		{
			"context/windows", []string{"--compress", "context", "--server-window-bits", "10", "--client-window-bits", "9", "--compress-level", "9"},
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover},
			"permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
			[]int{0, 1 << 10, 64 << 10},
		},
		{
			// The client asks for less than the server allows: it gets it.
			"context/client-asks", []string{"--compress", "context", "--server-window-bits", "12", "--compress-threshold", "0"},
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, ServerMaxWindowBits: 9, ClientMaxWindowBits: 11},
			"permessage-deflate; server_max_window_bits=9; client_max_window_bits=11",
			[]int{0, 1 << 10, 64 << 10},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := startEchoCommand(t, tc.args...)
			ctx, cancel := context.WithTimeout(t.Context(), 3*testTimeout) // 1 MiB compressed under -race
			defer cancel()
			c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Compression: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != tc.want {
				t.Errorf("Sec-WebSocket-Extensions: %q, want %q", got, tc.want)
			}
			c.SetReadLimit(2 * MiB)
			for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
				for _, size := range tc.sizes {
					want := payload(typ, size)
					sent := make(chan error, 1)
					go func() { sent <- c.Write(ctx, typ, want) }()
					gotTyp, got, err := c.Read(ctx)
					if err := <-sent; err != nil {
						t.Fatalf("%v of %d bytes: write: %v", typ, size, err)
					}
					if err != nil {
						t.Fatalf("%v of %d bytes: read: %v", typ, size, err)
					}
					if gotTyp != typ || !bytes.Equal(got, want) {
						t.Errorf("%v of %d bytes: echoed as %v, %d bytes that differ", typ, size, gotTyp, len(got))
					}
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEchoCompressionThreshold looks at the echoed frames on the wire: a
// message under --compress-threshold comes back uncompressed, one at it
// compressed (RSV1 set) with the data sent, and with 0 every message is
// compressed, the empty one too.
func TestEchoCompressionThreshold(t *testing.T) {
	for _, tc := range []struct {
		threshold  string
		size       int
		compressed bool
	}{
		{"100", 99, false},
		{"100", 100, true},
		{"100", 5000, true},
		{"0", 0, true},
		{"0", 1, true},
	} {
		t.Run(tc.threshold+"/"+fmt.Sprint(tc.size), func(t *testing.T) {
			url := startEchoCommand(t, "--compress", "no-context", "--compress-threshold", tc.threshold)
			ctx := testContext(t)
			conn, br, ext := rawDialOffer(t, ctx, url, "permessage-deflate; client_max_window_bits")
			if !strings.HasPrefix(ext, "permessage-deflate") {
				t.Fatalf("Sec-WebSocket-Extensions: %q, want permessage-deflate", ext)
			}
			msg := payload(websocket.MessageText, tc.size)
			if _, err := conn.Write(maskedTextFrame(msg)); err != nil {
				t.Fatal(err)
			}
			rsv1, op, got := readRawFrame(t, br)
			if op != 0x1 || rsv1 != tc.compressed {
				t.Fatalf("echo: opcode %#x, RSV1 %v; want text, RSV1 %v", op, rsv1, tc.compressed)
			}
			if rsv1 {
				// RFC 7692 section 7.2.2: append 00 00 ff ff and inflate.
				fr := flate.NewReader(io.MultiReader(bytes.NewReader(got), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
				inflated := make([]byte, len(msg))
				if _, err := io.ReadFull(fr, inflated); err != nil {
					t.Fatalf("inflating the echo: %v", err)
				}
				got = inflated
			}
			if !bytes.Equal(got, msg) {
				t.Errorf("echoed %q, sent %q", got, msg)
			}
		})
	}
}

// rawDialOffer opens a WebSocket connection by hand, offering extensions,
// and returns the connection and the extensions the server agreed to.
func rawDialOffer(t *testing.T, ctx context.Context, url, offer string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	addr := strings.TrimPrefix(url, "ws://")
	conn, err := new(net.Dialer).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Extensions: %s\r\n\r\n", addr, offer)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br, resp.Header.Get("Sec-WebSocket-Extensions")
}

// maskedTextFrame returns an uncompressed text message from a client, in
// one frame, masked with a zero key.
func maskedTextFrame(p []byte) []byte {
	b := []byte{0x81}
	switch {
	case len(p) < 126:
		b = append(b, 0x80|byte(len(p)))
	case len(p) <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(len(p)))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(len(p)))
	}
	b = append(b, 0, 0, 0, 0) // a zero mask key leaves the payload as it is
	return append(b, p...)
}

// readRawFrame reads one unmasked frame from the server and returns its
// RSV1 bit, opcode and payload.
func readRawFrame(t *testing.T, br *bufio.Reader) (rsv1 bool, op byte, payload []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	if hdr[1]&0x80 != 0 || n > 1<<20 {
		t.Fatalf("frame from the server: masked %v, %d bytes", hdr[1]&0x80 != 0, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatalf("reading a frame of %d bytes: %v", n, err)
	}
	return hdr[0]&0x40 != 0, hdr[0] & 0x0f, payload
}

// TestEchoCompressionFlags checks how the flags map onto
// websocket.CompressionOptions.
func TestEchoCompressionFlags(t *testing.T) {
	defaults := echoFlags{acceptFlags: acceptFlags{compress: "off", serverWindowBits: 15, clientWindowBits: 15, compressLevel: 1, compressThreshold: 128}}
	for _, tc := range []struct {
		name string
		edit func(f *echoFlags)
		want websocket.CompressionOptions
	}{
		{"off", func(f *echoFlags) {}, websocket.CompressionOptions{}},
		{
			"no-context", func(f *echoFlags) { f.compress = "no-context" },
			websocket.CompressionOptions{Mode: websocket.CompressionNoContextTakeover, Level: 1, Threshold: 128, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15},
		},
		{
			"context/tuned", func(f *echoFlags) {
				f.compress, f.serverWindowBits, f.clientWindowBits, f.compressLevel, f.compressThreshold = "context", 8, 12, 9, 1000
			},
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Level: 9, Threshold: 1000, ServerMaxWindowBits: 8, ClientMaxWindowBits: 12},
		},
		{
			// The library's Threshold 0 would mean its default, 128.
			"threshold 0", func(f *echoFlags) { f.compress, f.compressThreshold = "context", 0 },
			websocket.CompressionOptions{Mode: websocket.CompressionContextTakeover, Level: 1, Threshold: -1, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15},
		},
	} {
		f := defaults
		tc.edit(&f)
		got, err := f.compression(func(string) bool { return false })
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestEchoCompressionUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compress", "gzip"}, `--compress must be off, no-context or context, not "gzip"`},
		{[]string{"--compress", ""}, `--compress must be off, no-context or context, not ""`},
		{[]string{"--compress", "context", "--server-window-bits", "7"}, "--server-window-bits must be from 8 to 15, not 7"},
		{[]string{"--compress", "context", "--client-window-bits", "16"}, "--client-window-bits must be from 8 to 15, not 16"},
		{[]string{"--compress", "no-context", "--compress-level", "0"}, "--compress-level must be from 1 to 9, not 0"},
		{[]string{"--compress", "no-context", "--compress-level", "10"}, "--compress-level must be from 1 to 9, not 10"},
		{[]string{"--compress", "context", "--compress-threshold", "-1"}, "--compress-threshold must be 0 or more bytes, not -1"},
		{[]string{"--compress", "context", "--compress-level", "fast"}, `invalid argument "fast"`},
		{[]string{"--server-window-bits", "12"}, "--server-window-bits needs --compress no-context or context"},
		{[]string{"--compress", "off", "--compress-threshold", "0"}, "--compress-threshold needs --compress no-context or context"},
	} {
		args := append([]string{"echo", "--listen", "127.0.0.1:0"}, tc.args...)
		code, stdout, stderr := execute(t, args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help' for usage") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, exitUsage, tc.want)
		}
	}
}

func TestEchoCompressionHelp(t *testing.T) {
	code, stdout, stderr := execute(t, "echo", "--help")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"--compress mode", "off, no-context or context", `(default "off")`, "permessage-deflate (RFC 7692)",
		"--server-window-bits bits", "--client-window-bits bits", "8 to 15", "(default 15)",
		"--compress-level level", "1 (fastest) to 9 (smallest)", "(default 1)",
		"--compress-threshold bytes", "0 compresses all", "(default 128)",
		"about 36 KiB per connection",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("echo --help lacks %q:\n%s", want, stdout)
		}
	}
}
