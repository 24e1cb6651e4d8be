package brokertest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// The multi-node subtests run two nodes, a and b, of one backend.

// testMultiPublish: a publication made on one node reaches the other when
// it subscribed, and only then.
func (s *suite) testMultiPublish(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	for _, opts := range []broker.PublishOptions{hist, {}} {
		ch := s.channel(fmt.Sprintf("multi-publish-%d", opts.HistorySize))
		info := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"n":1}`)}
		publish(t, ctx, a, ch, data(`{"i":0}`), info, opts) // nobody subscribed
		subscribe(t, ctx, b, ch)
		var positions []broker.Position
		for i := 1; i <= 3; i++ {
			positions = append(positions, publish(t, ctx, a, ch, data(`{"i":%d}`, i), info, opts))
		}
		pubs := b.rec.WaitPublications(t, ch, 3, s.opts.Timeout)
		if got := dataOf(pubs); !slices.Equal(got, []string{`{"i":1}`, `{"i":2}`, `{"i":3}`}) {
			t.Fatalf("HistorySize %d: node b received %v, want {\"i\":1} to {\"i\":3}", opts.HistorySize, got)
		}
		for i, p := range pubs {
			if p.Position != positions[i] || p.Channel != ch || !equalInfo(p.Info, info) {
				t.Errorf("HistorySize %d: node b received %q %+v %s, want %q %+v %s", opts.HistorySize,
					p.Channel, p.Position, fmtInfo(p.Info), ch, positions[i], fmtInfo(info))
			}
		}
		// a did not subscribe: it receives its own publications only once
		// it does.
		subscribe(t, ctx, a, ch)
		publish(t, ctx, b, ch, data(`{"i":4}`), nil, opts)
		if got := dataOf(a.rec.WaitPublications(t, ch, 1, s.opts.Timeout)); !slices.Equal(got, []string{`{"i":4}`}) {
			t.Errorf("HistorySize %d: node a received %v, want only {\"i\":4}", opts.HistorySize, got)
		}
		b.rec.WaitPublications(t, ch, 4, s.opts.Timeout)
	}
}

// testMultiResubscribe: Unsubscribe on one node stops delivery from the
// other.
func (s *suite) testMultiResubscribe(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("multi-resubscribe")
	subscribe(t, ctx, b, ch)
	publish(t, ctx, a, ch, data(`{"i":1}`), nil, hist)
	b.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
	unsubscribe(t, ctx, b, ch)
	publish(t, ctx, a, ch, data(`{"i":2}`), nil, hist)
	subscribe(t, ctx, b, ch)
	publish(t, ctx, a, ch, data(`{"i":3}`), nil, hist)
	pubs := b.rec.WaitPublications(t, ch, 2, s.opts.Timeout)
	if got := offsets(pubs); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("node b received offsets %v, want [1 3]", got)
	}
}

// testMultiConcurrentOrder: publishers racing on both nodes get every
// offset once, and both nodes receive all the publications in offset
// order.
func (s *suite) testMultiConcurrentOrder(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("multi-concurrent")
	subscribe(t, ctx, a, ch)
	subscribe(t, ctx, b, ch)
	const workers, per = 8, 250 // half on each node
	opts := broker.PublishOptions{HistorySize: 100}

	positions := s.publishConcurrently(t, ctx, ch, workers, per, opts, func(w int) node {
		if w%2 == 1 {
			return b
		}
		return a
	}, "concurrent publishers on two nodes")
	for _, n := range []node{a, b} {
		checkConcurrent(t, positions, per, n.rec.WaitPublications(t, ch, workers*per, 2*s.opts.Timeout))
	}
}

// testMultiHistory: both nodes read one stream, with one epoch, also when
// one node read it (and so created nothing) before the other published.
func (s *suite) testMultiHistory(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("multi-history")
	before := history(t, ctx, b, ch, broker.HistoryOptions{}).Position
	wantPosition(t, "node b: History of a fresh channel", before, broker.Position{})
	info := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"n":1}`)}
	var top broker.Position
	for i := 1; i <= 3; i++ {
		top = publish(t, ctx, a, ch, data(`{"i":%d}`, i), info, hist)
	}
	if top.Offset != 3 || top.Epoch == "" {
		t.Fatalf("node a: third Publish: %+v, want offset 3 of an epoch", top)
	}
	epoch := top.Epoch
	for name, n := range map[string]node{"node a": a, "node b": b} {
		h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1, Since: &broker.Position{Epoch: epoch}})
		wantPosition(t, name, h.Position, top)
		wantOffsets(t, name, h.Publications, epoch, 1, 2, 3)
		for _, p := range h.Publications {
			if !equalInfo(p.Info, info) {
				t.Errorf("%s: publication %d info %s, want %s", name, p.Position.Offset, fmtInfo(p.Info), fmtInfo(info))
			}
		}
	}
	pos := publish(t, ctx, b, ch, data(`{"i":4}`), nil, hist)
	wantPosition(t, "node b: Publish", pos, broker.Position{Offset: 4, Epoch: epoch})
	h := history(t, ctx, a, ch, broker.HistoryOptions{Limit: 2, Reverse: true})
	wantOffsets(t, "node a: newest two", h.Publications, epoch, 4, 3)
}

