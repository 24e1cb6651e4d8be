package interop

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestPusherJSEncryptedAndCache: private-encrypted- and cache- channels
// with pusher-js and the pusher SDK. The SDK, given the master key,
// encrypts what it triggers and gives each subscriber the channel's shared
// secret in its authorization; pusher-js decrypts. The gateway only relays
// the ciphertext: a client whose authorization came from another master
// key receives the events and cannot read them. A cache channel gives a
// late subscriber the last event, and pusher:cache_miss before there is
// one.
func TestPusherJSEncryptedAndCache(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{{id: "7", key: "k7", secret: "s7"}})
	const masterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	const otherKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	alice := startPusherPeer(t, "alice", addr, "k7", "7", "s7", masterKey)
	bob := startPusherPeer(t, "bob", addr, "k7", "7", "s7", masterKey)
	eve := startPusherPeer(t, "eve", addr, "k7", "7", "s7", otherKey)
	for _, p := range []*pusherPeer{alice, bob, eve} {
		p.connected()
	}

	t.Run("encrypted", func(t *testing.T) {
		for _, p := range []*pusherPeer{alice, bob, eve} {
			p.send(map[string]any{"op": "subscribe", "channel": "private-encrypted-vault"})
			p.await("subscribed", "private-encrypted-vault")
		}
		alice.send(map[string]any{"op": "trigger", "channels": []string{"private-encrypted-vault"}, "event": "secret",
			"data": map[string]any{"pin": "1234"}})
		res, ev := alice.awaitBoth("trigger", "event")
		if res["status"] != float64(200) {
			t.Fatalf("trigger: %v", res)
		}
		for _, m := range []map[string]any{ev, bob.await("event", "private-encrypted-vault")} {
			if m["event"] != "secret" || fmt.Sprint(m["data"]) != "map[pin:1234]" {
				t.Fatalf("decrypted event %v", m)
			}
		}
		// Eve's shared secret is another one: pusher-js cannot decrypt,
		// fetches a new one (as wrong) and drops the event.
		eve.quiet(time.Second)
		// pusher-js refuses client events on encrypted channels itself.
		alice.send(map[string]any{"op": "client_event", "channel": "private-encrypted-vault", "event": "client-x", "data": 1})
		if m := alice.await("client_event_sent", ""); m["ok"] != false {
			t.Fatalf("client event on an encrypted channel: %v", m)
		}
		bob.quiet(200 * time.Millisecond)
	})

	t.Run("cache", func(t *testing.T) {
		for _, channel := range []string{"cache-prices", "private-encrypted-cache-prices"} {
			alice.send(map[string]any{"op": "subscribe", "channel": channel})
			alice.await("subscribed", channel)
			alice.await("cache_miss", channel)
			for _, n := range []int{1, 2} {
				alice.send(map[string]any{"op": "trigger", "channels": []string{channel}, "event": "price", "data": map[string]any{"n": n}})
				if _, ev := alice.awaitBoth("trigger", "event"); fmt.Sprint(ev["data"]) != fmt.Sprintf("map[n:%d]", n) {
					t.Fatalf("alice: %v", ev)
				}
			}
			bob.send(map[string]any{"op": "subscribe", "channel": channel})
			bob.await("subscribed", channel)
			if m := bob.await("event", channel); m["event"] != "price" || fmt.Sprint(m["data"]) != "map[n:2]" {
				t.Fatalf("bob's cached event: %v, want the last, n 2", m)
			}
			bob.quiet(200 * time.Millisecond)
		}
	})
}

