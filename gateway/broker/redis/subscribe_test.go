package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
)

// cutter is a server, or a Cluster, whose connections a test can cut.
type cutter interface{ Cut(t *testing.T) }

// TestResubscribe: after the connections are cut, every channel of every
// shard is subscribed again before the link is reported back.
func TestResubscribe(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	testResubscribeMany(t, srv, redis.Options{Addrs: []string{srv.Addr()}, Shards: 4})
}

func testResubscribeMany(t *testing.T, srv cutter, o redis.Options) {
	a, rec := start(t, o)
	b, _ := start(t, o)
	ctx := context.Background()
	const n = 300 // over several SUBSCRIBE commands per shard
	channels := make([]string, n)
	for i := range channels {
		channels[i] = fmt.Sprintf("resubscribe-%d", i)
		if err := a.Subscribe(ctx, channels[i]); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 2; round++ {
		srv.Cut(t)
		rec.WaitLinkLost(t, round, 10*time.Second)
		rec.WaitLinkBack(t, round, 10*time.Second)
		for _, ch := range channels {
			publishRetrying(t, b, ch, fmt.Sprintf(`{"round":%d}`, round))
		}
		for _, ch := range channels {
			rec.WaitPublications(t, ch, round, 5*time.Second)
		}
	}
	if lost, back := rec.Links(); lost != 2 || back != 2 {
		t.Errorf("links lost %d, back %d; want 2, 2", lost, back)
	}
}

// publishRetrying publishes without history, trying again while the
// publisher's own connections come back from a cut.
func publishRetrying(t *testing.T, b broker.Broker, ch, data string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := b.Publish(ctx, ch, []byte(data), nil, broker.PublishOptions{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish(%q): %v", ch, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscribeChurn: many goroutines subscribing and unsubscribing the
// same channels at once leave the server subscribed to exactly what the
// node asked for last, on a few connections.
func TestSubscribeChurn(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	const shards = 3
	b, _ := start(t, redis.Options{Addrs: []string{srv.Addr()}, Shards: shards})
	ctx := context.Background()
	const workers, channels = 8, 40
	var mu sync.Mutex
	final := make(map[string]bool) // channel -> subscribed, by its owner
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker owns channels w, w+workers, ...; the calls of
			// different workers interleave on the shards.
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			state := make(map[string]bool)
			for range 200 {
				ch := fmt.Sprintf("churn-%d", w+workers*rng.IntN(channels/workers))
				var err error
				if rng.IntN(2) == 0 {
					err = b.Subscribe(ctx, ch)
					state[ch] = true
				} else {
					err = b.Unsubscribe(ctx, ch)
					state[ch] = false
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for ch, sub := range state {
				final[ch] = sub
			}
		})
	}
	wg.Wait()
	var want []string
	for ch, sub := range final {
		if sub {
			want = append(want, "duplex:c:"+ch)
		}
	}
	slices.Sort(want)
	var got []string
	for _, ch := range do(t, srv, "PUBSUB", "CHANNELS", "duplex:c:*").([]any) {
		got = append(got, ch.(string))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("server subscriptions %v, want %v", got, want)
	}
	// The control channel and the shards' channels: one connection each.
	list := do(t, srv, "CLIENT", "LIST", "TYPE", "pubsub").(string)
	if n := strings.Count(list, "\n"); n != shards {
		t.Errorf("%d pub/sub connections, want %d:\n%s", n, shards, list)
	}
}

// TestMalformed: messages on the broker's channels that it did not write
// are dropped; delivery goes on.
func TestMalformed(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	b, rec := start(t, redis.Options{Addrs: []string{srv.Addr()}})
	ctx := context.Background()
	if err := b.Subscribe(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"", "X", "P", "P1", "P1 e", "Pa e -{}", "P1 e 5:u", "P1 e 99:u1:c-{}", "J", "J3:u", "L-x"} {
		do(t, srv, "PUBLISH", "duplex:c:m", m)
	}
	do(t, srv, "PUBLISH", "duplex:control", "not a control message")
	if _, err := b.Publish(ctx, "m", []byte(`{"ok":1}`), nil, broker.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pubs := rec.WaitPublications(t, "m", 1, 5*time.Second)
	if len(pubs) != 1 || string(pubs[0].Data) != `{"ok":1}` {
		t.Errorf("delivered %d publications, the first %s; want only {\"ok\":1}", len(pubs), pubs[0].Data)
	}
	if j, l, c := rec.Joins("m"), rec.Leaves("m"), rec.Controls(); len(j)+len(l)+len(c) != 0 {
		t.Errorf("delivered %d joins, %d leaves, %d control messages of malformed ones", len(j), len(l), len(c))
	}
}
