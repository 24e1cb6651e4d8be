package interop

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestH2NodeClientToOurServer: Node's http2 module opens three WebSockets
// with extended CONNECT (:protocol websocket) as streams of one session to
// our server, and ws's framing on each stream exchanges text and binary
// messages of 0 B to 4 MiB and the close handshake. The server checks
// that each arrived as an HTTP/2 extended CONNECT, on one TCP connection,
// and that each echo loop ended with the client's normal close.
func TestH2NodeClientToOurServer(t *testing.T) {
	requireNode(t)
	certs := newTestCerts(t)
	srv := startH2Server(t, certs, nil, nil)
	const conns = 3
	proc := startPeer(t, 90*time.Second, nil, "node", "js/h2_ws.mjs", "client", srv.url+"/node", certs.certFile, fmt.Sprint(conns))
	lines := proc.output(t)
	if len(lines) != conns {
		t.Fatalf("Node printed %d results, want %d: %q", len(lines), conns, lines)
	}
	for _, line := range lines {
		var r struct {
			Status, Checked, CloseCode int
			CloseReason                string
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		// 8 sizes, text and binary; our server answers the close with
		// the client's code.
		if r.Status != 200 || r.Checked != 16 || r.CloseCode != 1000 {
			t.Fatalf("Node reports %+v", r)
		}
	}
	srv.close()
	if n := srv.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections for one Node session", n)
	}
	for _, a := range srv.arrived() {
		if a != "HTTP/2.0 CONNECT websocket" {
			t.Fatalf("a handshake arrived as %q", a)
		}
	}
	for _, end := range srv.endings() {
		if end != nil {
			t.Fatalf("an echo loop ended with %v", end)
		}
	}
	if len(srv.endings()) != conns {
		t.Fatalf("%d echo loops ended, want %d", len(srv.endings()), conns)
	}
}
