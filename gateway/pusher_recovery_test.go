package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPusherRecovery: the recovery extension. On an app with history,
// events carry an id and a subscription with "recovery" gets the
// channel's id; one that gives "since" gets the events after it, in
// order, before live ones, and "recovered"; an id of another epoch gets
// recovered false and nothing. On an app without history, events carry
// no id and subscription_succeeded's data is Pusher's.
func TestPusherRecovery(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) {
		cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
		cfg.Pusher.Apps[0].HistorySize = 10
	})
	ctx := context.Background()
	trigger := func(app string, n int) {
		t.Helper()
		if err := ts.PusherTrigger(ctx, app, "tick", []string{"feed"}, json.RawMessage(strconv.Quote(strconv.Itoa(n)))); err != nil {
			t.Fatal(err)
		}
	}
	subscribe := func(key string, data map[string]any) (*client, map[string]any) {
		c, _ := dialPusher(t, ts, key)
		data["channel"] = "feed"
		c.pusherSend("pusher:subscribe", "", data)
		m := c.nextEvent("pusher_internal:subscription_succeeded")
		var d map[string]any
		if err := json.Unmarshal([]byte(m.str("data")), &d); err != nil {
			t.Fatalf("subscription_succeeded data %q", m.str("data"))
		}
		return c, d
	}
	trigger("app1", 0)
	a, d := subscribe("key1", map[string]any{"recovery": true})
	first, _ := d["id"].(string)
	if !strings.HasSuffix(first, ":1") || d["recovered"] != nil {
		t.Fatalf("subscription data %v", d)
	}
	trigger("app1", 1)
	m := a.nextEvent("tick")
	last := m.str("id")
	if m.str("data") != "1" || !strings.HasSuffix(last, ":2") || strings.TrimSuffix(last, "2") != strings.TrimSuffix(first, "1") {
		t.Fatalf("event %v after id %s", m, first)
	}
	a.conn.CloseNow()
	for n := 2; n < 5; n++ { // missed
		trigger("app1", n)
	}
	b, d := subscribe("key1", map[string]any{"since": last})
	if d["recovered"] != true || !strings.HasSuffix(d["id"].(string), ":5") {
		t.Fatalf("recovering subscription data %v", d)
	}
	trigger("app1", 5)
	for n := 2; n <= 5; n++ {
		if m := b.nextEvent("tick"); m.str("data") != strconv.Itoa(n) {
			t.Fatalf("got %v, want event %d", m, n)
		}
	}
	c, d := subscribe("key1", map[string]any{"since": "other-epoch:3"})
	if d["recovered"] != false {
		t.Fatalf("another epoch: %v", d)
	}
	c.quiet(100 * time.Millisecond)

	// Without history: Pusher's data, no ids.
	o, d := subscribe("key2", map[string]any{})
	if len(d) != 0 {
		t.Fatalf("subscription data without history %v", d)
	}
	trigger("app2", 1)
	if m := o.nextEvent("tick"); m.str("id") != "" {
		t.Fatalf("event with an id without history: %v", m)
	}
}
