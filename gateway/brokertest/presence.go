package brokertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// wantPresence checks Presence and PresenceStats of channel against want.
func wantPresence(t *testing.T, ctx context.Context, b broker.Broker, what, channel string, want ...*broker.ClientInfo) {
	t.Helper()
	got, err := b.Presence(ctx, channel)
	if err != nil {
		t.Fatalf("%s: Presence: %v", what, err)
	}
	if got == nil {
		t.Errorf("%s: Presence returned a nil map", what)
	}
	wantMap := make(map[string]*broker.ClientInfo)
	users := make(map[string]bool)
	for _, w := range want {
		wantMap[w.Client] = w
		users[w.User] = true
	}
	if len(got) != len(wantMap) {
		t.Errorf("%s: Presence lists %v, want %v", what, clientIDs(got), clientIDs(wantMap))
	} else {
		for id, w := range wantMap {
			if g, ok := got[id]; !ok || !equalInfo(g, w) {
				t.Errorf("%s: Presence[%q] = %s, want %s", what, id, fmtInfo(g), fmtInfo(w))
			}
		}
	}
	stats, err := b.PresenceStats(ctx, channel)
	if err != nil {
		t.Fatalf("%s: PresenceStats: %v", what, err)
	}
	if ws := (broker.PresenceStats{Clients: len(wantMap), Users: len(users)}); stats != ws {
		t.Errorf("%s: PresenceStats %+v, want %+v", what, stats, ws)
	}
}

func clientIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// testPresenceMembers: members are listed with their info and counted by
// client and by distinct user; adding again replaces the info; removing
// the last one empties the channel.
func (s *suite) testPresenceMembers(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("presence")
	other := s.channel("presence-other")
	wantPresence(t, ctx, n, "fresh channel", ch)

	c1 := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"name":"Ann"}`)}
	c2 := &broker.ClientInfo{Client: "c2", User: "u1"}
	c3 := &broker.ClientInfo{Client: "c3", User: "u2", Info: data(`[1,2]`)}
	addPresence(t, ctx, n, ch, c1, time.Minute)
	addPresence(t, ctx, n, ch, c2, time.Minute)
	addPresence(t, ctx, n, ch, c3, 0) // the gateway passes 0
	wantPresence(t, ctx, n, "three clients of two users", ch, c1, c2, c3)
	wantPresence(t, ctx, n, "another channel", other)

	c1b := &broker.ClientInfo{Client: "c1", User: "u3", Info: data(`{"name":"Bob"}`)}
	addPresence(t, ctx, n, ch, c1b, time.Minute)
	wantPresence(t, ctx, n, "c1 added again", ch, c1b, c2, c3)

	removePresence(t, ctx, n, ch, "c1")
	wantPresence(t, ctx, n, "c1 removed", ch, c2, c3)
	removePresence(t, ctx, n, ch, "c1")
	removePresence(t, ctx, n, ch, "never-added")
	removePresence(t, ctx, n, other, "c2")
	wantPresence(t, ctx, n, "unknown clients removed", ch, c2, c3)
	removePresence(t, ctx, n, ch, "c2")
	wantPresence(t, ctx, n, "c2 removed", ch, c3)
	removePresence(t, ctx, n, ch, "c3")
	wantPresence(t, ctx, n, "last member removed", ch)

	addPresence(t, ctx, n, ch, c2, time.Minute)
	wantPresence(t, ctx, n, "added after the channel emptied", ch, c2)
}

// testPresenceTTL: a member leaves after its ttl unless added again.
func (s *suite) testPresenceTTL(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("presence-ttl")
	short := &broker.ClientInfo{Client: "short", User: "u1"}
	long := &broker.ClientInfo{Client: "long", User: "u2"}
	refreshed := &broker.ClientInfo{Client: "refreshed", User: "u1"}

	added := time.Now()
	addPresence(t, ctx, n, ch, short, s.opts.TTL)
	addPresence(t, ctx, n, ch, long, time.Minute)
	addPresence(t, ctx, n, ch, refreshed, s.opts.TTL)
	addPresence(t, ctx, n, ch, refreshed, time.Minute) // added again: lives on
	if time.Since(added) < s.opts.TTL {
		wantPresence(t, ctx, n, "before the ttl", ch, short, long, refreshed)
	}

	eventually(t, s.opts.TTL+s.opts.Timeout, fmt.Sprintf("%q to expire", short.Client), func() bool {
		m, err := n.Presence(ctx, ch)
		if err != nil {
			t.Fatalf("Presence: %v", err)
		}
		_, ok := m[short.Client]
		return !ok
	})
	if d := time.Since(added); d < s.opts.TTL {
		t.Errorf("member expired after %v, ttl %v", d, s.opts.TTL)
	}
	wantPresence(t, ctx, n, "after the ttl", ch, long, refreshed)
}

// testJoinLeave: joins and leaves reach the handler, with their info, only
// while the node is subscribed to the channel.
func (s *suite) testJoinLeave(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("join-leave")
	c1 := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"name":"Ann"}`)}
	c2 := &broker.ClientInfo{Client: "c2", User: "u2"}
	c3 := &broker.ClientInfo{Client: "c3", User: "u3"}

	joinLeave(t, ctx, n, ch, c3) // not subscribed
	subscribe(t, ctx, n, ch)
	joinLeave(t, ctx, n, ch, c1)
	n.rec.WaitJoins(t, ch, 1, s.opts.Timeout)
	n.rec.WaitLeaves(t, ch, 1, s.opts.Timeout)
	unsubscribe(t, ctx, n, ch)
	joinLeave(t, ctx, n, ch, c3)
	subscribe(t, ctx, n, ch)
	joinLeave(t, ctx, n, ch, c2)

	wantInfos(t, "joins", n.rec.WaitJoins(t, ch, 2, s.opts.Timeout), c1, c2)
	wantInfos(t, "leaves", n.rec.WaitLeaves(t, ch, 2, s.opts.Timeout), c1, c2)
}

