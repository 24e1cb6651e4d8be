package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testcert"
)

// TestServeBinaryHTTP2 runs duplex serve with TLS and duplex connect
// --http2 against it, both the real binary: the gateway serves /ws over
// HTTP/2 (an extended CONNECT on stream 1, answered 200, in the trace) and
// the session works there: connect, subscribe, publish and the
// publication back, then a clean close; duplex bench --mode subscribe
// --http2 delivers every publication to subscribers on shared TCP
// connections. A client without the gateway's
// subprotocol is closed with 4505 over HTTP/2 as over HTTP/1.1 (exit 3).
func TestServeBinaryHTTP2(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuplex(t, ctx)
	cert, err := testcert.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := cert.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := startDuplex(t, ctx, bin, `^duplex serve listening on https://(127\.0\.0\.1:\d+)/$`,
		"serve", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	url := "wss://" + p.addr + "/ws"

	code, stdout, stderr := runDuplexInput(t, ctx, bin, `{"text":"hi over h2"}`+"\n",
		"connect", "--http2", "--ca", certFile, "--trace", "--channel", "demo:h2", "--wait", "1s", url)
	if code != exitOK || stdout != `{"text":"hi over h2"}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		`ALPN "h2"`, "[ENABLE_CONNECT_PROTOCOL = 1]",
		">> HTTP/2 HEADERS (extended CONNECT), stream 1", ">>   :protocol websocket", ">>   :path /ws",
		">>   sec-websocket-protocol: duplex.v1.json", "<<   :status 200", "<<   sec-websocket-protocol: duplex.v1.json",
		"code=1000 (NormalClosure)", "<< HTTP/2 END_STREAM, stream 1",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("trace lacks %q:\n%s", want, stderr)
		}
	}

	// The fan-out bench over HTTP/2: 20 subscribers on 2 TCP connections
	// get every publication.
	code, stdout, stderr = runDuplexInput(t, ctx, bin, "", "bench", "--mode", "subscribe", "--http2", "--ca", certFile,
		"-c", "20", "--http2-streams", "10", "--messages", "5", "--rate", "20", "--progress", "0", "--json", url)
	if code != exitOK {
		t.Fatalf("bench --mode subscribe --http2: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if want := (benchHTTP2Report{Streams: 20, TCPConnections: 2, StreamsPerConn: 10}); r.HTTP2 == nil || *r.HTTP2 != want {
		t.Errorf("http2 report %+v, want %+v", r.HTTP2, want)
	}
	if d := r.Deliveries; d == nil || d.Expected != 100 || d.Received != 100 || d.Lost != 0 {
		t.Errorf("deliveries %+v, want 100 of 100", d)
	}

	code, _, stderr = runDuplexInput(t, ctx, bin, "hi", "connect", "--http2", "--ca", certFile, "--once", url)
	if code != 3 || !strings.Contains(stderr, "4505") {
		t.Fatalf("without the subprotocol: exit %d, stderr:\n%s; want exit 3 and close 4505", code, stderr)
	}
}