// testMultiPresence: both nodes see one member list.
func (s *suite) testMultiPresence(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("multi-presence")
	c1 := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"name":"Ann"}`)}
	c2 := &broker.ClientInfo{Client: "c2", User: "u1"}
	c3 := &broker.ClientInfo{Client: "c3", User: "u2"}
	addPresence(t, ctx, a, ch, c1, time.Minute)
	addPresence(t, ctx, a, ch, c2, time.Minute)
	addPresence(t, ctx, b, ch, c3, time.Minute)
	wantPresence(t, ctx, a, "node a", ch, c1, c2, c3)
	wantPresence(t, ctx, b, "node b", ch, c1, c2, c3)
	removePresence(t, ctx, b, ch, "c1") // added by a
	wantPresence(t, ctx, a, "node a after b removed c1", ch, c2, c3)
	removePresence(t, ctx, a, ch, "c2")
	removePresence(t, ctx, a, ch, "c3")
	wantPresence(t, ctx, b, "node b after a removed the rest", ch)
}

// testMultiJoinLeave: joins and leaves published on one node reach the
// other when it subscribed, and only then.
func (s *suite) testMultiJoinLeave(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	ch := s.channel("multi-join-leave")
	c1 := &broker.ClientInfo{Client: "c1", User: "u1", Info: data(`{"name":"Ann"}`)}
	c2 := &broker.ClientInfo{Client: "c2", User: "u2"}
	joinLeave(t, ctx, a, ch, c2) // nobody subscribed
	subscribe(t, ctx, b, ch)
	joinLeave(t, ctx, a, ch, c1)
	wantInfos(t, "node b joins", b.rec.WaitJoins(t, ch, 1, s.opts.Timeout), c1)
	wantInfos(t, "node b leaves", b.rec.WaitLeaves(t, ch, 1, s.opts.Timeout), c1)
	subscribe(t, ctx, a, ch)
	joinLeave(t, ctx, b, ch, c2)
	wantInfos(t, "node a joins", a.rec.WaitJoins(t, ch, 1, s.opts.Timeout), c2)
	wantInfos(t, "node a leaves", a.rec.WaitLeaves(t, ch, 1, s.opts.Timeout), c2)
	wantInfos(t, "node b joins", b.rec.WaitJoins(t, ch, 2, s.opts.Timeout), c1, c2)
}

// testMultiControl: a control message reaches every node, the sender's
// too.
func (s *suite) testMultiControl(t *testing.T) {
	a, b := s.startPair(t)
	ctx := s.ctx(t)
	for _, from := range []node{a, b} {
		msg := []byte(fmt.Sprintf(`{"op":"disconnect","id":%q}`, s.channel("multi-control")))
		if err := from.Control(ctx, msg); err != nil {
			t.Fatalf("Control: %v", err)
		}
		a.rec.WaitControl(t, msg, s.opts.Timeout)
		b.rec.WaitControl(t, msg, s.opts.Timeout)
	}
}

// testMultiCloseOne: closing one node leaves the other working, with the
// stream the closed one wrote.
func (s *suite) testMultiCloseOne(t *testing.T) {
	a, b := s.startPair(t) // a's cleanup closes it again
	ctx := s.ctx(t)
	ch := s.channel("multi-close-one")
	subscribe(t, ctx, a, ch)
	subscribe(t, ctx, b, ch)
	first := publish(t, ctx, a, ch, data(`{"i":1}`), nil, hist)
	b.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
	if err := a.Close(ctx); err != nil {
		t.Fatalf("node a: Close: %v", err)
	}
	pos := publish(t, ctx, b, ch, data(`{"i":2}`), nil, hist)
	wantPosition(t, "node b: Publish after a closed", pos, broker.Position{Offset: 2, Epoch: first.Epoch})
	wantOffsets(t, "node b: delivered", b.rec.WaitPublications(t, ch, 2, s.opts.Timeout), first.Epoch, 1, 2)
	h := history(t, ctx, b, ch, broker.HistoryOptions{Limit: -1})
	wantOffsets(t, "node b: History", h.Publications, first.Epoch, 1, 2)
	if got := a.rec.Publications(ch); len(got) > 1 {
		t.Errorf("closed node a received %d publications, want at most the 1 before Close", len(got))
	}
}
