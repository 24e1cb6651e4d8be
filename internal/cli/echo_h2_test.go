package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestEchoTLSServesHTTP1AndHTTP2: duplex echo with --tls-cert and
// --tls-key serves WebSockets over HTTP/1.1 on its port (our client echoes
// through it), and HTTP/2 on the same port with extended CONNECT enabled:
// ALPN picks h2 and the server's first SETTINGS frame holds
// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, which Go sends only when the
// process runs with GODEBUG=http2xconnect=1, so echo has run itself again
// with it (the test's environment does not set it).
func TestEchoTLSServesHTTP1AndHTTP2(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "http2xconnect") {
		t.Skip("GODEBUG sets http2xconnect already: the test would not see echo set it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cert, err := selfSignedCert(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	p := startBinary(t, ctx, `^duplex echo listening on (wss://127\.0\.0\.1:\d+)$`,
		"echo", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)

	t.Run("http1", func(t *testing.T) {
		c, resp, err := websocket.Dial(ctx, p.addr, &websocket.DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if resp.ProtoMajor != 1 {
			t.Fatalf("answered over %s", resp.Proto)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("over tls")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != "over tls" {
			t.Fatalf("echo %q, %v", got, err)
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("http2-extended-connect", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(p.addr, "wss://"), &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
			t.Fatalf("ALPN chose %q, not h2", got)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The client preface and an empty SETTINGS frame (RFC 9113 section 3.4).
		if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
			t.Fatal(err)
		}
		var head [9]byte
		if _, err := io.ReadFull(conn, head[:]); err != nil {
			t.Fatal(err)
		}
		n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		if head[3] != 0x4 || n%6 != 0 {
			t.Fatalf("first frame of type %#x, length %d: not SETTINGS", head[3], n)
		}
		settings := make([]byte, n)
		if _, err := io.ReadFull(conn, settings); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 6 {
			if binary.BigEndian.Uint16(settings[i:]) == 0x8 && binary.BigEndian.Uint32(settings[i+2:]) == 1 {
				return
			}
		}
		t.Fatalf("SETTINGS % x lack SETTINGS_ENABLE_CONNECT_PROTOCOL = 1", settings)
	})
}
