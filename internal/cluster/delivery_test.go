package cluster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
)

// TestDeliveryAcrossNodes: subscribers on node A (and on B and C) get,
// exactly once and in offset order, what is published at the same time
// through the API of node B and by a client on node C; each publication
// carries its publisher (a client's user, none for the API).
func TestDeliveryAcrossNodes(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:delivery"
		const each = 500
		subs := c.subscribeOn(channel, 3, 0)
		subs = append(subs, c.subscribeOn(channel, 1, 1, 2)...)
		publisher := c.dial(2, "carol")

		pubs := newPublished()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { errs[0] = pubs.publishAll(c.ctx, "api-b", each, 4, 0, c.apiPublisher(1, channel)) })
		wg.Go(func() { errs[1] = pubs.publishAll(c.ctx, "client-c", each, 4, 0, clientPublisher(publisher, channel)) })
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		reports := c.verifySubscribers(subs, channel, 0, pubs, 30*time.Second)
		t.Logf("%d publications through node B's API and a client on node C, received by %d subscribers in %v",
			len(pubs.acked), len(subs), time.Since(start).Round(time.Millisecond))

		for i, r := range reports {
			if r.pubs != 2*each || len(r.gaps) != 0 {
				t.Errorf("subscriber %d: %s, want %d publications and no gap", i, r.summary(), 2*each)
			}
			// The client's publications carry its user, the API's none.
			for pos, data := range pubs.acked {
				user, ok := r.infos[pos]
				if !ok {
					continue
				}
				fromClient := strings.Contains(string(data), "client-c")
				if fromClient && user != "carol" || !fromClient && user != "" {
					t.Errorf("subscriber %d: publication %d (%s) carries user %q", i, pos.Offset, data, user)
					break
				}
			}
		}
	})
}

// TestRecoveryOnAnotherNode: a client that read part of a stream on node
// A and went away recovers what it missed from the shared history when it
// subscribes again on node C (and another on node B), then gets the live
// publications after them, none twice and none missing.
func TestRecoveryOnAnotherNode(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:recovery"
		pubs := newPublished()
		first := c.dial(0, "")
		c.subscribe(first, channel, nil)
		if err := pubs.publishAll(c.ctx, "before", 50, 1, 0, c.apiPublisher(1, channel)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		if err := first.Wait(ctx, channel, func(ev []testgateway.Event) bool { return len(ev) >= 50 }); err != nil {
			t.Fatalf("first subscriber: %v", err)
		}
		seen := lastPosition(first.Events(channel))
		first.Close()

		if err := pubs.publishAll(c.ctx, "away", 70, 2, 0, c.apiPublisher(1, channel)); err != nil {
			t.Fatal(err)
		}
		var subs []*subscriber
		for _, node := range []int{2, 1} {
			cl := c.dial(node, "")
			res := c.subscribe(cl, channel, &seen)
			if res.Recovered == nil || !*res.Recovered || len(res.Publications) != 70 || res.Offset != seen.Offset+70 || res.Epoch != seen.Epoch {
				t.Fatalf("node %d: subscribe since %d: recovered %v, %d publications, offset %d/%s; want 70 up to %d/%s",
					node, seen.Offset, res.Recovered, len(res.Publications), res.Offset, res.Epoch, seen.Offset+70, seen.Epoch)
			}
			subs = append(subs, &subscriber{cl: cl, node: node, start: seen})
		}
		if err := pubs.publishAll(c.ctx, "after", 30, 2, 0, c.apiPublisher(0, channel)); err != nil {
			t.Fatal(err)
		}
		// Only what followed the position counts for the new subscribers.
		later := newPublished()
		for pos, data := range pubs.acked {
			if pos.Offset > seen.Offset {
				later.acked[pos] = data
			}
		}
		later.attempted = pubs.attempted
		for i, r := range c.verifySubscribers(subs, channel, 0, later, 20*time.Second) {
			if r.pubs != 100 || len(r.gaps) != 0 {
				t.Errorf("subscriber %d: %s, want 100 publications (70 recovered, 30 live) and no gap", i, r.summary())
			}
		}
	})
}
