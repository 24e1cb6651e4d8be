package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/duplexws/duplex/gateway/broker"
)

// testPublishWithoutHistory: with HistorySize 0 a publication has no
// position, keeps no history and reaches the handler only when the node
// subscribed to the channel.
func (s *suite) testPublishWithoutHistory(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("no-history")
	none := broker.PublishOptions{}

	pos := publish(t, ctx, n, ch, data(`{"i":1}`), nil, none) // not subscribed
	wantPosition(t, "Publish before Subscribe", pos, broker.Position{})
	subscribe(t, ctx, n, ch)
	pos = publish(t, ctx, n, ch, data(`{"i":2}`), nil, none)
	wantPosition(t, "Publish", pos, broker.Position{})

	pubs := n.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
	if len(pubs) != 1 || !bytes.Equal(pubs[0].Data, data(`{"i":2}`)) {
		t.Fatalf("handler received %s, want only {\"i\":2}", fmtPubs(pubs))
	}
	if p := pubs[0]; p.Channel != ch || p.Position != (broker.Position{}) {
		t.Errorf("delivered publication: channel %q position %+v, want %q and the zero position", p.Channel, p.Position, ch)
	}
	h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	if len(h.Publications) != 0 || h.Position.Offset != 0 {
		t.Errorf("History after publications without history: %d publications, offset %d; want none, 0",
			len(h.Publications), h.Position.Offset)
	}
}

// testPublishOffsets: offsets are 1, 2, 3… of one epoch, and the handler receives the publications with them.
func (s *suite) testPublishOffsets(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("offsets")
	subscribe(t, ctx, n, ch)
	positions := publishN(t, ctx, n, ch, 5, hist)
	epoch := positions[0].Epoch
	if epoch == "" {
		t.Fatal("first Publish: empty epoch")
	}
	for i, pos := range positions {
		wantPosition(t, fmt.Sprintf("Publish %d", i+1), pos, broker.Position{Offset: uint64(i + 1), Epoch: epoch})
	}
	pubs := n.rec.WaitPublications(t, ch, 5, s.opts.Timeout)
	wantOffsets(t, "delivered", pubs, epoch, 1, 2, 3, 4, 5)
	for _, p := range pubs {
		if p.Channel != ch {
			t.Errorf("publication %d delivered on channel %q, want %q", p.Position.Offset, p.Channel, ch)
		}
	}
}

// testConcurrentOrder: publishers racing on one channel get every offset
// once, and the handler receives all their publications in offset order.
func (s *suite) testConcurrentOrder(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("concurrent")
	subscribe(t, ctx, n, ch)
	const workers, per = 8, 500
	opts := broker.PublishOptions{HistorySize: 100}

	positions := s.publishConcurrently(t, ctx, ch, workers, per, opts, func(int) node { return n }, "concurrent publishers")
	checkConcurrent(t, positions, per, n.rec.WaitPublications(t, ch, workers*per, 2*s.opts.Timeout))
}

// checkConcurrent checks the positions that the workers' Publish calls
// returned (worker w published {"w":w,"i":i} for i < per) against the
// publications a handler received.
func checkConcurrent(t *testing.T, positions [][]broker.Position, per int, pubs []*broker.Publication) {
	t.Helper()
	total := len(positions) * per
	epoch := positions[0][0].Epoch
	want := make([]json.RawMessage, total+1) // by offset
	for w, ps := range positions {
		for i, pos := range ps {
			if pos.Epoch != epoch {
				t.Fatalf("worker %d publication %d: epoch %q, others %q", w, i, pos.Epoch, epoch)
			}
			if pos.Offset < 1 || pos.Offset > uint64(total) {
				t.Fatalf("worker %d publication %d: offset %d out of 1..%d", w, i, pos.Offset, total)
			}
			if want[pos.Offset] != nil {
				t.Fatalf("offset %d given to two publications", pos.Offset)
			}
			if i > 0 && pos.Offset <= ps[i-1].Offset {
				t.Fatalf("worker %d: publication %d got offset %d after %d", w, i, pos.Offset, ps[i-1].Offset)
			}
			want[pos.Offset] = data(`{"w":%d,"i":%d}`, w, i)
		}
	}
	if len(pubs) != total {
		t.Fatalf("handler received %d publications, want %d", len(pubs), total)
	}
	for i, p := range pubs {
		off := uint64(i + 1)
		if p.Position.Offset != off || p.Position.Epoch != epoch {
			t.Fatalf("delivery %d: position %+v, want {Offset:%d Epoch:%s} (deliveries must follow the offsets)",
				i, p.Position, off, epoch)
		}
		if !bytes.Equal(p.Data, want[off]) {
			t.Fatalf("publication %d holds %s, want %s", off, p.Data, want[off])
		}
	}
}