func joinLeave(t *testing.T, ctx context.Context, b broker.Broker, channel string, info *broker.ClientInfo) {
	t.Helper()
	if err := b.PublishJoin(ctx, channel, info); err != nil {
		t.Fatalf("PublishJoin(%q, %q): %v", channel, info.Client, err)
	}
	if err := b.PublishLeave(ctx, channel, info); err != nil {
		t.Fatalf("PublishLeave(%q, %q): %v", channel, info.Client, err)
	}
}

// testControl: a control message reaches the handler, whatever the node
// subscribed to.
func (s *suite) testControl(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	msg := []byte(fmt.Sprintf(`{"op":"disconnect","user":"u1","id":%q}`, s.channel("control")))
	if err := n.Control(ctx, msg); err != nil {
		t.Fatalf("Control: %v", err)
	}
	n.rec.WaitControl(t, msg, s.opts.Timeout)
}

// testContextDone: Publish and History with a done context fail with its
// error and have no effect.
func (s *suite) testContextDone(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("context")
	subscribe(t, ctx, n, ch)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()

	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		for _, opts := range []broker.PublishOptions{hist, {}} {
			if _, err := n.Publish(c.ctx, ch, data(`{"i":0}`), nil, opts); !isCtxErr(err, c.want) {
				t.Errorf("Publish (HistorySize %d) with a done context: %v, want %v",
					opts.HistorySize, err, c.want)
			}
		}
		if _, err := n.History(c.ctx, ch, broker.HistoryOptions{Limit: -1}); !isCtxErr(err, c.want) {
			t.Errorf("History with a done context: %v, want %v", err, c.want)
		}
	}

	pos := publish(t, ctx, n, ch, data(`{"i":1}`), nil, hist)
	if pos.Offset != 1 {
		t.Errorf("Publish after Publish calls with a done context: offset %d, want 1", pos.Offset)
	}
	pubs := n.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
	wantOffsets(t, "delivered", pubs, pos.Epoch, 1)
}
