package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// lossyBroker is the memory broker with the faults of a networked one: it
// can drop deliveries (a lost link) and deliver one twice, and it delivers
// from a goroutine of its own, in order, as a networked broker does (the
// memory broker delivers inside Publish).
type lossyBroker struct {
	*broker.Memory
	h broker.Handler

	queue chan func()
	done  chan struct{}

	mu     sync.Mutex
	drop   func(*broker.Publication) bool
	repeat map[uint64]bool // offsets delivered twice
}

func newLossyBroker() *lossyBroker {
	return &lossyBroker{Memory: broker.NewMemory(nil), repeat: map[uint64]bool{}}
}

func (b *lossyBroker) Start(ctx context.Context, h broker.Handler) error {
	b.h = h
	b.queue, b.done = make(chan func(), 1024), make(chan struct{})
	go func() {
		defer close(b.done)
		for f := range b.queue {
			f()
		}
	}()
	return b.Memory.Start(ctx, lossyHandler{b, h})
}

func (b *lossyBroker) Close(ctx context.Context) error {
	err := b.Memory.Close(ctx)
	if b.queue != nil {
		close(b.queue)
		<-b.done
	}
	return err
}

type lossyHandler struct {
	b *lossyBroker
	broker.Handler
}

func (l lossyHandler) HandlePublication(pub *broker.Publication) {
	l.b.mu.Lock()
	drop, repeat := l.b.drop != nil && l.b.drop(pub), l.b.repeat[pub.Position.Offset]
	l.b.mu.Unlock()
	if drop {
		return
	}
	l.b.queue <- func() {
		l.Handler.HandlePublication(pub)
		if repeat {
			l.Handler.HandlePublication(pub)
		}
	}
}

func (b *lossyBroker) setDrop(f func(*broker.Publication) bool) {
	b.mu.Lock()
	b.drop = f
	b.mu.Unlock()
}

// publishAround publishes {"n":i} for i in from..to straight to the broker,
// as another node would while this one does not hear it.
func publishAround(t *testing.T, b broker.Broker, channel string, size, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := b.Publish(context.Background(), channel, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), nil,
			broker.PublishOptions{HistorySize: size}); err != nil {
			t.Fatal(err)
		}
	}
}

// readPubs reads pushes until n publications arrived and returns their
// offsets, and the gap pushes met on the way.
func readPubs(t *testing.T, c *client, n int) (offsets []int, gaps []msg) {
	t.Helper()
	for len(offsets) < n {
		m := c.next()
		switch m.str("push") {
		case "pub":
			offsets = append(offsets, int(m.num("offset")))
		case "gap":
			gaps = append(gaps, m)
		}
	}
	return offsets, gaps
}

func wantSeq(t *testing.T, what string, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("%s: offsets %v, want %d to %d", what, got, from, to)
	}
	for i, off := range got {
		if off != from+i {
			t.Fatalf("%s: offsets %v, want %d to %d", what, got, from, to)
		}
	}
}

