package nats_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/internal/testnats"
)

// TestPresenceAtScale: a node keeps 10,000 members of one channel alive at
// a short ttl, refreshing each every third of it as the gateway does,
// with a heartbeat instead of a write per member: each other node counts
// every member all along, and none once the node has died.
//
// Written one by one, the refreshes would be 10,000 JetStream writes every
// half second here; at a 3 s ttl on a loaded node they fell behind and
// members expired while their clients were connected.
func TestPresenceAtScale(t *testing.T) {
	const (
		n   = 10_000
		ttl = 1500 * time.Millisecond
	)
	s := testnats.Start(t, testnats.Options{})
	prefix := randomPrefix("scale")
	owner, _ := started(t, testOptions(s, prefix)) // closed below, and again by the cleanup
	reader, _ := started(t, testOptions(s, prefix))
	ctx := testCtx(t)

	infos := make([]*broker.ClientInfo, n)
	for i := range infos {
		infos[i] = &broker.ClientInfo{Client: fmt.Sprintf("c%d", i), User: fmt.Sprintf("u%d", i%1000)}
	}
	addAll := func() error {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < n; i += 16 {
					if err := owner.AddPresence(ctx, "big", infos[i], ttl); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	if err := addAll(); err != nil {
		t.Fatalf("adding the members: %v", err)
	}
	want := broker.PresenceStats{Clients: n, Users: 1000}
	written := nats.PresenceWrites(owner)
	if written < n {
		t.Fatalf("%d writes for %d new members", written, n)
	}

	// Refreshed every third of the ttl for four ttls, counted by the other
	// node every half ttl.
	end := time.Now().Add(4 * ttl)
	next := time.Now()
	counts := 0
	for time.Now().Before(end) {
		if !time.Now().Before(next) {
			if err := addAll(); err != nil {
				t.Fatalf("refreshing: %v", err)
			}
			next = next.Add(ttl / 3)
		}
		st, err := reader.PresenceStats(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		if st != want {
			t.Fatalf("PresenceStats on another node while refreshed: %+v, want %+v", st, want)
		}
		counts++
		time.Sleep(min(ttl/2, time.Until(next)))
	}
	rounds := 4 * 3
	if extra := nats.PresenceWrites(owner) - written; extra > uint64(rounds*2) {
		t.Errorf("%d writes while %d refresh rounds of %d members ran; want about one heartbeat a round", extra, rounds, n)
	}
	t.Logf("%d counts of %d members, %d writes for the refreshes", counts, n, nats.PresenceWrites(owner)-written)

	// The node dies: it beats no more.
	died := time.Now()
	if err := owner.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := reader.PresenceStats(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		if st.Clients == 0 {
			break
		}
		if time.Since(died) > 2*ttl+2*time.Second {
			t.Fatalf("%v after the node died, %d of its members are still listed", time.Since(died), st.Clients)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("members gone %v after the node died", time.Since(died).Round(time.Millisecond))
}
