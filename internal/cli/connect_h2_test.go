package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key to PEM files, for duplex echo's --tls-cert/--tls-key and the
// client's --ca.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	cert, err := selfSignedCert(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// runDuplex runs the duplex binary bin with stdin to its end and returns
// its exit status and output.
func runDuplexInput(t *testing.T, ctx context.Context, bin, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatalf("duplex %s: %v", strings.Join(args, " "), err)
	}
	return 0, out.String(), errOut.String()
}

// TestConnectHTTP2 drives the duplex binary: connect --http2 against duplex
// echo over TLS opens its WebSocket as stream 1 of an HTTP/2 connection
// (ALPN h2, the extended CONNECT's pseudo-headers and the 200 in the
// trace, which shows what crossed the wire), echoes messages, large ones
// too, with and without compression, and closes with 1000; with --ca (the
// echo's certificate) and with --insecure (echo's --tls-self-signed).
func TestConnectHTTP2(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuplex(t, ctx)
	certFile, keyFile := writeSelfSigned(t)
	echo := startDuplex(t, ctx, bin, `^duplex echo listening on (wss://127\.0\.0\.1:\d+)$`,
		"echo", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--read-limit", "16777216",
		"--compress", "context", "--compress-threshold", "0")

	t.Run("trace", func(t *testing.T) {
		msg := strings.Repeat("compressible ", 40) // 520 bytes
		code, stdout, stderr := runDuplexInput(t, ctx, bin, msg,
			"connect", "--http2", "--ca", certFile, "--trace", "--once", "--compress", "context",
			"-H", "Authorization: Bearer secret", echo.addr+"/room?x=1")
		if code != exitOK || stdout != msg+"\n" {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m) -- TLS 1\.3, .*, ALPN "h2", `),
			regexp.MustCompile(`(?m) << HTTP/2 SETTINGS: .*\[ENABLE_CONNECT_PROTOCOL = 1\]`),
			regexp.MustCompile(`(?m) >> HTTP/2 HEADERS \(extended CONNECT\), stream 1$`),
			regexp.MustCompile(`(?m) >>   :method CONNECT$`),
			regexp.MustCompile(`(?m) >>   :protocol websocket$`),
			regexp.MustCompile(`(?m) >>   :scheme https$`),
			regexp.MustCompile(`(?m) >>   :authority 127\.0\.0\.1:\d+$`),
			regexp.MustCompile(`(?m) >>   :path /room\?x=1$`),
			regexp.MustCompile(`(?m) >>   authorization: \[13 bytes hidden\]$`),
			regexp.MustCompile(`(?m) >>   sec-websocket-version: 13$`),
			regexp.MustCompile(`(?m) << HTTP/2 HEADERS, stream 1$`),
			regexp.MustCompile(`(?m) <<   :status 200$`),
			regexp.MustCompile(`(?m) <<   sec-websocket-extensions: permessage-deflate`),
			regexp.MustCompile(`(?m) >> text fin rsv1 masked key=[0-9a-f]{8} len=\d+ \(compressed\)$`),
			regexp.MustCompile(`(?m) << message: text 520 B \(\d+ B on the wire, compressed\)$`),
			regexp.MustCompile(`(?m) >> close fin masked key=[0-9a-f]{8} len=2 code=1000 \(NormalClosure\)$`),
			regexp.MustCompile(`(?m) << close fin len=2 code=1000 \(NormalClosure\)$`),
			regexp.MustCompile(`(?m) << HTTP/2 END_STREAM, stream 1$`),
			regexp.MustCompile(`(?m) -- HTTP/2 connection closed: \d+ bytes sent, \d+ received \(TLS\)$`),
		} {
			if !want.MatchString(stderr) {
				t.Errorf("trace lacks %v:\n%s", want, stderr)
			}
		}
		if strings.Contains(stderr, "secret") {
			t.Errorf("trace shows the Authorization header:\n%s", stderr)
		}
	})

	t.Run("pipe-large", func(t *testing.T) {
		big := strings.Repeat("0123456789", 600_000) // 6 MB: beyond every flow-control window
		in := "a\n" + big + "\nb\n"
		code, stdout, stderr := runDuplexInput(t, ctx, bin, in,
			"connect", "--http2", "--ca", certFile, "--wait", "2s", echo.addr)
		if code != exitOK || stdout != in {
			t.Fatalf("exit %d, %d bytes out of %d, stderr:\n%s", code, len(stdout), len(in), stderr)
		}
	})

	t.Run("insecure-self-signed", func(t *testing.T) {
		self := startDuplex(t, ctx, bin, `^TLS certificate made at start, SHA-256 fingerprint ([0-9A-F:]+)$`,
			"echo", "--listen", "127.0.0.1:0", "--tls-self-signed")
		waitFor(t, self.stdout, "\n")
		m := regexp.MustCompile(`(?m)^duplex echo listening on (wss://127\.0\.0\.1:\d+)$`).FindStringSubmatch(self.stdout.String())
		if m == nil {
			waitFor(t, self.stdout, "listening on")
			m = regexp.MustCompile(`(?m)^duplex echo listening on (wss://127\.0\.0\.1:\d+)$`).FindStringSubmatch(self.stdout.String())
		}
		self.addr = m[1]
		code, stdout, stderr := runDuplexInput(t, ctx, bin, "hi", "connect", "--http2", "--insecure", "--once", "--trace", self.addr)
		if code != exitOK || stdout != "hi\n" || !strings.Contains(stderr, `ALPN "h2"`) {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
		// Without --insecure the self-signed certificate is refused.
		code, _, stderr = runDuplexInput(t, ctx, bin, "hi", "connect", "--http2", "--once", self.addr)
		if code != exitError || !strings.Contains(stderr, "certificate") {
			t.Fatalf("without --insecure: exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// TestConnectHTTP2Refused: a server that speaks HTTP/2 but did not
// advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (duplex echo run with
// GODEBUG=http2xconnect=0), and one that speaks only HTTP/1.1, fail
// --http2 with an error that says which, and --http2=fallback connects
// over HTTP/1.1 and says why on stderr.
func TestConnectHTTP2Refused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuplex(t, ctx)
	certFile, keyFile := writeSelfSigned(t)
	t.Setenv("GODEBUG", "http2xconnect=0") // for the echo server started next
	noSetting := startDuplex(t, ctx, bin, `^duplex echo listening on (wss://127\.0\.0\.1:\d+)$`,
		"echo", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	os.Unsetenv("GODEBUG")

	http1 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, p, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, p)
			c.Close(websocket.StatusNormalClosure, "")
		}
	}))
	http1.StartTLS() // EnableHTTP2 unset: ALPN offers http/1.1 alone
	defer http1.Close()
	http1CA := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(http1CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: http1.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	http1URL := "wss://" + strings.TrimPrefix(http1.URL, "https://")

	for _, tc := range []struct {
		name, url, ca, refusal, fallback string
	}{
		{"no-setting", noSetting.addr, certFile, "did not send SETTINGS_ENABLE_CONNECT_PROTOCOL", "extended connect not supported by the server"},
		{"http1-only", http1URL, http1CA, `does not speak HTTP/2 (ALPN did not choose h2)`, `chose "http/1.1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runDuplexInput(t, ctx, bin, "hi", "connect", "--http2", "--ca", tc.ca, "--once", tc.url)
			if code != exitError || stdout != "" || !strings.Contains(stderr, tc.refusal) {
				t.Errorf("--http2: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, tc.refusal)
			}
			code, stdout, stderr = runDuplexInput(t, ctx, bin, "hi", "connect", "--http2=fallback", "--ca", tc.ca, "--once", tc.url)
			if code != exitOK || stdout != "hi\n" ||
				!strings.Contains(stderr, "connected over HTTP/1.1: the server does not take WebSockets over HTTP/2") ||
				!strings.Contains(stderr, tc.fallback) {
				t.Errorf("--http2=fallback: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
		})
	}
}

// TestConnectHTTP2UsageErrors: --http2 takes only or fallback, wants a
// wss:// URL, and no proxy.
func TestConnectHTTP2UsageErrors(t *testing.T) {
	wantUsageError(t, `--http2 must be only or fallback, not "always"`, "connect", "--http2=always", "wss://127.0.0.1:1")
	wantUsageError(t, "--http2 needs a wss:// URL", "connect", "--http2", "ws://127.0.0.1:1")
	wantUsageError(t, "--http2 and --proxy exclude each other", "connect", "--http2", "--proxy", "http://127.0.0.1:2", "wss://127.0.0.1:1")
	wantUsageError(t, "--http2 needs a wss:// URL", "bench", "--http2", "ws://127.0.0.1:1")
}