// testConcurrentHistory: History read while publishers race returns
// snapshots: consecutive offsets ending at the position it returns.
func (s *suite) testConcurrentHistory(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	ch := s.channel("concurrent-history")
	subscribe(t, ctx, n, ch)
	const workers, per, size = 4, 250, 64
	opts := broker.PublishOptions{HistorySize: size}

	// The goroutines report to the test's goroutine: one still running
	// after the test timed out must not call t.
	var pubs, readers sync.WaitGroup
	pubErrs := make([]error, workers)
	for w := range workers {
		pubs.Go(func() {
			for i := range per {
				if _, err := n.Publish(ctx, ch, data(`{"w":%d,"i":%d}`, w, i), nil, opts); err != nil {
					pubErrs[w] = fmt.Errorf("worker %d: Publish %d: %w", w, i, err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	readErrs := make([]error, 2)
	for r := range 2 {
		readers.Go(func() {
			var prev broker.Position
			for reads := 0; ; reads++ {
				select {
				case <-stop:
					if reads > 0 {
						return
					}
				default:
				}
				ho := broker.HistoryOptions{Limit: -1}
				if r == 1 && prev.Epoch != "" {
					ho.Since = &prev
				}
				h, err := n.History(ctx, ch, ho)
				if err != nil {
					readErrs[r] = fmt.Errorf("reader %d: History: %w", r, err)
					return
				}
				if err := checkSnapshot(h, prev, ho.Since, size); err != nil {
					readErrs[r] = fmt.Errorf("reader %d, read %d (%+v): %w", r, reads, ho, err)
					return
				}
				prev = h.Position
				runtime.Gosched() // leave the publishers room on one CPU
			}
		})
	}
	waitGroup(t, &pubs, 2*s.opts.Timeout, "publishers racing with History")
	close(stop)
	waitGroup(t, &readers, 2*s.opts.Timeout, "History readers")
	if err := errors.Join(append(pubErrs, readErrs...)...); err != nil {
		t.Fatal(err)
	}
	h := history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1})
	if h.Position.Offset != workers*per || len(h.Publications) != size {
		t.Errorf("final History: offset %d, %d publications; want %d, %d",
			h.Position.Offset, len(h.Publications), workers*per, size)
	}
	if err := checkSnapshot(h, broker.Position{}, nil, size); err != nil {
		t.Errorf("final History: %v", err)
	}
	n.rec.WaitPublications(t, ch, workers*per, 2*s.opts.Timeout)
}

// checkSnapshot checks a History result (Limit -1, no TTL) read after prev.
func checkSnapshot(h broker.HistoryResult, prev broker.Position, since *broker.Position, size int) error {
	pos := h.Position
	if pos == (broker.Position{}) && len(h.Publications) == 0 && prev.Epoch == "" {
		return nil // read before the first publication started the stream
	}
	if pos.Epoch == "" {
		return fmt.Errorf("empty epoch")
	}
	if prev.Epoch != "" && (pos.Epoch != prev.Epoch || pos.Offset < prev.Offset) {
		return fmt.Errorf("position %+v after %+v", pos, prev)
	}
	if len(h.Publications) > size {
		return fmt.Errorf("%d publications, history keeps %d", len(h.Publications), size)
	}
	if len(h.Publications) == 0 {
		if (since != nil && since.Offset < pos.Offset) || (since == nil && pos.Offset > 0) {
			return fmt.Errorf("no publications, position %+v", pos)
		}
		return nil
	}
	for i, p := range h.Publications {
		if p.Position.Epoch != pos.Epoch {
			return fmt.Errorf("publication %d of epoch %q, position %+v", p.Position.Offset, p.Position.Epoch, pos)
		}
		if i > 0 && p.Position.Offset != h.Publications[i-1].Position.Offset+1 {
			return fmt.Errorf("offsets not consecutive: %v", offsets(h.Publications))
		}
	}
	if first := h.Publications[0].Position.Offset; since != nil && first <= since.Offset {
		return fmt.Errorf("publication %d returned, since %d", first, since.Offset)
	}
	if last := h.Publications[len(h.Publications)-1].Position.Offset; last != pos.Offset {
		return fmt.Errorf("last publication %d, position %+v: not a snapshot", last, pos)
	}
	return nil
}

// testResubscribe: Unsubscribe stops delivery, Subscribe restores it.
func (s *suite) testResubscribe(t *testing.T) {
	for _, opts := range []broker.PublishOptions{{}, hist} {
		t.Run(fmt.Sprintf("HistorySize=%d", opts.HistorySize), func(t *testing.T) {
			n := s.start(t)
			ctx := s.ctx(t)
			ch := s.channel("resubscribe")
			subscribe(t, ctx, n, ch)
			publish(t, ctx, n, ch, data(`{"i":1}`), nil, opts)
			n.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
			unsubscribe(t, ctx, n, ch)
			publish(t, ctx, n, ch, data(`{"i":2}`), nil, opts)
			subscribe(t, ctx, n, ch)
			publish(t, ctx, n, ch, data(`{"i":3}`), nil, opts)
			pubs := n.rec.WaitPublications(t, ch, 2, s.opts.Timeout)
			if got := dataOf(pubs); !slices.Equal(got, []string{`{"i":1}`, `{"i":3}`}) {
				t.Errorf("handler received %v, want [{\"i\":1} {\"i\":3}]", got)
			}
		})
	}
}

// testRoundTrip: Data and Info come back byte for byte, from the handler
// and from History, and a nil Info stays nil.
func (s *suite) testRoundTrip(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	cases := []struct {
		data json.RawMessage
		info *broker.ClientInfo
	}{
		// Escapes kept as they are, characters that encoding/json would
		// escape (<, >, &, U+2028) kept unescaped.
		{json.RawMessage(`{"text":"h\u00e9llo \"w\u00f6rld\" \\ / <b>&amp;</b> 😀",` +
			"\"raw\":\"\u2028\u2029\"," + `"n":[1,2.5,-3e10,null,true,false],"o":{}}`),
			&broker.ClientInfo{Client: "client-1", User: "user-1", Info: json.RawMessage(`{"name":"<Ann>","roles":["a","b"]}`)}},
		{json.RawMessage(`"just a string"`), &broker.ClientInfo{Client: "client-2", User: ""}},
		{json.RawMessage(`42`), nil},
		{json.RawMessage(`[]`), &broker.ClientInfo{Client: "client-3", User: "user-3", Info: json.RawMessage(`[1,{"a":"b"}]`)}},
		{json.RawMessage(`{}`), nil},
	}
	for _, c := range cases {
		if !json.Valid(c.data) || c.info != nil && c.info.Info != nil && !json.Valid(c.info.Info) {
			t.Fatalf("the suite's own case is not JSON: %s", c.data)
		}
	}
	for _, opts := range []broker.PublishOptions{{}, hist} {
		ch := s.channel(fmt.Sprintf("round-trip-%d", opts.HistorySize))
		subscribe(t, ctx, n, ch)
		for _, c := range cases {
			publish(t, ctx, n, ch, c.data, c.info, opts)
		}
		check := func(what string, pubs []*broker.Publication) {
			t.Helper()
			if len(pubs) != len(cases) {
				t.Errorf("%s: %d publications, want %d", what, len(pubs), len(cases))
				return
			}
			for i, p := range pubs {
				c := cases[i]
				if !bytes.Equal(p.Data, c.data) {
					t.Errorf("%s %d: data %s, want %s", what, i, p.Data, c.data)
				}
				if !equalInfo(p.Info, c.info) {
					t.Errorf("%s %d: info %s, want %s", what, i, fmtInfo(p.Info), fmtInfo(c.info))
				}
				if p.Channel != ch {
					t.Errorf("%s %d: channel %q, want %q", what, i, p.Channel, ch)
				}
			}
		}
		what := fmt.Sprintf("HistorySize %d: delivered", opts.HistorySize)
		check(what, n.rec.WaitPublications(t, ch, len(cases), s.opts.Timeout))
		if opts.HistorySize > 0 {
			check("History", history(t, ctx, n, ch, broker.HistoryOptions{Limit: -1}).Publications)
		}
	}
}

func dataOf(pubs []*broker.Publication) []string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = string(p.Data)
	}
	return out
}

func fmtPubs(pubs []*broker.Publication) string {
	return fmt.Sprint(dataOf(pubs))
}

// publishConcurrently runs workers goroutines that each publish per
// numbered messages to ch, worker w on nodeFor(w), and returns the
// positions each worker got, in its order. The workers report to the
// test's goroutine: one still running after the test timed out must not
// call t.
func (s *suite) publishConcurrently(t *testing.T, ctx context.Context, ch string, workers, per int, opts broker.PublishOptions, nodeFor func(w int) node, what string) [][]broker.Position {
	t.Helper()
	positions := make([][]broker.Position, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		n := nodeFor(w)
		wg.Go(func() {
			for i := range per {
				pos, err := n.Publish(ctx, ch, data(`{"w":%d,"i":%d}`, w, i), nil, opts)
				if err != nil {
					errs[w] = fmt.Errorf("worker %d: Publish %d: %w", w, i, err)
					return
				}
				positions[w] = append(positions[w], pos)
			}
		})
	}
	waitGroup(t, &wg, 2*s.opts.Timeout, what)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return positions
}
