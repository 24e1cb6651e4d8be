package brokertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// testStartTwice: a second Start fails and leaves delivery to the first
// handler.
func (s *suite) testStartTwice(t *testing.T) {
	n := s.start(t)
	ctx := s.ctx(t)
	other := NewRecorder()
	if err := noPanic(func() error { return n.Start(ctx, other) }); err == nil {
		t.Error("second Start returned nil, want an error")
	}
	ch := s.channel("start-twice")
	subscribe(t, ctx, n, ch)
	publish(t, ctx, n, ch, data(`{"i":1}`), nil, hist)
	n.rec.WaitPublications(t, ch, 1, s.opts.Timeout)
	if got := other.Publications(ch); len(got) != 0 {
		t.Errorf("the second Start's handler received %d publications", len(got))
	}
}

// testAfterClose: after Close every method fails with ErrClosed, without a
// panic, and nothing more is delivered.
func (s *suite) testAfterClose(t *testing.T) {
	n := s.start(t) // its cleanup closes it a second time
	ctx := s.ctx(t)
	ch := s.channel("after-close")
	info := &broker.ClientInfo{Client: "c1", User: "u1"}
	subscribe(t, ctx, n, ch)
	addPresence(t, ctx, n, ch, info, time.Minute)
	publish(t, ctx, n, ch, data(`{"i":1}`), nil, hist)
	n.rec.WaitPublications(t, ch, 1, s.opts.Timeout)

	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Start", func() error { return n.Start(ctx, NewRecorder()) }},
		{"Publish", func() error {
			_, err := n.Publish(ctx, ch, data(`{"i":2}`), nil, hist)
			return err
		}},
		{"Publish without history", func() error {
			_, err := n.Publish(ctx, ch, data(`{"i":3}`), nil, broker.PublishOptions{})
			return err
		}},
		{"PublishJoin", func() error { return n.PublishJoin(ctx, ch, info) }},
		{"PublishLeave", func() error { return n.PublishLeave(ctx, ch, info) }},
		{"Control", func() error { return n.Control(ctx, []byte(`{"op":"after-close"}`)) }},
		{"Subscribe", func() error { return n.Subscribe(ctx, s.channel("after-close-other")) }},
		{"Unsubscribe", func() error { return n.Unsubscribe(ctx, ch) }},
		{"History", func() error {
			_, err := n.History(ctx, ch, broker.HistoryOptions{Limit: -1})
			return err
		}},
		{"AddPresence", func() error {
			return n.AddPresence(ctx, ch, &broker.ClientInfo{Client: "c2", User: "u2"}, time.Minute)
		}},
		{"RemovePresence", func() error { return n.RemovePresence(ctx, ch, info.Client) }},
		{"Presence", func() error {
			_, err := n.Presence(ctx, ch)
			return err
		}},
		{"PresenceStats", func() error {
			_, err := n.PresenceStats(ctx, ch)
			return err
		}},
	}
	for _, c := range calls {
		if err := noPanic(c.call); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
	if got := n.rec.Publications(ch); len(got) != 1 {
		t.Errorf("handler received %d publications, want only the one before Close", len(got))
	}
	if got := n.rec.Joins(ch); len(got) != 0 {
		t.Errorf("handler received %d joins after Close", len(got))
	}
	if got := n.rec.Leaves(ch); len(got) != 0 {
		t.Errorf("handler received %d leaves after Close", len(got))
	}
	if got := n.rec.Controls(); len(got) != 0 {
		t.Errorf("handler received %d control messages after Close", len(got))
	}
}

// testCloseTwice: Close may be called again, also concurrently, and
// returns nil.
func (s *suite) testCloseTwice(t *testing.T) {
	n := s.start(t) // its cleanup closes it once more
	ctx := s.ctx(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = noPanic(func() error { return n.Close(ctx) }) })
	}
	waitGroup(t, &wg, s.opts.Timeout, "two concurrent Close calls")
	for i, err := range errs {
		if err != nil {
			t.Errorf("Close %d: %v", i+1, err)
		}
	}
	if err := noPanic(func() error { return n.Close(context.Background()) }); err != nil {
		t.Errorf("third Close: %v", err)
	}
}
