package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
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
	readers := make([]*client, 5)
	for i := range readers {
		c, _ := connected(t, ts.url, "")
		c.ok("subscribe", msg{"channel": "feed:slow"})
		readers[i] = c
	}
	// The slow subscriber's socket buffers fill, then its queue, then it
	// is closed.
	closed := func() bool {
		return metricValue(t, ts.http.URL, disconnects, `reason="slow_consumer"`) == 1
	}
	var last uint64
	deadline := time.Now().Add(time.Minute)
	for !closed() {
		if last >= 5000 || time.Now().After(deadline) {
			t.Fatalf("the slow subscriber is not closed after %d publications of 16 KiB", last)
		}
		for range 20 {
			pos, err := ts.Publish(context.Background(), "feed:slow", payload(int(last), 16<<10))
			if err != nil {
				t.Fatal(err)
			}
			last = pos.Offset
		}
	}
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

// inlineTransport is a transport that records the lines written to it
// inline; the tests below drive the session's queue by hand, so nothing
// else is written to it.
type inlineTransport struct {
	tried [][]byte
}

func (t *inlineTransport) write(msg []byte) error                     { return nil }
func (t *inlineTransport) writeShared(line *sharedLine) error         { return nil }
func (t *inlineTransport) close(websocket.StatusCode, string, []byte) {}
func (t *inlineTransport) closeNow()                                  {}
func (t *inlineTransport) abortOnClose() bool                         { return false }
func (t *inlineTransport) kind() string                               { return "inline-test" }
func (t *inlineTransport) tryWriteShared(line *sharedLine) (bool, error) {
	t.tried = append(t.tried, line.line)
	return true, nil
}

// TestInlineOnlyWhenNothingWaits: a publication is written inline only
// when the queue is empty, no writer runs and no gap waits to go before
// it; otherwise it is queued behind them, so nothing overtakes. One that
// more of its channel follow is queued, for the writer to join them.
func TestInlineOnlyWhenNothingWaits(t *testing.T) {
	ts := newServer(t, nil)
	tr := &inlineTransport{}
	sess := newSession(ts.Server, tr, duplexProtocol{}, "192.0.2.1", nil)
	pub := func(i int) *outPub {
		p := newOutPub(&broker.Publication{Channel: "feed:x", Data: payload(i, 10),
			Position: broker.Position{Offset: uint64(i), Epoch: "e"}}, SlowDisconnect)
		return p
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	defer func() { sess.closing = true }() // nothing to release

	sess.enqueuePubLocked(pub(1))
	if len(tr.tried) != 1 || len(sess.out.items) != 0 || sess.out.writing {
		t.Fatalf("idle session: %d written inline, %d queued, writer %v; want 1, 0, false", len(tr.tried), len(sess.out.items), sess.out.writing)
	}

	more := pub(2)
	more.queue = true // more of the channel follow: the writer joins them
	sess.enqueuePubLocked(more)
	if len(tr.tried) != 1 || len(sess.out.items)-sess.out.head != 1 {
		t.Fatalf("a publication with more behind it: %d written inline, %d queued; want 1, 1", len(tr.tried), len(sess.out.items)-sess.out.head)
	}
	sess.discardLocked() // the queue empty, no writer

	sess.out.writing = true // as if its writer were busy: none starts
	sess.enqueuePubLocked(pub(2))
	if len(tr.tried) != 1 || len(sess.out.items)-sess.out.head != 1 {
		t.Fatalf("while the writer runs: %d written inline, %d queued; want 1, 1", len(tr.tried), len(sess.out.items)-sess.out.head)
	}

	sess.out.writing = false // its writer about to go, publication 2 still waits
	sess.enqueuePubLocked(pub(3))
	if len(tr.tried) != 1 {
		t.Fatalf("publication 3 was written inline ahead of publication 2, which waits")
	}

	sess.discardLocked()          // the queue empty, no writer
	sess.recordDropLocked(pub(4)) // and a gap that goes before the next publication
	before := len(tr.tried)
	sess.enqueuePubLocked(pub(5))
	if len(tr.tried) != before {
		t.Fatalf("publication 5 was written inline ahead of the gap push before it")
	}
}
