package cli

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway"
	"github.com/duplexws/duplex/internal/testcert"
	"github.com/duplexws/duplex/websocket"
)

// TestServeBinaryTLS runs the real binary with --tls-cert and --tls-key:
// it says https, serves its pages and health over TLS, speaks the gateway
// protocol over wss to a client that trusts the certificate, and refuses
// one that does not.
func TestServeBinaryTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	dir := t.TempDir()
	cert, err := testcert.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := cert.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, ctx, `^duplex serve listening on (https://127\.0\.0\.1:\d+)/$`,
		"serve", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)

	tlsConfig := cert.ClientConfig()
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 10 * time.Second}
	defer httpc.CloseIdleConnections()
	for path, want := range map[string]string{"/healthz": "ok", "/duplex.js": "export class Client"} {
		resp, err := httpc.Get(p.addr + path)
		if err != nil {
			t.Fatalf("GET %s over TLS: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s = %d %.100q, %v; want %q", path, resp.StatusCode, body, err, want)
		}
	}

	url := "wss" + strings.TrimPrefix(p.addr, "https") + "/ws"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{gateway.Subprotocol}, TLSConfig: tlsConfig})
	if err != nil {
		t.Fatalf("wss Dial: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"method":"connect"}`+"\n"+`{"id":2,"method":"subscribe","channel":"demo:tls"}`+"\n"+`{"id":3,"method":"publish","channel":"demo:tls","data":"over tls"}`)); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for !strings.Contains(got.String(), `"push":"pub"`) {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading over wss: %v (so far %s)", err, got.String())
		}
		got.Write(msg)
		got.WriteByte('\n')
	}
	if !strings.Contains(got.String(), `"over tls"`) || strings.Contains(got.String(), `"error"`) {
		t.Fatalf("over wss the gateway said:\n%s", got.String())
	}
	c.Close(websocket.StatusNormalClosure, "")

	// A client that does not trust the certificate gets no connection.
	if _, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{gateway.Subprotocol}}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Dial without trusting the certificate = %v, want a certificate error", err)
	}
}
