package gateway

import (
	"context"
	"testing"
	"time"
)

// TestFanOutWritesInline: a publication to many idle subscribers is
// written to each of them inline, by the fan-out, rather than by a writer
// goroutine started per subscriber (issue 14: 10,000 goroutines started at
// once by one broadcast left their stacks in the RSS), and every
// subscriber still gets every publication, in order.
func TestFanOutWritesInline(t *testing.T) {
	const subscribers, publications = 300, 20
	ts := newServer(t, nil)
	clients := make([]*client, subscribers)
	for i := range clients {
		c, _ := connected(t, ts.url, "")
		c.ok("subscribe", msg{"channel": "feed:inline"})
		clients[i] = c
	}
	before := ts.writerStarts.Load()
	for i := 1; i <= publications; i++ {
		// Each publication finds every subscriber idle, as a broadcast
		// does: the one before has reached them all.
		if _, err := ts.Publish(context.Background(), "feed:inline", payload(i, 100)); err != nil {
			t.Fatal(err)
		}
		for j, c := range clients {
			m := c.nextPush("pub")
			if off := int(m.num("offset")); off != i {
				t.Fatalf("subscriber %d: publication %d, want %d", j, off, i)
			}
		}
	}
	// A writer starts only for a subscriber whose socket is full at that
	// moment; these read everything at once.
	started := ts.writerStarts.Load() - before
	t.Logf("%d writers started for %d deliveries", started, subscribers*publications)
	if started > subscribers {
		t.Fatalf("%d writer goroutines started for %d deliveries to idle subscribers; want nearly none", started, subscribers*publications)
	}
}

// TestFanOutSlowSubscriberQueued: among subscribers written inline, one
// that does not read still has its queue and its slow-consumer policy (it
// is closed as a slow consumer), and does not hold up the others, which
// get every publication in order.
func TestFanOutSlowSubscriberQueued(t *testing.T) {
	const limit = 64 << 10
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MaxQueueBytes = limit
		cfg.Limits.WriteTimeout = time.Minute
	})
	slow, _ := slowSubscriber(t, ts, "feed:slow")
	readers := make([]*client, 20)
	for i := range readers {
		c, _ := connected(t, ts.url, "")
		c.ok("subscribe", msg{"channel": "feed:slow"})
		readers[i] = c
	}
	// The slow subscriber's socket buffers fill, then its queue, then it
	// is closed.
	last := publishUntil(t, ts, "feed:slow", func() bool {
		return metricValue(t, ts.http.URL, disconnects, `reason="slow_consumer"`) == 1
	})
	t.Logf("slow consumer closed after %d publications", last)
	for i, c := range readers {
		for want := uint64(1); want <= last; want++ {
			m := c.nextPush("pub")
			if off := uint64(m.num("offset")); off != want {
				t.Fatalf("reader %d: publication %d, want %d", i, off, want)
			}
		}
	}
	if err := slow.readToEnd(t); err == nil {
		t.Fatal("the slow subscriber was not closed")
	}
	// What was queued for it is accounted for, and gone.
	waitMetric(t, ts.http.URL, queuedBytesGauge, "", func(v float64) bool { return v == 0 })
	waitMetric(t, ts.http.URL, "duplex_outbound_queue_messages", "", func(v float64) bool { return v == 0 })
}