// TestDeliveryFillsSkippedOffsets: publications the broker did not deliver
// are read from history before the next one, and a publication delivered
// twice reaches the client once.
func TestDeliveryFillsSkippedOffsets(t *testing.T) {
	b := newLossyBroker()
	b.setDrop(func(p *broker.Publication) bool { return p.Position.Offset == 4 || p.Position.Offset == 5 })
	b.repeat[2] = true
	ts := newTestServer(t, func(c *Config) { c.Broker = b })
	c, _ := connected(t, ts.url, "")
	c.ok("subscribe", msg{"channel": "feed:a"})
	for i := 1; i <= 7; i++ {
		if _, err := ts.Publish(context.Background(), "feed:a", json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got, gaps := readPubs(t, c, 7)
	wantSeq(t, "delivered", got, 1, 7)
	if len(gaps) != 0 {
		t.Fatalf("gap pushes %v for publications history holds", gaps)
	}
	// 4 and 5 at least; those that arrived while the node read them may
	// have been taken from history too.
	if v := metricValue(t, ts.http.URL, "duplex_broker_recovered_total", ""); v < 2 {
		t.Errorf("duplex_broker_recovered_total %v, want at least 2", v)
	}
	// 2, repeated by the broker; and 6 or 7 when the live one came after
	// the catch-up had delivered it from history.
	if v := metricValue(t, ts.http.URL, "duplex_broker_duplicates_total", ""); v < 1 || v > 3 {
		t.Errorf("duplex_broker_duplicates_total %v, want 1 (2 repeated) to 3 (6 and 7 read from history first)", v)
	}
}

// TestDeliveryCatchesUpWhenTheLinkIsBack: while the link is down nothing
// is delivered, the node is unready and refuses publishing and
// subscribing with a retryable error; when it is back, the subscribers get
// what was published meanwhile at once, in order, and a gap push for what
// history no longer holds.
func TestDeliveryCatchesUpWhenTheLinkIsBack(t *testing.T) {
	b := newLossyBroker()
	ts := newTestServer(t, func(c *Config) { c.Broker = b })
	c, _ := connected(t, ts.url, "")
	fresh, _ := connected(t, ts.url, "")
	trimmed, _ := connected(t, ts.url, token(t, map[string]any{"sub": "u", "channels": []string{"private:t"}}))
	c.ok("subscribe", msg{"channel": "feed:a"})
	fresh.ok("subscribe", msg{"channel": "feed:fresh"}) // no stream yet
	trimmed.ok("subscribe", msg{"channel": "private:t"})
	publishAround(t, b, "feed:a", 20000, 1, 2)
	got, _ := readPubs(t, c, 2)
	wantSeq(t, "before the fault", got, 1, 2)
	publishAround(t, b, "private:t", 10, 1, 1)
	readPubs(t, trimmed, 1)

	b.setDrop(func(*broker.Publication) bool { return true })
	b.h.HandleConnection(false)
	if code := c.errCode("publish", msg{"channel": "chat:a", "data": 1}); code != ErrUnavailable.Code {
		t.Errorf("publish while the broker is down: error %d, want %d", code, ErrUnavailable.Code)
	}
	if code := fresh.errCode("subscribe", msg{"channel": "feed:b"}); code != ErrUnavailable.Code {
		t.Errorf("subscribe while the broker is down: error %d, want %d", code, ErrUnavailable.Code)
	}
	st, body := apiPost(t, ts.http.URL, "publish", msg{"channel": "feed:a", "data": 1}, nil)
	wantAPIError(t, st, body, 503, ErrUnavailable.Code)
	if st := getStatus(t, ts.http.URL+"/readyz"); st != 503 {
		t.Errorf("/readyz while the broker is down: %d, want 503", st)
	}
	// Other nodes go on publishing.
	publishAround(t, b, "feed:a", 20000, 3, 5)
	publishAround(t, b, "feed:fresh", 20000, 1, 2)
	publishAround(t, b, "private:t", 10, 2, 16) // history keeps 7 to 16

	b.setDrop(nil)
	b.h.HandleConnection(true)
	got, gaps := readPubs(t, c, 3)
	wantSeq(t, "caught up", got, 3, 5)
	if len(gaps) != 0 {
		t.Errorf("gaps %v", gaps)
	}
	got, _ = readPubs(t, fresh, 2)
	wantSeq(t, "caught up from before the stream began", got, 1, 2)
	got, gaps = readPubs(t, trimmed, 10)
	wantSeq(t, "caught up beyond history", got, 7, 16)
	if len(gaps) != 1 || gaps[0].num("from") != 2 || gaps[0].num("to") != 6 {
		t.Errorf("gap pushes %v, want one from 2 to 6", gaps)
	}
	if st := getStatus(t, ts.http.URL+"/readyz"); st != 200 {
		t.Errorf("/readyz after the broker is back: %d, want 200", st)
	}
	// Live delivery goes on, without a repeat of what was caught up.
	publishAround(t, b, "feed:a", 20000, 6, 6)
	got, _ = readPubs(t, c, 1)
	wantSeq(t, "live after catching up", got, 6, 6)
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPresenceChurnCoalesced: a client that subscribes and unsubscribes a
// presence channel over and over within one interval costs the other
// members nothing (issue 12, defect 8); a real join still arrives.
func TestPresenceChurnCoalesced(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.PresenceInterval = 300 * time.Millisecond })
	watcher, _ := connected(t, ts.url, "")
	watcher.ok("subscribe", msg{"channel": "chat:churn"})
	churner, _ := connected(t, ts.url, "")
	for range 20 {
		churner.ok("subscribe", msg{"channel": "chat:churn"})
		churner.ok("unsubscribe", msg{"channel": "chat:churn"})
	}
	joiner, hello := connected(t, ts.url, "")
	joiner.ok("subscribe", msg{"channel": "chat:churn"})
	// 40 events of the churner; an interval boundary falling between one
	// subscribe and its unsubscribe lets a pair through, and the churn
	// spans a few intervals at most.
	churned := 0
	for {
		m := watcher.next()
		if m.str("push") != "join" && m.str("push") != "leave" {
			continue
		}
		if m.obj("info").str("client") == hello.str("client") {
			break
		}
		churned++
	}
	if churned > 6 {
		t.Errorf("%d join and leave pushes for 20 subscribe/unsubscribe pairs within about one interval", churned)
	}
}

// TestPresenceCountOnly: above PresenceCountAbove members, subscribers
// get the channel's counts instead of join and leave events.
func TestPresenceCountOnly(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.PresenceInterval = 50 * time.Millisecond
		for i := range c.Namespaces {
			if c.Namespaces[i].Name == "chat" {
				c.Namespaces[i].PresenceCountAbove = 3
			}
		}
	})
	watcher, _ := connected(t, ts.url, "")
	watcher.ok("subscribe", msg{"channel": "chat:big"})
	for range 5 {
		c, _ := connected(t, ts.url, "")
		c.ok("subscribe", msg{"channel": "chat:big"})
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m := watcher.next()
		if m.str("push") == "presence_count" && m.num("clients") == 6 {
			if v := metricValue(t, ts.http.URL, "duplex_presence_pushes_total", `kind="join"`); v > 3 {
				t.Errorf("%v join pushes past the count-only threshold of 3", v)
			}
			return
		}
	}
	t.Fatal("no presence_count push with 6 clients")
}

