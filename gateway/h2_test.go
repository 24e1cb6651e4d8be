package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect" // extended CONNECT in this test binary's HTTP/2 servers
)

// h2Gateway is a gateway served twice: over TLS with HTTP/2 (its
// HTTPServer, as duplex serve runs it), where the tests' WebSockets go,
// and over plain HTTP for the metrics and the helpers that read them.
type h2Gateway struct {
	*testServer
	tls      *httptest.Server
	wssURL   string       // wss://…/ws
	tcpConns atomic.Int32 // TCP connections the TLS server accepted
}

func newH2Gateway(t *testing.T, mutate func(*Config)) *h2Gateway {
	t.Helper()
	g := &h2Gateway{testServer: newServer(t, mutate)}
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = g.HTTPServer()
	guard := hs.Config.ConnState
	hs.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			g.tcpConns.Add(1)
		}
		guard(c, st)
	}
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	g.tls = hs
	g.wssURL = "wss" + strings.TrimPrefix(hs.URL, "https") + "/ws"
	return g
}

// transport returns an HTTP/2 client whose WebSockets share a connection,
// closed when the test ends.
func (g *h2Gateway) transport(t *testing.T) *h2client.Transport {
	tr := &h2client.Transport{TLSConfig: g.tls.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func h2Opts(tr *h2client.Transport) *websocket.DialOptions {
	return &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTP2Transport: tr}
}

// TestH2Sessions: WebSockets to /ws over HTTP/2 are sessions like any:
// four of them on one TCP connection connect, subscribe, publish and
// receive; the per-IP limit counts streams (the fourth is refused with
// 4006); one closes with 1000 and the others go on; the gateway's
// shutdown closes them with 1001.
func TestH2Sessions(t *testing.T) {
	g := newH2Gateway(t, func(cfg *Config) { cfg.Limits.MaxConnectionsPerIP = 3 })
	tr := g.transport(t)
	alice := dialClient(t, g.wssURL, h2Opts(tr))
	alice.ok("connect", msg{"token": token(t, map[string]any{"sub": "alice"})})
	var subs []*client
	for range 2 {
		c := dialClient(t, g.wssURL, h2Opts(tr))
		c.ok("connect", nil)
		c.ok("subscribe", msg{"channel": "chat:room"})
		subs = append(subs, c)
	}
	alice.ok("publish", msg{"channel": "chat:room", "data": msg{"text": "hi over h2"}})
	for _, c := range subs {
		if m := c.nextPush("pub"); m.obj("data").str("text") != "hi over h2" {
			t.Fatalf("push %v", m)
		}
	}

	// Refused as the session starts, before any command: a connect sent
	// now may find the stream closed already.
	fourth := dialClient(t, g.wssURL, h2Opts(tr))
	expectClose(t, fourth, CloseConnectionLimit, "")

	if n := g.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections carried the WebSockets, want 1 (HTTP/2 streams)", n)
	}
	wantMetric(t, g.http.URL, connGauge, "", 3)

	if err := subs[0].conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, g.http.URL, connGauge, "", func(v float64) bool { return v == 2 })
	alice.ok("publish", msg{"channel": "chat:room", "data": msg{"text": "again"}})
	if m := subs[1].nextPush("pub"); m.obj("data").str("text") != "again" {
		t.Fatalf("push %v", m)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectClose(t, alice, websocket.StatusGoingAway, "")
	expectClose(t, subs[1], websocket.StatusGoingAway, "")
}

