package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestPusherEncryptedChannels: a private-encrypted- channel is authorized
// like a private one and relays the triggered data as it is (the
// ciphertext pusher-js decrypts; the interop test decrypts it for real);
// client events on it are refused, as on Pusher.
func TestPusherEncryptedChannels(t *testing.T) {
	ts := newPusherServer(t, nil)
	a, sa := dialPusher(t, ts, "key1")
	b, sb := dialPusher(t, ts, "key1")
	const channel = "private-encrypted-doc"
	for _, c := range []struct {
		c  *client
		id string
	}{{a, sa}, {b, sb}} {
		c.c.pusherSend("pusher:subscribe", "", map[string]any{"channel": channel, "auth": channelAuth("key1", "secret1", c.id+":"+channel)})
		c.c.nextEvent("pusher_internal:subscription_succeeded")
	}
	sealed := `{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}`
	if err := ts.PusherTrigger(context.Background(), "app1", "secret", []string{channel}, json.RawMessage(jsonString([]byte(sealed)))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		if m := c.nextEvent("secret"); m.str("channel") != channel || m.str("data") != sealed {
			t.Fatalf("encrypted event %v", m)
		}
	}
	a.pusherSend("client-typing", channel, map[string]any{"x": 1})
	if m := a.nextEvent("pusher:error"); m.obj("data").str("message") != "client events are not supported on encrypted channels" {
		t.Fatalf("client event on an encrypted channel: %v", m)
	}
	b.quiet(100 * time.Millisecond)
}

// TestPusherCacheChannels: a subscriber of a cache channel gets
// pusher:cache_miss when nothing was triggered on it, else the last event
// right after subscription_succeeded; of every kind of cache channel, and
// never another channel's or another app's event.
func TestPusherCacheChannels(t *testing.T) {
	ts := newPusherServer(t, nil)
	ctx := context.Background()
	for _, channel := range []string{"cache-a", "private-cache-a", "private-encrypted-cache-a", "presence-cache-a"} {
		t.Run(channel, func(t *testing.T) {
			subscribe := func(key string) *client {
				c, id := dialPusher(t, ts, key)
				data := map[string]any{"channel": channel}
				switch {
				case strings.HasPrefix(channel, "presence-"):
					cd := `{"user_id":"u-` + id + `"}`
					data["channel_data"] = cd
					data["auth"] = channelAuth(key, "secret"+key[3:], id+":"+channel+":"+cd)
				case strings.HasPrefix(channel, "private-"):
					data["auth"] = channelAuth(key, "secret"+key[3:], id+":"+channel)
				}
				c.pusherSend("pusher:subscribe", "", data)
				c.nextEvent("pusher_internal:subscription_succeeded")
				return c
			}
			first := subscribe("key1")
			if m := first.nextEvent("pusher:cache_miss"); m.str("channel") != channel {
				t.Fatalf("cache miss %v", m)
			}
			for _, n := range []string{`"1"`, `"2"`} {
				if err := ts.PusherTrigger(ctx, "app1", "ev", []string{channel}, json.RawMessage(n)); err != nil {
					t.Fatal(err)
				}
				if m := first.nextEvent("ev"); m.str("data") != n[1:2] {
					t.Fatalf("live event %v", m)
				}
			}
			// Another channel's event is not this one's cache.
			if err := ts.PusherTrigger(ctx, "app1", "ev", []string{channel + "-other"}, json.RawMessage(`"3"`)); err != nil {
				t.Fatal(err)
			}
			late := subscribe("key1")
			if m := late.nextEvent("ev"); m.str("channel") != channel || m.str("data") != "2" {
				t.Fatalf("cached event %v, want the last, 2", m)
			}
			late.quiet(100 * time.Millisecond) // only the last one
			// The other app's channel of the same name has no cache.
			other := subscribe("key2")
			other.nextEvent("pusher:cache_miss")
		})
	}
}