// TestDeliveryStreamRestarted: a stream that expires while subscribed
// starts again under a new epoch; the subscribers get a reset push, then
// the new stream from its start. The memory broker delivers while it
// holds the stream, so this also proves that delivery never waits for the
// broker.
func TestDeliveryStreamRestarted(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ts := newTestServer(t, func(c *Config) { c.Broker = broker.NewMemory(&broker.MemoryOptions{Now: clock}) })
	c, _ := connected(t, ts.url, "")
	c.ok("subscribe", msg{"channel": "feed:a"})
	first, err := ts.Publish(context.Background(), "feed:a", json.RawMessage(`1`))
	if err != nil {
		t.Fatal(err)
	}
	readPubs(t, c, 1)
	mu.Lock()
	now = now.Add(broker.DefaultStreamTTL + time.Hour)
	mu.Unlock()
	second, err := ts.Publish(context.Background(), "feed:a", json.RawMessage(`2`))
	if err != nil {
		t.Fatal(err)
	}
	if second.Epoch == first.Epoch || second.Offset != 1 {
		t.Fatalf("publication after the stream expired: %+v, want offset 1 of a new epoch", second)
	}
	got, gaps := readPubs(t, c, 1)
	wantSeq(t, "new stream", got, 1, 1)
	if len(gaps) != 1 || gaps[0]["reset"] != true || gaps[0].str("epoch") != second.Epoch || gaps[0].num("to") != 0 {
		t.Fatalf("pushes before the new stream %v, want one reset to 0 in epoch %s", gaps, second.Epoch)
	}
}
