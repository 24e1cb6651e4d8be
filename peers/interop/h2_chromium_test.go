package interop

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	"github.com/duplexws/duplex/websocket/wstest"
)

// TestH2Chromium: Debian's Chromium loads a page over https:// from our
// server, which speaks HTTP/2 and advertises extended CONNECT, and opens
// WebSockets to the same origin. The server checks that each arrived as an
// extended CONNECT over HTTP/2; the page
// echoes text and binary messages of 0 B to 16 MiB both ways, without and
// with permessage-deflate, and closes from the page (1000) and, on one
// socket, from the server (4000).
func TestH2Chromium(t *testing.T) {
	requireChromium(t)
	certs := newTestCerts(t)
	srv := startH2Server(t, certs, nil, func(r *http.Request, c *websocket.Conn) error {
		if r.URL.RawQuery == "serverclose" {
			if _, _, err := c.Read(context.Background()); err != nil {
				return err
			}
			return c.Close(4000, "server bye")
		}
		err := wstest.Echo(context.Background(), c)
		if err == nil {
			c.Close(websocket.StatusNormalClosure, "")
		}
		return err
	})
	proc := startPeer(t, 3*time.Minute, nil, "node", "js/h2_chromium.mjs", srv.http.URL+"/page", t.TempDir())
	lines := proc.output(t)
	if len(lines) != 4 {
		t.Fatalf("the Chromium driver printed %d lines, want 4: %q", len(lines), lines)
	}
	var browser struct{ Browser string }
	json.Unmarshal([]byte(lines[0]), &browser)
	recordVersion(t, "chromium", browser.Browser)

	type result struct {
		Path, Extensions, Reason string
		Echoed, Code             int
		WasClean                 bool
		Errors                   []string
	}
	want := []result{
		{Path: "/plain", Extensions: "", Echoed: 16, Code: 1000, WasClean: true},
		{Path: "/deflate", Extensions: "permessage-deflate", Echoed: 16, Code: 1000, WasClean: true},
		{Path: "/plain?serverclose", Code: 4000, Reason: "server bye", WasClean: true},
	}
	for i, line := range lines[1:] {
		var got result
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		w := want[i]
		if got.Path != w.Path || len(got.Errors) != 0 || got.Echoed != w.Echoed || got.Code != w.Code || !got.WasClean ||
			(w.Reason != "" && got.Reason != w.Reason) || (w.Extensions == "") != (got.Extensions == "") {
			t.Errorf("socket %d: got %+v, want %+v", i, got, w)
		}
	}
	srv.close()
	arrivals := srv.arrived()
	if len(arrivals) != 3 {
		t.Fatalf("%d WebSocket handshakes arrived, want 3: %q", len(arrivals), arrivals)
	}
	for _, a := range arrivals {
		if a != "HTTP/2.0 CONNECT websocket" {
			t.Fatalf("a WebSocket arrived as %q, not an HTTP/2 extended CONNECT", a)
		}
	}
	// Chromium may open a spare connection besides the page's: the count
	// is logged, not checked (the many-streams-on-one-connection check is
	// TestH2NodeClientToOurServer's and TestH2OurClientManyConnsOneTCP's).
	t.Logf("Chromium made %d TCP connections", srv.tcpConns.Load())
	for _, end := range srv.endings() {
		if end != nil && websocket.CloseStatus(end) != 4000 {
			t.Errorf("a server Conn ended with %v", end)
		}
	}
}
