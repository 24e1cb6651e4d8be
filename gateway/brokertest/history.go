package brokertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// testHistoryEmpty: a channel never published to has an epoch, offset 0,
// no publications, and keeps its epoch from one read to the next.
func (s *suite) testHistoryEmpty(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("empty")
	for _, opts := range []broker.HistoryOptions{
		{},
		{Limit: -1},
		{Limit: 10, Reverse: true},
		{Limit: -1, Since: &broker.Position{Epoch: "some-epoch"}},
	} {
		got := history(t, ctx, n, ch, opts)
		wantPosition(t, fmt.Sprintf("History(%+v) of a fresh channel", opts), got.Position, broker.Position{})
		if len(got.Publications) != 0 {
			t.Errorf("History(%+v) of a fresh channel: %d publications", opts, len(got.Publications))
		}
	}
}

// testHistoryLimit: Limit 0 gives only the position, -1 everything, n the
// oldest n, or the newest n first with Reverse.
func (s *suite) testHistoryLimit(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("limit")
	positions := publishN(t, ctx, n, ch, 5, hist)
	top := positions[4]
	e := top.Epoch

	h := history(t, ctx, n, ch, broker.HistoryOptions{})
	wantPosition(t, "Limit 0", h.Position, top)
	wantOffsets(t, "Limit 0", h.Publications, e)

	for _, c := range []struct {
		name string
		opts broker.HistoryOptions
		want []uint64
	}{
		{"Limit -1", broker.HistoryOptions{Limit: -1}, []uint64{1, 2, 3, 4, 5}},
		{"Limit 2", broker.HistoryOptions{Limit: 2}, []uint64{1, 2}},
		{"Limit 5", broker.HistoryOptions{Limit: 5}, []uint64{1, 2, 3, 4, 5}},
		{"Limit 100", broker.HistoryOptions{Limit: 100}, []uint64{1, 2, 3, 4, 5}},
		{"Limit 2 Reverse", broker.HistoryOptions{Limit: 2, Reverse: true}, []uint64{5, 4}},
		{"Limit -1 Reverse", broker.HistoryOptions{Limit: -1, Reverse: true}, []uint64{5, 4, 3, 2, 1}},
		{"Limit 0 Reverse", broker.HistoryOptions{Reverse: true}, nil},
	} {
		h := history(t, ctx, n, ch, c.opts)
		wantPosition(t, c.name, h.Position, top)
		wantOffsets(t, c.name, h.Publications, e, c.want...)
	}
}

// testHistorySince: Since selects the publications after it, of its epoch
// only.
func (s *suite) testHistorySince(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("since")
	top := publishN(t, ctx, n, ch, 5, hist)[4]
	e := top.Epoch
	at := func(off uint64) *broker.Position { return &broker.Position{Offset: off, Epoch: e} }

	for _, c := range []struct {
		name string
		opts broker.HistoryOptions
		want []uint64
	}{
		{"Since 3", broker.HistoryOptions{Since: at(3), Limit: -1}, []uint64{4, 5}},
		{"Since 0", broker.HistoryOptions{Since: at(0), Limit: -1}, []uint64{1, 2, 3, 4, 5}},
		{"Since 5 (the top)", broker.HistoryOptions{Since: at(5), Limit: -1}, nil},
		{"Since 9 (ahead)", broker.HistoryOptions{Since: at(9), Limit: -1}, nil},
		{"Since 3 Limit 1", broker.HistoryOptions{Since: at(3), Limit: 1}, []uint64{4}},
		{"Since 3 Limit 0", broker.HistoryOptions{Since: at(3)}, nil},
		{"Since 2 Reverse", broker.HistoryOptions{Since: at(2), Limit: -1, Reverse: true}, []uint64{5, 4, 3}},
		{"Since another epoch", broker.HistoryOptions{
			Since: &broker.Position{Offset: 2, Epoch: e + "-other"}, Limit: -1}, nil},
		{"Since another epoch, offset 0", broker.HistoryOptions{
			Since: &broker.Position{Epoch: "x" + e}, Limit: -1}, nil},
	} {
		h := history(t, ctx, n, ch, c.opts)
		wantPosition(t, c.name, h.Position, top)
		wantOffsets(t, c.name, h.Publications, e, c.want...)
	}
}

// testHistorySize: the stream keeps the newest HistorySize publications;
// a Since before them returns what is left, for the caller to see the gap.
func (s *suite) testHistorySize(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("size")
	top := publishN(t, ctx, n, ch, 5, broker.PublishOptions{HistorySize: 3})[4]
	e := top.Epoch
	wantPosition(t, "fifth Publish", top, broker.Position{Offset: 5, Epoch: e})

	h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	wantPosition(t, "Limit -1", h.Position, top)
	wantOffsets(t, "Limit -1", h.Publications, e, 3, 4, 5)
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: 2, Reverse: true})
	wantOffsets(t, "Limit 2 Reverse", h.Publications, e, 5, 4)
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1, Since: &broker.Position{Offset: 1, Epoch: e}})
	wantOffsets(t, "Since 1", h.Publications, e, 3, 4, 5)
}