// TestH2SlowConsumerResetsItsStreamOnly: a subscriber over HTTP/2 that
// stops reading fills its stream's flow-control window, then its queue,
// and is let go as a slow consumer; its stream ends, and another
// WebSocket on the same TCP connection goes on as before.
func TestH2SlowConsumerResetsItsStreamOnly(t *testing.T) {
	g := newH2Gateway(t, slowNamespaces)
	tr := g.transport(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, _, err := websocket.Dial(ctx, g.wssURL, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTP2Transport: tr, ReadBufferSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	sc.SetReadLimit(-1)
	t.Cleanup(func() { sc.CloseNow() })
	slow := &rawConn{t: t, conn: sc}
	slow.call(1, "connect", nil)
	slow.call(2, "subscribe", msg{"channel": "slowd:x"})

	other := dialClient(t, g.wssURL, h2Opts(tr))
	other.ok("connect", nil)
	other.ok("subscribe", msg{"channel": "chat:other"})

	publishUntil(t, g.testServer, "slowd:x", func() bool {
		return metricValue(t, g.http.URL, disconnects, `reason="slow_consumer"`) >= 1
	})
	// The session ends (its handler returns) though its writes were stuck.
	waitMetric(t, g.http.URL, connGauge, "", func(v float64) bool { return v == 1 })
	err = slow.readToEnd(t)
	if code := websocket.CloseStatus(err); code != -1 && code != CloseSlowConsumer {
		t.Fatalf("the slow stream ended with %d, want 4002 or a reset: %v", code, err)
	}

	if _, err := g.Publish(context.Background(), "chat:other", json.RawMessage(`{"text":"still here"}`)); err != nil {
		t.Fatal(err)
	}
	if m := other.nextPush("pub"); m.obj("data").str("text") != "still here" {
		t.Fatalf("push %v", m)
	}
	if n := g.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections: the slow consumer's abort reached the shared connection", n)
	}
	if n := tr.Connections(); n != 1 {
		t.Fatalf("the client dialled %d connections", n)
	}
}

// TestH2LeavesPendingCaps: an HTTP/2 connection stops counting against
// MaxPendingConnections once it carries a WebSocket, as an HTTP/1.1
// connection does at its upgrade: with a cap of 1, a second client can
// connect while the first one's WebSocket is open.
func TestH2LeavesPendingCaps(t *testing.T) {
	g := newH2Gateway(t, func(cfg *Config) { cfg.Limits.MaxPendingConnections = 1 })
	first := dialClient(t, g.wssURL, h2Opts(g.transport(t)))
	first.ok("connect", nil)
	waitMetric(t, g.http.URL, "duplex_pending_connections", "", func(v float64) bool { return v == 0 })

	second, err := tryDial(t, g.wssURL, h2Opts(g.transport(t)))
	if err != nil {
		t.Fatalf("a second client while the first holds a WebSocket: %v", err)
	}
	second.ok("connect", nil)
	if n := g.tcpConns.Load(); n != 2 {
		t.Fatalf("%d TCP connections, want 2", n)
	}
}

// TestH2Pusher: a Pusher client over HTTP/2 — as pusher-js in a browser on
// an https:// page of the gateway, which opens its WebSocket as an
// extended CONNECT on the page's connection — gets its session, and two of
// them on one TCP connection see each other's client events.
func TestH2Pusher(t *testing.T) {
	g := newH2Gateway(t, func(cfg *Config) { cfg.Pusher.Apps = testPusherApps })
	tr := g.transport(t)
	url := strings.TrimSuffix(g.wssURL, "/ws") + "/app/key1?protocol=7&client=js&version=8.6.0"
	dial := func() (*client, string) {
		c := dialClient(t, url, &websocket.DialOptions{HTTP2Transport: tr})
		m := c.next()
		var d struct {
			SocketID string `json:"socket_id"`
		}
		if m.str("event") != "pusher:connection_established" || json.Unmarshal([]byte(m.str("data")), &d) != nil {
			t.Fatalf("first event over HTTP/2: %v", m)
		}
		return c, d.SocketID
	}
	a, aID := dial()
	b, bID := dial()
	const channel = "private-h2"
	for _, c := range []struct {
		cl *client
		id string
	}{{a, aID}, {b, bID}} {
		c.cl.pusherSend("pusher:subscribe", "", msg{"channel": channel, "auth": channelAuth("key1", "secret1", c.id+":"+channel)})
		if m := c.cl.next(); m.str("event") != "pusher_internal:subscription_succeeded" {
			t.Fatalf("subscribe over HTTP/2: %v", m)
		}
	}
	a.pusherSend("client-typing", channel, msg{"who": "a"})
	if m := b.next(); m.str("event") != "client-typing" || m.str("channel") != channel {
		t.Fatalf("client event over HTTP/2: %v", m)
	}
	if n := g.tcpConns.Load(); n != 1 {
		t.Fatalf("%d TCP connections carried the Pusher WebSockets, want 1 (HTTP/2 streams)", n)
	}
}