// TestPusherJSQueries: the pusher SDK's get and trigger with info, signed
// by the SDK, against what pusher-js clients subscribed.
func TestPusherJSQueries(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{{id: "8", key: "k8", secret: "s8"}})
	alice := startPusherPeer(t, "alice", addr, "k8", "8", "s8")
	bob := startPusherPeer(t, "bob", addr, "k8", "8", "s8")
	for _, p := range []*pusherPeer{alice, bob} {
		p.connected()
		p.send(map[string]any{"op": "subscribe", "channel": "news"})
		p.await("subscribed", "news")
	}
	alice.send(map[string]any{"op": "subscribe", "channel": "presence-lobby", "user": map[string]any{"user_id": "alice"}})
	alice.await("subscribed", "presence-lobby")
	bob.send(map[string]any{"op": "subscribe", "channel": "presence-lobby", "user": map[string]any{"user_id": "bob"}})
	bob.await("subscribed", "presence-lobby")
	alice.await("member_added", "presence-lobby")

	for _, tc := range []struct {
		path   string
		params map[string]any
		status float64
		body   string
	}{
		{"/channels", nil, 200, `{"channels":{"news":{},"presence-lobby":{}}}`},
		{"/channels", map[string]any{"filter_by_prefix": "presence-", "info": "user_count"}, 200,
			`{"channels":{"presence-lobby":{"user_count":2}}}`},
		{"/channels/news", map[string]any{"info": "subscription_count"}, 200, `{"occupied":true,"subscription_count":2}`},
		{"/channels/presence-lobby/users", nil, 200, ""},
		{"/channels/news", map[string]any{"info": "user_count"}, 400, ""},
	} {
		alice.send(map[string]any{"op": "get", "path": tc.path, "params": tc.params})
		m := alice.await("get", "")
		if m["status"] != tc.status || tc.body != "" && m["body"] != tc.body {
			t.Errorf("get %s %v: %v, want %v %s", tc.path, tc.params, m, tc.status, tc.body)
		}
		if tc.path == "/channels/presence-lobby/users" {
			if b, _ := m["body"].(string); !strings.Contains(b, `{"id":"alice"}`) || !strings.Contains(b, `{"id":"bob"}`) {
				t.Errorf("users: %v", m)
			}
		}
	}
	alice.send(map[string]any{"op": "trigger", "channels": []string{"news", "presence-lobby"}, "event": "e", "data": 1,
		"info": "subscription_count"})
	var res map[string]any
	for res == nil {
		if m := alice.await("", ""); m["type"] == "trigger" {
			res = m
		}
	}
	if res["status"] != float64(200) || res["body"] != `{"channels":{"news":{"subscription_count":2},"presence-lobby":{"subscription_count":2}}}` {
		t.Fatalf("trigger with info: %v", res)
	}
}