// testHistoryTTL: publications leave history after HistoryTTL; the
// stream's position stays.
func (s *suite) testHistoryTTL(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("history-ttl")
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: s.opts.TTL}
	published := time.Now() // before the publications: their TTL runs from later
	top := publishN(t, ctx, n, ch, 2, opts)[1]
	e := top.Epoch
	h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	if time.Since(published) < s.opts.TTL {
		wantOffsets(t, "History before the TTL", h.Publications, e, 1, 2)
	}

	eventually(t, s.opts.TTL+s.opts.Timeout, "history to expire", func() bool {
		h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
		return len(h.Publications) == 0
	})
	if d := time.Since(published); d < s.opts.TTL {
		t.Errorf("history expired after %v, HistoryTTL %v", d, s.opts.TTL)
	}
	wantPosition(t, "History after the TTL", h.Position, top)
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1, Since: &broker.Position{Epoch: e}})
	wantOffsets(t, "Since 0 after the TTL", h.Publications, e)

	pos := publish(t, ctx, n, ch, data(`{"i":3}`), nil, opts)
	wantPosition(t, "Publish after the TTL", pos, broker.Position{Offset: 3, Epoch: e})
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	wantOffsets(t, "History after the TTL and a Publish", h.Publications, e, 3)
}

// testHistoryReadThenPublish: reading a channel creates nothing (an
// attacker may read millions of fresh names): its first publication starts
// a stream under a new epoch at offset 1, and History without Since then
// holds it.
func (s *suite) testHistoryReadThenPublish(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("read-then-publish")
	subscribe(t, ctx, n, ch)
	before := history(t, ctx, n, ch, broker.HistoryOptions{}).Position
	wantPosition(t, "History before the first publication", before, broker.Position{})
	pos := publish(t, ctx, n, ch, data(`{"i":1}`), nil, hist)
	if pos.Epoch == "" || pos.Offset != 1 {
		t.Fatalf("first Publish: position %+v, want offset 1 of a new epoch", pos)
	}
	h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	wantPosition(t, "History after the first publication", h.Position, pos)
	wantOffsets(t, "History after the first publication", h.Publications, pos.Epoch, 1)
	wantOffsets(t, "delivered", n.rec.WaitPublications(t, ch, 1, s.opts.Timeout), pos.Epoch, 1)
}

// testStreamTTL: StreamTTL after its last publication, a stream restarts
// under a new epoch from offset 1; it lives at least as long as its
// HistoryTTL.
func (s *suite) testStreamTTL(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("stream-ttl")
	long := s.channel("stream-ttl-history-ttl")
	short := broker.PublishOptions{HistorySize: 10, StreamTTL: s.opts.TTL}
	// The stream must outlive its HistoryTTL, whatever its StreamTTL.
	longer := broker.PublishOptions{HistorySize: 10, StreamTTL: s.opts.TTL, HistoryTTL: 10 * s.opts.TTL}

	published := time.Now() // before the publications: their TTL runs from later
	old := publishN(t, ctx, n, ch, 2, short)[1]
	oldLong := publishN(t, ctx, n, long, 2, longer)[1]

	var h broker.HistoryResult
	eventually(t, s.opts.TTL+s.opts.Timeout, "the stream to expire", func() bool {
		h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
		return h.Position.Epoch != old.Epoch
	})
	if d := time.Since(published); d < s.opts.TTL {
		t.Errorf("stream expired after %v, StreamTTL %v", d, s.opts.TTL)
	}
	// An expired stream is gone: reading it, like a fresh channel, shows
	// no stream and starts none.
	if h.Position != (broker.Position{}) || len(h.Publications) != 0 {
		t.Errorf("History of the expired stream: %+v with %d publications; want no stream",
			h.Position, len(h.Publications))
	}
	hl := history(t, ctx, n, long, broker.HistoryOptions{Limit: -1})
	if time.Since(published) < 9*s.opts.TTL {
		wantPosition(t, "stream whose HistoryTTL outlives its StreamTTL", hl.Position, oldLong)
		wantOffsets(t, "stream whose HistoryTTL outlives its StreamTTL", hl.Publications, oldLong.Epoch, 1, 2)
	}

	pos := publish(t, ctx, n, ch, data(`{"i":1}`), nil, short)
	if pos.Offset != 1 || pos.Epoch == "" || pos.Epoch == old.Epoch {
		t.Errorf("Publish to the expired stream: position %+v, want offset 1 of a new epoch", pos)
	}
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	wantPosition(t, "History of the new stream", h.Position, pos)
	wantOffsets(t, "History of the new stream", h.Publications, pos.Epoch, 1)
	h = history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1, Since: &old})
	wantPosition(t, "History since a position of the old epoch", h.Position, pos)
	wantOffsets(t, "History since a position of the old epoch", h.Publications, pos.Epoch)
}
