package brokertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Server controls the backend server behind the brokers of a Run, for the
// Faults subtests: what only a networked broker can get wrong. The server
// is shared by every subtest of the Run, so each method leaves it serving
// again (Pause excepted, until Resume).
type Server interface {
	// Cut breaks every client connection to the server, as a network
	// fault would; the server keeps running with its state.
	Cut(t *testing.T)
	// Restart stops the server and starts it again at the same address,
	// keeping its data when persist is true and empty otherwise. It
	// returns when the server accepts connections again.
	Restart(t *testing.T, persist bool)
	// Pause stops the server's process (SIGSTOP): connections stay open
	// and nothing answers. Resume continues it (SIGCONT).
	Pause(t *testing.T)
	Resume(t *testing.T)
}

// The fault subtests run two nodes, a and b, of one backend: a subscribes,
// b publishes.

// linkTimeout bounds the wait for a broker to notice a fault and to come
// back from it: health checks and reconnection back-offs take seconds.
func (s *suite) linkTimeout() time.Duration { return 3 * s.opts.Timeout }

// publishEventually publishes {"i":i}, retrying while the broker still
// fails after a fault; it returns the position of the one that succeeded.
func (s *suite) publishEventually(t *testing.T, b broker.Broker, ch string, i int) broker.Position {
	t.Helper()
	deadline := time.Now().Add(s.linkTimeout())
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		pos, err := b.Publish(ctx, ch, data(`{"i":%d}`, i), nil, hist)
		cancel()
		if err == nil {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish %d: still failing %v after the fault: %v", i, s.linkTimeout(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testFaultCut: after every connection is cut, both nodes report the link
// lost and back, a's subscription delivers again without the gateway's
// help, and the stream went on where it was.
func (s *suite) testFaultCut(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("fault-cut")
	subscribe(t, ctx, a, ch)
	first := publishN(t, ctx, b, ch, 3, hist)
	a.rec.WaitPublications(t, ch, 3, s.opts.Timeout)

	s.opts.Server.Cut(t)
	for name, n := range map[string]node{"node a": a, "node b": b} {
		n.rec.WaitLinkLost(t, 1, s.linkTimeout())
		n.rec.WaitLinkBack(t, 1, s.linkTimeout())
		if lost, back := n.rec.Links(); lost != back {
			t.Fatalf("%s: link lost %d times, back %d times", name, lost, back)
		}
	}
	for i := 4; i <= 6; i++ {
		pos := s.publishEventually(t, b, ch, i)
		wantPosition(t, fmt.Sprintf("Publish %d after the cut", i), pos, broker.Position{Offset: uint64(i), Epoch: first[0].Epoch})
	}
	wantOffsets(t, "node a: delivered", a.rec.WaitPublications(t, ch, 6, s.opts.Timeout), first[0].Epoch, 1, 2, 3, 4, 5, 6)
	h := history(t, ctx, a, ch, broker.HistoryOptions{Limit: -1})
	wantOffsets(t, "History after the cut", h.Publications, first[0].Epoch, 1, 2, 3, 4, 5, 6)
}

// testFaultRestart: a server restarted with its data keeps the stream and
// its epoch; one restarted empty loses it, and the stream starts again
// under a new epoch, so that positions of the old one are known to be
// unrecoverable. Either way the nodes resubscribe by themselves.
func (s *suite) testFaultRestart(t *testing.T) {
	for _, persist := range []bool{true, false} {
		t.Run(fmt.Sprintf("persist=%v", persist), func(t *testing.T) {
			a, b := s.startPair(t)
			ctx := s.ctx(t)
			ch := s.channel(fmt.Sprintf("fault-restart-%v", persist))
			subscribe(t, ctx, a, ch)
			first := publishN(t, ctx, b, ch, 3, hist)
			a.rec.WaitPublications(t, ch, 3, s.opts.Timeout)
			info := &broker.ClientInfo{Client: "c1", User: "u1"}
			addPresence(t, ctx, b, ch, info, time.Minute)

			s.opts.Server.Restart(t, persist)
			for _, n := range []node{a, b} {
				n.rec.WaitLinkLost(t, 1, s.linkTimeout())
				n.rec.WaitLinkBack(t, 1, s.linkTimeout())
			}
			pos := s.publishEventually(t, b, ch, 4)
			pubs := a.rec.WaitPublications(t, ch, 4, s.opts.Timeout)
			if persist {
				wantPosition(t, "Publish after the restart", pos, broker.Position{Offset: 4, Epoch: first[0].Epoch})
				wantOffsets(t, "node a: delivered", pubs, first[0].Epoch, 1, 2, 3, 4)
				h := history(t, ctx, a, ch, broker.HistoryOptions{Limit: -1})
				wantOffsets(t, "History after the restart", h.Publications, first[0].Epoch, 1, 2, 3, 4)
				return
			}
			if pos.Offset != 1 || pos.Epoch == "" || pos.Epoch == first[0].Epoch {
				t.Fatalf("Publish after a restart without data: position %+v, want offset 1 of an epoch other than %q", pos, first[0].Epoch)
			}
			if got := pubs[3]; len(pubs) != 4 || got.Position != pos || !slices.Equal([]byte(got.Data), []byte(`{"i":4}`)) {
				t.Errorf("node a: delivered after the restart %d publications, the fourth %+v %s; want %+v {\"i\":4}",
					len(pubs), got.Position, got.Data, pos)
			}
			h := history(t, ctx, a, ch, broker.HistoryOptions{Limit: -1, Since: &first[2]})
			if h.Position.Epoch == first[0].Epoch || len(h.Publications) != 0 {
				t.Errorf("History since the old epoch's position: %+v with %d publications; want the new epoch and none",
					h.Position, len(h.Publications))
			}
			members, err := a.Presence(ctx, ch)
			if err != nil {
				t.Fatalf("Presence after the restart: %v", err)
			}
			if len(members) != 0 {
				t.Errorf("Presence after a restart without data: %d members, want 0", len(members))
			}
		})
	}
}

// testFaultPause: a server that stops answering is reported lost; calls
// fail within their context instead of hanging or queueing without bound;
// when it answers again the link is back and delivery goes on.
func (s *suite) testFaultPause(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("fault-pause")
	subscribe(t, ctx, a, ch)
	first := publish(t, ctx, b, ch, data(`{"i":1}`), nil, hist)
	a.rec.WaitPublications(t, ch, 1, s.opts.Timeout)

	s.opts.Server.Pause(t)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			s.opts.Server.Resume(t)
		}
	}
	defer resume()
	a.rec.WaitLinkLost(t, 1, s.linkTimeout())
	const callTimeout = 300 * time.Millisecond
	for name, call := range map[string]func(ctx context.Context) error{
		"Publish": func(ctx context.Context) error {
			_, err := b.Publish(ctx, ch, data(`{"i":0}`), nil, hist)
			return err
		},
		"History": func(ctx context.Context) error {
			_, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1})
			return err
		},
		"Presence": func(ctx context.Context) error {
			_, err := b.Presence(ctx, ch)
			return err
		},
	} {
		cctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		start := time.Now()
		err := call(cctx)
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Errorf("%s while the server is paused: no error", name)
		}
		if took > callTimeout+s.opts.Timeout/2 {
			t.Errorf("%s while the server is paused took %v, its context %v", name, took, callTimeout)
		}
	}
	resume()
	a.rec.WaitLinkBack(t, 1, s.linkTimeout())
	b.rec.WaitLinkBack(t, 1, s.linkTimeout())
	pos := s.publishEventually(t, b, ch, 2)
	if pos.Epoch != first.Epoch {
		t.Fatalf("Publish after the pause: epoch %q, want %q", pos.Epoch, first.Epoch)
	}
	// A publication that failed while paused may still have been stored
	// when the server continued (its reply was lost), before a had
	// resubscribed: it need not reach a, which the gateway covers by
	// reading history. The stream stays whole and ordered either way.
	var last *broker.Publication
	eventually(t, s.opts.Timeout, "node a to receive the publication after the pause", func() bool {
		pubs := a.rec.Publications(ch)
		last = pubs[len(pubs)-1]
		return last.Position == pos
	})
	if !slices.Equal([]byte(last.Data), []byte(`{"i":2}`)) {
		t.Errorf("node a: last delivered %+v %s, want %+v {\"i\":2}", last.Position, last.Data, pos)
	}
	h := history(t, ctx, a, ch, broker.HistoryOptions{Limit: -1})
	if h.Position != pos || len(h.Publications) != int(pos.Offset) || h.Publications[0].Position.Offset != 1 {
		t.Errorf("History after the pause: %+v with %d publications; want 1 to %d", h.Position, len(h.Publications), pos.Offset)
	}
}