// TestPusherJSWebhooks: the gateway's webhooks, caused by pusher-js
// clients, pass the pusher SDK's own webhook check (and fail it with
// another secret): channel_occupied, member_added, client_event,
// member_removed, channel_vacated.
func TestPusherJSWebhooks(t *testing.T) {
	requirePusherJS(t)
	lines := make(chan map[string]any, 100)
	startPeer(t, 2*time.Minute, func(line string) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			lines <- m
		}
	}, "node", "js/pusher_webhooks.mjs", "k9", "s9")
	var port float64
	select {
	case m := <-lines:
		port, _ = m["port"].(float64)
	case <-time.After(20 * time.Second):
		t.Fatal("the webhook receiver did not start")
	}
	addr := startPusherGateway(t, []pusherApp{{id: "9", key: "k9", secret: "s9", clientEvents: true,
		webhook: fmt.Sprintf("http://127.0.0.1:%d/hooks", int(port))}})
	alice := startPusherPeer(t, "alice", addr, "k9", "9", "s9")
	bob := startPusherPeer(t, "bob", addr, "k9", "9", "s9")
	for _, p := range []*pusherPeer{alice, bob} {
		p.connected()
	}
	var got []string
	expect := func(want ...string) {
		t.Helper()
		sort.Strings(want)
		timeout := time.After(15 * time.Second)
		for !slices.Equal(got, want) {
			select {
			case m := <-lines:
				if m["valid"] != true || m["valid_other"] != false {
					t.Fatalf("webhook: %v", m)
				}
				for _, e := range m["events"].([]any) {
					e := e.(map[string]any)
					s := fmt.Sprint(e["name"], " ", e["channel"])
					if e["user_id"] != nil {
						s += fmt.Sprint(" ", e["user_id"])
					}
					if e["event"] != nil {
						s += fmt.Sprint(" ", e["event"], " ", e["data"])
					}
					got = append(got, s)
				}
				sort.Strings(got)
			case <-timeout:
				t.Fatalf("webhook events %q, want %q", got, want)
			}
		}
	}
	alice.send(map[string]any{"op": "subscribe", "channel": "presence-lobby", "user": map[string]any{"user_id": "alice"}})
	alice.await("subscribed", "presence-lobby")
	bob.send(map[string]any{"op": "subscribe", "channel": "presence-lobby", "user": map[string]any{"user_id": "bob"}})
	bob.await("subscribed", "presence-lobby")
	expect("channel_occupied presence-lobby", "member_added presence-lobby alice", "member_added presence-lobby bob")
	alice.send(map[string]any{"op": "client_event", "channel": "presence-lobby", "event": "client-wave", "data": map[string]any{"hi": 1}})
	bob.await("event", "presence-lobby")
	alice.send(map[string]any{"op": "unsubscribe", "channel": "presence-lobby"})
	bob.send(map[string]any{"op": "unsubscribe", "channel": "presence-lobby"})
	expect("channel_occupied presence-lobby", "member_added presence-lobby alice", "member_added presence-lobby bob",
		`client_event presence-lobby alice client-wave {"hi":1}`,
		"member_removed presence-lobby alice", "member_removed presence-lobby bob", "channel_vacated presence-lobby")
}

// TestPusherJSRecovery: pusher-js with pusher_recovery.mjs, disconnected
// while events are triggered, gets them when it connects again and
// pusher-js subscribes again, in order, then live ones; a pusher-js
// without it, on the same channel, gets only live events, as from Pusher.
func TestPusherJSRecovery(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{{id: "12", key: "k12", secret: "s12", historySize: 100}})
	alice := startPusherPeer(t, "alice", addr, "k12", "12", "s12", "-", "recovery")
	bob := startPusherPeer(t, "bob", addr, "k12", "12", "s12")
	carol := startPusherPeer(t, "carol", addr, "k12", "12", "s12") // unchanged pusher-js
	for _, p := range []*pusherPeer{alice, bob, carol} {
		p.connected()
		p.send(map[string]any{"op": "subscribe", "channel": "feed"})
		p.await("subscribed", "feed")
	}
	trigger := func(n int) {
		t.Helper()
		bob.send(map[string]any{"op": "trigger", "channels": []string{"feed"}, "event": "tick", "data": n})
		for {
			if m := bob.await("", ""); m["type"] == "trigger" {
				if m["status"] != float64(200) {
					t.Fatalf("trigger: %v", m)
				}
				return
			}
		}
	}
	trigger(1)
	for _, p := range []*pusherPeer{alice, carol} {
		if m := p.await("event", "feed"); m["data"] != float64(1) {
			t.Fatalf("%s: %v", p.name, m)
		}
		p.send(map[string]any{"op": "disconnect"})
		for m := p.await("state", ""); m["current"] != "disconnected"; m = p.await("state", "") {
		}
	}
	for n := 2; n <= 4; n++ {
		trigger(n)
	}
	for _, p := range []*pusherPeer{alice, carol} {
		p.send(map[string]any{"op": "connect"})
		p.connected()
		p.await("subscribed", "feed")
	}
	trigger(5)
	if m := carol.await("event", "feed"); m["data"] != float64(5) {
		t.Fatalf("carol, without the extension, got %v, want only the live event 5", m)
	}
	carol.quiet(200 * time.Millisecond)
	for n := 2; n <= 5; n++ {
		if m := alice.await("event", "feed"); m["data"] != float64(n) {
			t.Fatalf("alice got %v, want the event %d", m, n)
		}
	}
	alice.quiet(200 * time.Millisecond)
}
