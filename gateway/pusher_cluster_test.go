package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testnats"
	"github.com/duplexws/duplex/internal/testredis"
)

// TestPusherThreeNodes: three gateway nodes on one nats-server, and on one
// redis-server, with members joining on different nodes. Events
// triggered on one node reach Pusher subscribers on the others; presence
// is the channel's across nodes: the member list on subscribe, and
// member_added and member_removed once per user, whichever node its
// connections are on; a cache channel's last event is the channel's, not
// a node's; the HTTP API's counts are the channel's on every node.
func TestPusherThreeNodes(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		ns := testnats.Start(t, testnats.Options{})
		prefix := fmt.Sprintf("pusher_%d", time.Now().UnixNano())
		testPusherThreeNodes(t, func() broker.Broker {
			return nats.New(nats.Options{Servers: []string{ns.Addr()}, Prefix: prefix, ReconnectWait: 50 * time.Millisecond})
		})
	})
	t.Run("redis", func(t *testing.T) {
		rs := testredis.Start(t, testredis.Options{})
		prefix := fmt.Sprintf("pusher_%d", time.Now().UnixNano())
		testPusherThreeNodes(t, func() broker.Broker {
			b, err := redis.New(redis.Options{Addrs: []string{rs.Addr()}, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
}

func testPusherThreeNodes(t *testing.T, newBroker func() broker.Broker) {
	node := func() *testServer {
		return newPusherServer(t, func(cfg *Config) {
			cfg.Broker = newBroker()
			apps := slices.Clone(testPusherApps)
			apps[0].MaxPresenceMembers = 10 // alice, bob, dave and carol
			cfg.Pusher.Apps = apps
		})
	}
	a, b, third := node(), node(), node()

	join := func(ts *testServer, user string) (*client, int) {
		c, socket := dialPusher(t, ts, "key1")
		data := fmt.Sprintf(`{"user_id":%q}`, user)
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "presence-room", "channel_data": data,
			"auth": channelAuth("key1", "secret1", socket+":presence-room:"+data)})
		m := c.nextEvent("pusher_internal:subscription_succeeded")
		var d struct {
			Presence struct {
				Count int `json:"count"`
			} `json:"presence"`
		}
		if err := json.Unmarshal([]byte(m.str("data")), &d); err != nil {
			t.Fatal(err)
		}
		return c, d.Presence.Count
	}
	alice, n := join(a, "alice")
	if n != 1 {
		t.Fatalf("alice sees %d members", n)
	}
	bob, n := join(b, "bob")
	if n != 2 {
		t.Fatalf("bob, on the other node, sees %d members", n)
	}
	if m := alice.nextEvent("pusher_internal:member_added"); m.str("data") != `{"user_id":"bob"}` {
		t.Fatalf("alice: %v", m)
	}
	// A member joining on a third node is seen by the members of both.
	dave, n := join(third, "dave")
	if n != 3 {
		t.Fatalf("dave, on a third node, sees %d members", n)
	}
	for name, cl := range map[string]*client{"alice": alice, "bob": bob} {
		if m := cl.nextEvent("pusher_internal:member_added"); m.str("data") != `{"user_id":"dave"}` {
			t.Fatalf("%s: %v", name, m)
		}
	}
	// Bob's second connection, on alice's node, adds no member; when his
	// first goes he is still there.
	bob2, _ := join(a, "bob")
	bob.conn.CloseNow()
	alice.quiet(300 * time.Millisecond)
	bob2.conn.CloseNow()
	for name, cl := range map[string]*client{"alice": alice, "dave": dave} {
		if m := cl.nextEvent("pusher_internal:member_removed"); m.str("data") != `{"user_id":"bob"}` {
			t.Fatalf("%s: %v", name, m)
		}
	}

	// An event triggered on node b reaches alice on node a.
	if err := b.PusherTrigger(context.Background(), "app1", "news", []string{"presence-room"}, json.RawMessage(`"{\"n\":1}"`)); err != nil {
		t.Fatal(err)
	}
	if m := alice.nextEvent("news"); m.str("data") != `{"n":1}` || m.str("channel") != "presence-room" {
		t.Fatalf("alice: %v", m)
	}

	// A cache channel's last event, triggered on node a, is in the
	// broker's history: a subscriber on node b gets it.
	if err := a.PusherTrigger(context.Background(), "app1", "price", []string{"cache-quotes"}, json.RawMessage(`"42"`)); err != nil {
		t.Fatal(err)
	}
	c, _ := dialPusher(t, b, "key1")
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "cache-quotes"})
	c.nextEvent("pusher_internal:subscription_succeeded")
	if m := c.nextEvent("price"); m.str("data") != "42" || m.str("channel") != "cache-quotes" {
		t.Fatalf("cached event on the other node: %v", m)
	}

	// The HTTP API of either node counts every node's subscribers.
	joinPusher(t, a, "presence-room", "carol")
	for _, ts := range []*testServer{a, b, third} {
		st, body := pusherCall(t, ts, "GET", "/apps/app1/channels", "secret1",
			url.Values{"info": {"subscription_count"}}, nil)
		if st != 200 || body != `{"channels":{"cache-quotes":{"subscription_count":1},"presence-room":{"subscription_count":3}}}` {
			t.Fatalf("channels: %d %s", st, body)
		}
		_, body = pusherCall(t, ts, "GET", "/apps/app1/channels/presence-room/users", "secret1", nil, nil)
		if !strings.Contains(body, `"alice"`) || !strings.Contains(body, `"carol"`) || !strings.Contains(body, `"dave"`) || strings.Count(body, `"id"`) != 3 {
			t.Fatalf("users: %s", body)
		}
	}
}
