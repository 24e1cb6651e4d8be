package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// TestRecoveryExactlyOnce: a subscriber whose connection is cut while
// 10,000 publications flow reconnects, recovers from its last position, and
// ends with every publication exactly once, in order.
func TestRecoveryExactlyOnce(t *testing.T) {
	// A recovery larger than the reply budget (a quarter of the queue)
	// ends in a gap push by design (PROTOCOL.md, "Subscribe"), and how far
	// the publisher gets before the resubscribe is a race: with the
	// default 1 MiB queue some 3,000 of these publications fit, and about
	// one run in three recovered more. The budget has tests of its own;
	// here it holds any recovery this stream can need.
	ts := newTestServer(t, func(c *Config) { c.Limits.MaxQueueBytes = 16 << 20 })
	const total = 10000
	const channel = "feed:prices"

	var got []uint64
	var epoch string
	// record checks and appends the offsets of a subscribe result's
	// publications and of live pushes.
	record := func(m msg) {
		if m.str("channel") != channel {
			t.Fatalf("publication of %q", m.str("channel"))
		}
		if epoch == "" {
			epoch = m.str("epoch") // subscribed before the stream began
		}
		if e := m.str("epoch"); e != epoch {
			t.Fatalf("epoch %q, want %q", e, epoch)
		}
		got = append(got, uint64(m.num("offset")))
	}

	c, _ := connected(t, ts.url, "")
	res := c.ok("subscribe", msg{"channel": channel})
	epoch = res.str("epoch")

	var wg sync.WaitGroup
	publish := func(from, to int) {
		defer wg.Done()
		for i := from; i <= to; i++ {
			data := json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
			if _, err := ts.Publish(context.Background(), channel, data); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}
	// The first half flows while the client reads and loses its
	// connection; the second half starts as it resubscribes, so live
	// publications race with the recovery.
	wg.Add(1)
	go publish(1, total/2)

	// Read a third of the stream, then cut the connection without a close
	// handshake, as a network failure would.
	for len(got) < total/3 {
		if m := c.next(); m.str("push") == "pub" {
			record(m)
		}
	}
	c.conn.CloseNow()

	c2, _ := connected(t, ts.url, "")
	last := got[len(got)-1]
	wg.Add(1)
	go publish(total/2+1, total)
	res = c2.ok("subscribe", msg{"channel": channel, "since": msg{"offset": last, "epoch": epoch}})
	if res["recovered"] != true {
		t.Fatalf("not recovered: %v", res)
	}
	pubs, _ := res["publications"].([]any)
	for _, p := range pubs {
		record(msg(p.(map[string]any)))
	}
	for len(got) < total {
		m := c2.next()
		if m.str("push") == "pub" {
			record(m)
		}
	}
	wg.Wait()
	for i, off := range got {
		if off != uint64(i+1) {
			t.Fatalf("publication %d has offset %d (recovered %d after offset %d): duplicate or gap", i, off, len(pubs), last)
		}
	}
	t.Logf("cut after %d, recovered %d in the reply", last, len(pubs))
}

// TestRecoveryBeyondHistory: a client whose position is older than history
// holds gets recovered:false, and so does one from another epoch.
func TestRecoveryBeyondHistory(t *testing.T) {
	ts := newTestServer(t, nil)
	const channel = "private:gone" // history size 10
	for i := range 15 {
		if _, err := ts.Publish(context.Background(), channel, json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "u", "channels": []string{channel}}))
	res := c.ok("history", msg{"channel": channel, "limit": 0})
	epoch := res.str("epoch")
	if res.num("offset") != 15 {
		t.Fatalf("history position %v", res)
	}

	res = c.ok("subscribe", msg{"channel": channel, "since": msg{"offset": 2, "epoch": epoch}})
	if res["recovered"] != false {
		t.Fatalf("recovered from offset 2 with 10 in history: %v", res)
	}
	c.ok("unsubscribe", msg{"channel": channel})

	res = c.ok("subscribe", msg{"channel": channel, "since": msg{"offset": 5, "epoch": epoch}})
	if res["recovered"] != true || len(res["publications"].([]any)) != 10 {
		t.Fatalf("recovery from offset 5 with offsets 6–15 in history: %v", res)
	}
	c.ok("unsubscribe", msg{"channel": channel})

	res = c.ok("subscribe", msg{"channel": channel, "since": msg{"offset": 14, "epoch": "another"}})
	if res["recovered"] != false || res["publications"] != nil {
		t.Fatalf("recovery from another epoch: %v", res)
	}
	c.ok("unsubscribe", msg{"channel": channel})

	res = c.ok("subscribe", msg{"channel": channel, "since": msg{"offset": 15, "epoch": epoch}})
	if res["recovered"] != true || res["publications"] != nil {
		t.Fatalf("recovery from the top: %v", res)
	}
}