// testIsolation: two brokers on one backend with different prefixes share
// nothing: publications, history, presence, events and control messages
// stay on their side.
func (s *suite) testIsolation(t *testing.T) {
	x := s.start(t)
	y := s.startWith(t, s.opts.NewIsolated)
	ctx := s.ctx(t)
	ch := s.channel("isolation")
	subscribe(t, ctx, x, ch)
	subscribe(t, ctx, y, ch)
	info := &broker.ClientInfo{Client: "c1", User: "u1"}
	publishN(t, ctx, x, ch, 2, hist)
	addPresence(t, ctx, x, ch, info, time.Minute)
	if err := x.PublishJoin(ctx, ch, info); err != nil {
		t.Fatalf("PublishJoin: %v", err)
	}
	if err := x.Control(ctx, []byte(`{"x":1}`)); err != nil {
		t.Fatalf("Control: %v", err)
	}
	x.rec.WaitPublications(t, ch, 2, s.opts.Timeout)
	x.rec.WaitJoins(t, ch, 1, s.opts.Timeout)

	// Barriers on y: each kind of delivery is ordered, so once y has its
	// own marker, anything of x's sent before would have arrived.
	marker := publish(t, ctx, y, ch, data(`{"i":1}`), nil, hist)
	if marker.Offset != 1 {
		t.Errorf("y's first Publish: offset %d, want 1 (a stream of its own)", marker.Offset)
	}
	if err := y.PublishJoin(ctx, ch, &broker.ClientInfo{Client: "y", User: "y"}); err != nil {
		t.Fatalf("PublishJoin on y: %v", err)
	}
	if err := y.Control(ctx, []byte(`{"y":1}`)); err != nil {
		t.Fatalf("Control on y: %v", err)
	}
	y.rec.WaitControl(t, []byte(`{"y":1}`), s.opts.Timeout)
	if got := y.rec.WaitPublications(t, ch, 1, s.opts.Timeout); len(got) != 1 {
		t.Errorf("y received %d publications, want only its own", len(got))
	}
	if got := y.rec.WaitJoins(t, ch, 1, s.opts.Timeout); len(got) != 1 || got[0].Client != "y" {
		t.Errorf("y received joins %d, want only its own", len(got))
	}
	if got := y.rec.Controls(); len(got) != 1 {
		t.Errorf("y received %d control messages, want only its own", len(got))
	}
	h := history(t, ctx, y, ch, broker.HistoryOptions{Limit: -1})
	wantOffsets(t, "y's History", h.Publications, marker.Epoch, 1)
	members, err := y.Presence(ctx, ch)
	if err != nil {
		t.Fatalf("Presence on y: %v", err)
	}
	if len(members) != 0 {
		t.Errorf("y's Presence: %d members, want 0", len(members))
	}
}
