package redis_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
)

func do(t *testing.T, s *testredis.Server, args ...string) any {
	t.Helper()
	v, err := s.Do(args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return v
}

func keys(t *testing.T, s *testredis.Server) []string {
	t.Helper()
	var out []string
	for _, k := range do(t, s, "KEYS", "*").([]any) {
		out = append(out, k.(string))
	}
	slices.Sort(out)
	return out
}

// TestReadsCreateNothing: reading channels that were never written, as an
// attacker may do with any number of names, leaves no key behind.
func TestReadsCreateNothing(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	b, _ := start(t, redis.Options{Addrs: []string{srv.Addr()}})
	ctx := context.Background()
	for i := range 20 {
		ch := fmt.Sprintf("never-written-%d", i)
		h, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1, Since: &broker.Position{Offset: 3, Epoch: "e"}})
		if err != nil || h.Position != (broker.Position{}) || len(h.Publications) != 0 {
			t.Fatalf("History(%q): %+v, %v", ch, h, err)
		}
		if _, err := b.Presence(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := b.PresenceStats(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if err := b.RemovePresence(ctx, ch, "c1"); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if err := b.Unsubscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, ch, []byte(`{}`), nil, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if k := keys(t, srv); len(k) != 0 {
		t.Errorf("keys after reads: %v", k)
	}
}

// TestKeysExpire: every key the broker writes has an expiry: the
// stream's position lives StreamTTL (at least HistoryTTL), its history as
// long as its newest publication, presence as long as its longest-lived
// member; nothing lives forever on a shared server.
func TestKeysExpire(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	b, _ := start(t, redis.Options{Addrs: []string{srv.Addr()}, Prefix: "app"})
	ctx := context.Background()
	publish := func(ch string, opts broker.PublishOptions) {
		t.Helper()
		if _, err := b.Publish(ctx, ch, []byte(`{}`), nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	publish("default", broker.PublishOptions{HistorySize: 5})
	publish("short", broker.PublishOptions{HistorySize: 5, StreamTTL: time.Minute, HistoryTTL: 10 * time.Second})
	publish("history-outlives", broker.PublishOptions{HistorySize: 5, StreamTTL: time.Minute, HistoryTTL: time.Hour})
	if err := b.AddPresence(ctx, "room", &broker.ClientInfo{Client: "c1", User: "u1"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPresence(ctx, "room", &broker.ClientInfo{Client: "c2", User: "u1"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"app:m:default":          broker.DefaultStreamTTL,
		"app:h:default":          broker.DefaultStreamTTL,
		"app:m:short":            time.Minute,
		"app:h:short":            10 * time.Second,
		"app:m:history-outlives": time.Hour,
		"app:h:history-outlives": time.Hour,
		"app:p:room":             time.Minute, // the default PresenceTTL, the longest
		"app:z:room":             time.Minute,
		"app:u:room":             time.Minute,
	}
	got := keys(t, srv)
	if !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Errorf("keys %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	for k, ttl := range want {
		pttl := time.Duration(do(t, srv, "PTTL", k).(int64)) * time.Millisecond
		if pttl > ttl || pttl < ttl-5*time.Second {
			t.Errorf("%s expires in %v, want %v", k, pttl, ttl)
		}
	}
}

// testClusterLayout: on a Cluster, the keys and the shard channel of one
// channel share a hash slot, and the shards spread over every master.
func testClusterLayout(t *testing.T, c *testredis.Cluster) {
	b, _ := start(t, redis.Options{Addrs: c.Addrs(), Prefix: "layout"})
	ctx := context.Background()
	masters := make(map[string]bool)
	for i := range 64 {
		ch := fmt.Sprintf("room-%d", i)
		if _, err := b.Publish(ctx, ch, []byte(`{}`), nil, broker.PublishOptions{HistorySize: 1}); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, ch, &broker.ClientInfo{Client: "c", User: "u"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	n0 := c.Nodes()[0]
	for _, n := range c.Nodes() {
		for _, k := range do(t, n, "KEYS", "layout*").([]any) {
			k := k.(string)
			masters[n.Addr()] = true
			// layout:{<shard>}:<kind>:<channel>
			rest, ok := strings.CutPrefix(k, "layout:{")
			tag, after, ok2 := strings.Cut(rest, "}:")
			if !ok || !ok2 {
				t.Fatalf("key %q outside the layout", k)
			}
			channel := after[2:]
			slot := do(t, n0, "CLUSTER", "KEYSLOT", k)
			if want := do(t, n0, "CLUSTER", "KEYSLOT", "{"+tag+"}"); slot != want {
				t.Errorf("key %q in slot %v, its tag's %v", k, slot, want)
			}
			if cs := do(t, n0, "CLUSTER", "KEYSLOT", "layout:{"+tag+"}:c:"+channel); cs != slot {
				t.Errorf("channel of %q in slot %v, the key's %v", k, cs, slot)
			}
		}
	}
	if len(masters) != testredis.ClusterSize {
		t.Errorf("keys on %d masters, want all %d", len(masters), testredis.ClusterSize)
	}
}
