package cli

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// reportHandler accepts a WebSocket, reads one message and answers with
// what the handshake carried: subprotocol, Origin, X-Test, the number of
// client certificates, and the message.
func reportHandler(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v2"}, InsecureSkipVerifyOrigin: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	_, msg, err := c.Read(r.Context())
	if err != nil {
		return
	}
	certs := 0
	if r.TLS != nil {
		certs = len(r.TLS.PeerCertificates)
	}
	reply := fmt.Sprintf("%q %q %q %d %s", c.Subprotocol(), r.Header.Get("Origin"), r.Header.Get("X-Test"), certs, msg)
	if c.Write(r.Context(), websocket.MessageText, []byte(reply)) == nil {
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// startTLSReporter runs reportHandler over TLS, requiring a client
// certificate, and returns its wss:// URL and two PEM files: the server's
// certificate, to trust with --ca, and a certificate with its key, to
// present with --cert.
func startTLSReporter(t *testing.T) (url, caFile, certFile string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(reportHandler))
	// The server takes any client certificate: its own will do.
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refusals are the test's
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cert := srv.TLS.Certificates[0]
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "client.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	both := append(ca, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)
	if os.WriteFile(caFile, ca, 0o600) != nil || os.WriteFile(certFile, both, 0o600) != nil {
		t.Fatal("writing the PEM files")
	}
	return "wss" + strings.TrimPrefix(srv.URL, "https"), caFile, certFile
}

// startProxy runs an HTTP proxy on 127.0.0.1 that only tunnels, with
// CONNECT, until the test ends, and returns its URL.
func startProxy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			open[c] = true
		} else {
			delete(open, c)
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c, true)
			wg.Go(func() {
				defer track(c, false)
				tunnel(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// tunnel serves one CONNECT request on c.
func tunnel(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, testTimeout)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		io.Copy(up, br)
		up.Close()
		close(done)
	}()
	io.Copy(c, up)
	c.Close() // ends the copy the other way
	<-done
}

func TestConnectOptions(t *testing.T) {
	wssURL, caFile, certFile := startTLSReporter(t)
	plain := httptest.NewServer(http.HandlerFunc(reportHandler))
	defer plain.Close()
	wsURL := "ws" + strings.TrimPrefix(plain.URL, "http")
	proxy := startProxy(t)

	handshake := []string{"--subprotocol", "chat.v1", "--subprotocol", "chat.v2", "--origin", "https://app.example", "-H", "X-Test: yes"}
	tlsFlags := []string{"--ca", caFile, "--cert", certFile}
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		stdout string
		stderr []string // regular expressions
	}{
		{
			name:   "Headers",
			args:   append(handshake, wsURL),
			stdout: `"chat.v2" "https://app.example" "yes" 0 hi`,
		},
		{
			name:   "ClientCertificate",
			args:   append(tlsFlags, wssURL),
			stdout: `"" "" "" 1 hi`,
		},
		{
			name:   "NoClientCertificate",
			args:   []string{"--ca", caFile, wssURL},
			status: exitError,
			stderr: []string{`remote error: tls: certificate required`},
		},
		{
			name:   "UnknownCA",
			args:   []string{"--cert", certFile, wssURL},
			status: exitError,
			stderr: []string{`certificate signed by unknown authority`},
		},
		{
			name:   "Insecure",
			args:   []string{"--insecure", "--cert", certFile, wssURL},
			stdout: `"" "" "" 1 hi`,
		},
		{
			// For wss://, duplex does TLS itself so that the trace shows
			// the frames.
			name:   "TraceTLS",
			args:   append(append([]string{"--trace"}, tlsFlags...), wssURL),
			stdout: `"" "" "" 1 hi`,
			stderr: []string{
				` -- TLS 1\.3, TLS_\w+, ALPN "http/1\.1", server certificate .+ issued by .+\n`,
				` >> GET / HTTP/1\.1\n`, ` >> Host: 127\.0\.0\.1:\d+\n`,
				` >> text fin masked key=[0-9a-f]{8} len=2\n`, ` << text fin len=\d+\n`,
			},
		},
		{
			name:   "TraceProxy",
			args:   []string{"--trace", "--proxy", proxy, wsURL},
			stdout: `"" "" "" 0 hi`,
			stderr: []string{` >> CONNECT 127\.0\.0\.1:\d+ HTTP/1\.1\n`, ` << HTTP/1\.1 200 Connection established\n`,
				` >> GET / HTTP/1\.1\n`, ` << HTTP/1\.1 101 Switching Protocols\n`, ` << text fin len=\d+\n`},
		},
		{
			// Through a proxy, TLS runs in the tunnel Dial makes: the
			// trace can only count bytes.
			name:   "TraceProxyTLS",
			args:   append(append([]string{"--trace", "--proxy", proxy}, tlsFlags...), wssURL),
			stdout: `"" "" "" 1 hi`,
			stderr: []string{` -- wss:// through a proxy: TLS runs inside the tunnel, so only byte counts can be shown\n`,
				` >> \d+ bytes \(encrypted\)\n`, ` << \d+ bytes \(encrypted\)\n`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"connect", "--once"}, tc.args...)
			code, stdout, stderr := runCLI(t, strings.NewReader("hi"), args...)
			want := ""
			if tc.stdout != "" {
				want = tc.stdout + "\n"
			}
			if code != tc.status || stdout != want {
				t.Errorf("exit %d, stdout %q; want %d and %q; stderr:\n%s", code, stdout, tc.status, want, stderr)
			}
			for _, re := range tc.stderr {
				if !regexp.MustCompile(re).MatchString(stderr) {
					t.Errorf("stderr lacks %s:\n%s", re, stderr)
				}
			}
		})
	}
}

// TestConnectPingInterval checks that --ping-interval pings, in the trace.
func TestConnectPingInterval(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var stdout, stderr lockedBuffer
	exit := startCommand(t, testContext(t), r, &stdout, &stderr, "connect", "--trace", "--wait", "0", "--ping-interval", "10ms", srv.url)
	waitFor(t, &stderr, ">> ping fin masked")
	waitFor(t, &stderr, "<< pong fin len=8 payload=")
	w.Close()
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("exit %d; stderr:\n%s", code, &stderr)
	}
}
