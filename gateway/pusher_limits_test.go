package gateway

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
	"github.com/duplexws/duplex/websocket"
)

// pusherRefused dials key with header and checks that the connection is
// refused with pusher:error code, then closed with it.
func pusherRefused(t *testing.T, ts *testServer, key string, header http.Header, code int) {
	t.Helper()
	c := dialClient(t, pusherURL(ts, key, "?protocol=7"), &websocket.DialOptions{HTTPHeader: header})
	m := c.nextEvent("pusher:error")
	if got := int(m.obj("data").num("code")); got != code {
		t.Fatalf("pusher:error %v, want code %d", m, code)
	}
	if got, _ := c.closed(); int(got) != code {
		t.Fatalf("closed with %d, want %d", got, code)
	}
}

// TestPusherAppLimits: an app's connection cap (4004 over it, room again
// once one leaves), its own allowed origins (4009 for a page of another,
// other apps keep the gateway's), and a disabled app (4003, and 403 from
// the HTTP API).
func TestPusherAppLimits(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) {
		cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
		cfg.Pusher.Apps[0].MaxConnections = 2
		cfg.Pusher.Apps[0].Origins = []string{"*.example.com"}
		cfg.Pusher.Apps = append(cfg.Pusher.Apps, PusherApp{ID: "off", Key: "key3", Secret: "secret3", Disabled: true})
	})
	a, _ := dialPusher(t, ts, "key1")
	dialPusher(t, ts, "key1")
	pusherRefused(t, ts, "key1", nil, 4004)
	dialPusher(t, ts, "key2") // another app: its own count
	a.conn.CloseNow()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tryDial(t, pusherURL(ts, "key1", "?protocol=7"), &websocket.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.next().str("event") == "pusher:connection_established" {
			c.conn.CloseNow()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no room after a connection left")
		}
		time.Sleep(20 * time.Millisecond)
	}

	ts2 := newPusherServer(t, func(cfg *Config) {
		cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
		cfg.Pusher.Apps[0].Origins = []string{"*.example.com"}
		cfg.Pusher.Apps = append(cfg.Pusher.Apps, PusherApp{ID: "off", Key: "key3", Secret: "secret3", Disabled: true})
	})
	pusherRefused(t, ts2, "key1", http.Header{"Origin": {"https://evil.test"}}, 4009)
	c := dialClient(t, pusherURL(ts2, "key1", "?protocol=7"), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
	c.nextEvent("pusher:connection_established")
	// app2 keeps the gateway's origins: a foreign page fails the handshake.
	if _, err := tryDial(t, pusherURL(ts2, "key2", "?protocol=7"), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}}); err == nil {
		t.Fatal("app2 accepted a page of an origin the gateway does not allow")
	}
	pusherRefused(t, ts2, "key3", nil, 4003)
	if st, _ := pusherCall(t, ts2, "POST", "/apps/off/events", "secret3", nil, []byte(`{"name":"e","data":"1","channel":"a"}`)); st != 403 {
		t.Fatalf("disabled app's API: %d", st)
	}
}

// TestPusherAppLimitsTwoNodes: an app's connection cap counts the
// connections of every node of one redis-server.
func TestPusherAppLimitsTwoNodes(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	prefix := fmt.Sprintf("cap_%d", time.Now().UnixNano())
	node := func() *testServer {
		return newPusherServer(t, func(cfg *Config) {
			cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
			cfg.Pusher.Apps[0].MaxConnections = 2
			b, err := redis.New(redis.Options{Addrs: []string{rs.Addr()}, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Broker = b
		})
	}
	a, b := node(), node()
	dialPusher(t, a, "key1")
	dialPusher(t, b, "key1")
	pusherRefused(t, a, "key1", nil, 4004)
	pusherRefused(t, b, "key1", nil, 4004)
}
