package nats_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/gateway/brokertest"
	"github.com/duplexws/duplex/internal/testnats"
)

// started makes and starts a broker with opts, closed in t's cleanup.
func started(t *testing.T, opts nats.Options) (*nats.Broker, *brokertest.Recorder) {
	t.Helper()
	b := nats.New(opts)
	rec := brokertest.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, v := range rec.Violations() {
			t.Errorf("handler contract broken: %s", v)
		}
	})
	return b, rec
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestStartUnreachable: Start against a port nobody listens on fails at
// once, naming the server without the password.
func TestStartUnreachable(t *testing.T) {
	addr := closedPort(t)
	b := nats.New(nats.Options{Servers: []string{addr}, User: "ann", Password: "hunter2"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := b.Start(ctx, brokertest.NewRecorder())
	if err == nil {
		t.Fatal("Start: no error")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Start took %v for a refused connection", took)
	}
	msg := err.Error()
	if !strings.Contains(msg, addr) || strings.Contains(msg, "hunter2") || !strings.HasPrefix(msg, "nats broker: connect to ") {
		t.Errorf("Start: %q; want the address, without the password", msg)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close after a failed Start: %v", err)
	}
}

// TestStartSilentServer: a server that accepts the connection and never
// speaks (a hung one) makes Start fail within its context.
func TestStartSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	b := nats.New(nats.Options{Servers: []string{l.Addr().String()}})
	const timeout = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err = b.Start(ctx, brokertest.NewRecorder())
	took := time.Since(start)
	if err == nil {
		t.Fatal("Start: no error")
	}
	if took > timeout+time.Second {
		t.Errorf("Start took %v, its context %v", took, timeout)
	}
	// The dial Start gave up on ends when the server hangs up; Close
	// waits for it.
	l.Close()
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := b.Close(cctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestStartWithoutJetStream: a server without JetStream is refused at
// Start with an error that says so.
func TestStartWithoutJetStream(t *testing.T) {
	s := testnats.Start(t, testnats.Options{NoJetStream: true})
	b := nats.New(nats.Options{Servers: []string{s.Addr()}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.Start(ctx, brokertest.NewRecorder())
	if err == nil || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Errorf("Start: %v, want an error saying JetStream is not enabled", err)
	}
	b.Close(ctx)
}

// TestAuth: the credentials of the options reach the server, wrong ones
// fail without being quoted, and TLS works.
func TestAuth(t *testing.T) {
	for _, c := range []struct {
		name  string
		srv   testnats.Options
		right nats.Options
		wrong nats.Options
	}{
		{"password", testnats.Options{User: "ann", Password: "s3cret"},
			nats.Options{User: "ann", Password: "s3cret"}, nats.Options{User: "ann", Password: "hunter2"}},
		{"token", testnats.Options{Token: "t0ken"}, nats.Options{Token: "t0ken"}, nats.Options{Token: "hunter2"}},
		{"tls", testnats.Options{TLS: true}, nats.Options{}, nats.Options{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := testnats.Start(t, c.srv)
			// The URL as the command line would give it.
			right, err := nats.ParseURL(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			if right.TLS != nil {
				right.TLS = s.TLSConfig()
			}
			b, _ := started(t, right)
			ctx := testCtx(t)
			if _, err := b.Publish(ctx, "ch", []byte(`1`), nil, broker.PublishOptions{HistorySize: 1}); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if c.wrong.Password == "" && c.wrong.Token == "" {
				return
			}
			c.wrong.Servers = []string{s.Addr()}
			w := nats.New(c.wrong)
			err = w.Start(ctx, brokertest.NewRecorder())
			if err == nil {
				w.Close(ctx)
				t.Fatal("Start with wrong credentials: no error")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Start: %q quotes the secret", err)
			}
			w.Close(ctx)
		})
	}
}

// TestConcurrentPublishers: publishers on two brokers racing on one
// channel get every offset once, without holes, and a third broker
// receives them all in offset order. It reports the rate, and the rate
// of publishers on channels of their own.
func TestConcurrentPublishers(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	prefix := randomPrefix("concurrent")
	a, _ := started(t, testOptions(s, prefix))
	b, _ := started(t, testOptions(s, prefix))
	sub, rec := started(t, testOptions(s, prefix))
	ctx := testCtx(t)
	const workers, per = 8, 150
	opts := broker.PublishOptions{HistorySize: 50}

	ch := "concurrent"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	positions, took := publishAll(t, ctx, []*nats.Broker{a, b}, workers, per, func(int) string { return ch }, opts)
	t.Logf("one channel, %d publishers on two brokers: %d publications in %v, %.0f/s",
		workers, workers*per, took.Round(time.Millisecond), float64(workers*per)/took.Seconds())
	epoch := positions[0][0].Epoch
	seen := make(map[uint64]string) // offset → data
	for w, ps := range positions {
		for i, p := range ps {
			if p.Epoch != epoch {
				t.Fatalf("worker %d publication %d: epoch %q, others %q", w, i, p.Epoch, epoch)
			}
			if other, dup := seen[p.Offset]; dup {
				t.Fatalf("offset %d given twice: to %s and to worker %d's %d", p.Offset, other, w, i)
			}
			seen[p.Offset] = fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
			if i > 0 && p.Offset <= ps[i-1].Offset {
				t.Fatalf("worker %d: offset %d after %d", w, p.Offset, ps[i-1].Offset)
			}
		}
	}
	for off := uint64(1); off <= workers*per; off++ {
		if _, ok := seen[off]; !ok {
			t.Fatalf("offset %d given to nobody: a hole", off)
		}
	}
	pubs := rec.WaitPublications(t, ch, workers*per, 30*time.Second)
	for i, p := range pubs {
		if p.Position.Offset != uint64(i+1) || p.Position.Epoch != epoch {
			t.Fatalf("delivery %d: %+v, want offset %d (in order)", i, p.Position, i+1)
		}
		if want := seen[p.Position.Offset]; string(p.Data) != want {
			t.Fatalf("delivery %d holds %s, want %s", i, p.Data, want)
		}
	}

	_, took = publishAll(t, ctx, []*nats.Broker{a, b}, workers, per, func(w int) string { return fmt.Sprintf("own-%d", w) }, opts)
	t.Logf("a channel each, %d publishers on two brokers: %d publications in %v, %.0f/s",
		workers, workers*per, took.Round(time.Millisecond), float64(workers*per)/took.Seconds())
}

// TestAlternatingNodes: nodes that take turns publishing to a channel
// they subscribe to, as the users of a chat on two nodes do, learn each
// other's publications from the deliveries and need not read the channel
// before publishing.
func TestAlternatingNodes(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	prefix := randomPrefix("alternating")
	a, recA := started(t, testOptions(s, prefix))
	b, recB := started(t, testOptions(s, prefix))
	ctx := testCtx(t)
	for _, n := range []*nats.Broker{a, b} {
		if err := n.Subscribe(ctx, "chat"); err != nil {
			t.Fatal(err)
		}
	}
	const turns = 40
	for i := 1; i <= turns; i++ {
		n := []*nats.Broker{a, b}[i%2]
		pos, err := n.Publish(ctx, "chat", fmt.Appendf(nil, "%d", i), nil, broker.PublishOptions{HistorySize: 10})
		if err != nil || pos.Offset != uint64(i) {
			t.Fatalf("Publish %d: %+v, %v", i, pos, err)
		}
		// The next one is published once this one was delivered.
		recA.WaitPublications(t, "chat", i, 10*time.Second)
		recB.WaitPublications(t, "chat", i, 10*time.Second)
	}
	reads := nats.TipReads(a) + nats.TipReads(b)
	t.Logf("%d publications taking turns: %d tip reads", turns, reads)
	if reads > 4 {
		t.Errorf("%d publications taking turns read the tip %d times, want at most one per node and a little", turns, reads)
	}
}

// publishAll runs workers publishers, worker w on brokers[w%len] to
// channel(w), each publishing {"w":w,"i":i} for i < per.
func publishAll(t *testing.T, ctx context.Context, brokers []*nats.Broker, workers, per int, channel func(int) string, opts broker.PublishOptions) ([][]broker.Position, time.Duration) {
	t.Helper()
	positions := make([][]broker.Position, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		b := brokers[w%len(brokers)]
		wg.Go(func() {
			for i := range per {
				p, err := b.Publish(ctx, channel(w), fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i), nil, opts)
				if err != nil {
					errs[w] = fmt.Errorf("worker %d: Publish %d: %w", w, i, err)
					return
				}
				positions[w] = append(positions[w], p)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return positions, took
}

// TestPaused: while the server does not answer, every call that needs it
// fails within its context, or within RequestTimeout when its context has
// no deadline; the link is reported lost, then back after Resume.
func TestPaused(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	opts := testOptions(s, randomPrefix("paused"))
	opts.RequestTimeout = 700 * time.Millisecond
	b, rec := started(t, opts)
	ctx := testCtx(t)
	info := &broker.ClientInfo{Client: "c1", User: "u1"}
	if _, err := b.Publish(ctx, "ch", []byte(`1`), nil, broker.PublishOptions{HistorySize: 5}); err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	defer s.Resume(t)
	calls := map[string]func(ctx context.Context) error{
		"Publish": func(ctx context.Context) error {
			_, err := b.Publish(ctx, "ch", []byte(`2`), nil, broker.PublishOptions{HistorySize: 5})
			return err
		},
		"Publish without history": func(ctx context.Context) error {
			_, err := b.Publish(ctx, "ch", []byte(`3`), nil, broker.PublishOptions{})
			return err
		},
		"History": func(ctx context.Context) error {
			_, err := b.History(ctx, "ch", broker.HistoryOptions{Limit: -1})
			return err
		},
		"Subscribe":     func(ctx context.Context) error { return b.Subscribe(ctx, "other") },
		"PublishJoin":   func(ctx context.Context) error { return b.PublishJoin(ctx, "ch", info) },
		"Control":       func(ctx context.Context) error { return b.Control(ctx, []byte(`{}`)) },
		"AddPresence":   func(ctx context.Context) error { return b.AddPresence(ctx, "ch", info, 0) },
		"Presence":      func(ctx context.Context) error { _, err := b.Presence(ctx, "ch"); return err },
		"PresenceStats": func(ctx context.Context) error { _, err := b.PresenceStats(ctx, "ch"); return err },
		"RemovePresence": func(ctx context.Context) error {
			return b.RemovePresence(ctx, "ch", "c1")
		},
	}
	// All at once: each waits for its timeout.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, call := range calls {
		for _, withDeadline := range []bool{true, false} {
			wg.Go(func() {
				cctx, cancel := context.WithCancel(context.Background())
				limit := opts.RequestTimeout
				if withDeadline {
					cctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
					limit = 300 * time.Millisecond
				}
				start := time.Now()
				err := call(cctx)
				took := time.Since(start)
				cancel()
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					t.Errorf("%s while paused (deadline %v): no error", name, withDeadline)
				}
				if took > limit+500*time.Millisecond {
					t.Errorf("%s while paused (deadline %v) took %v, want about %v", name, withDeadline, took, limit)
				}
			})
		}
	}
	wg.Wait()
	rec.WaitLinkLost(t, 1, 10*time.Second)
	if _, err := b.Publish(ctx, "ch", []byte(`4`), nil, broker.PublishOptions{}); !errors.Is(err, nats.ErrUnavailable) {
		t.Errorf("Publish without history while the link is down: %v, want ErrUnavailable", err)
	}
	s.Resume(t)
	rec.WaitLinkBack(t, 1, 10*time.Second)
	if _, err := b.Publish(ctx, "ch", []byte(`5`), nil, broker.PublishOptions{HistorySize: 5}); err != nil {
		t.Errorf("Publish after Resume: %v", err)
	}
}

// TestChannelNames: names with the characters that subjects give meaning
// to, or that are not allowed in them, stay apart.
func TestChannelNames(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	b, rec := started(t, testOptions(s, randomPrefix("names")))
	ctx := testCtx(t)
	names := []string{"", "a", "a.b", "a.*", "a.>", ">", "*", "a b", "a\tb", "ümlaut:ch", "$JS.API.x", "a/b\\c", "=",
		strings.Repeat("long", 200)}
	opts := broker.PublishOptions{HistorySize: 10}
	for _, ch := range names {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatalf("Subscribe(%q): %v", ch, err)
		}
	}
	for i, ch := range names {
		for j := 0; j <= i%3; j++ {
			if _, err := b.Publish(ctx, ch, fmt.Appendf(nil, "%d", j), nil, opts); err != nil {
				t.Fatalf("Publish(%q): %v", ch, err)
			}
		}
		if err := b.AddPresence(ctx, ch, &broker.ClientInfo{Client: ch + ".client", User: "u"}, time.Minute); err != nil {
			t.Fatalf("AddPresence(%q): %v", ch, err)
		}
	}
	for i, ch := range names {
		want := i%3 + 1
		h, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1})
		if err != nil {
			t.Fatalf("History(%q): %v", ch, err)
		}
		if h.Position.Offset != uint64(want) || len(h.Publications) != want || h.Publications[0].Channel != ch {
			t.Errorf("History(%q): %+v with %d publications, want offset %d", ch, h.Position, len(h.Publications), want)
		}
		if pubs := rec.WaitPublications(t, ch, want, 10*time.Second); len(pubs) != want {
			t.Errorf("channel %q: %d delivered, want %d", ch, len(pubs), want)
		}
		m, err := b.Presence(ctx, ch)
		if err != nil {
			t.Fatalf("Presence(%q): %v", ch, err)
		}
		if len(m) != 1 || m[ch+".client"] == nil {
			t.Errorf("Presence(%q): %v", ch, m)
		}
	}
}

// TestLongHistory: reads of a long history, interleaved with other
// channels, select what they should and read about what they return.
func TestLongHistory(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	b, _ := started(t, testOptions(s, randomPrefix("long")))
	ctx := testCtx(t)
	const n, size = 2500, 2000
	opts := broker.PublishOptions{HistorySize: size}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range 4 {
		wg.Go(func() {
			ch := "long"
			if w > 0 {
				ch = fmt.Sprintf("noise-%d", w) // between long's messages in the stream
			}
			for i := 1; i <= n; i++ {
				if _, err := b.Publish(ctx, ch, fmt.Appendf(nil, `{"i":%d}`, i), nil, opts); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	top, err := b.History(ctx, "long", broker.HistoryOptions{})
	if err != nil || top.Position.Offset != n {
		t.Fatalf("History: %+v, %v; want offset %d", top.Position, err, n)
	}
	epoch := top.Position.Epoch
	at := func(off uint64) *broker.Position { return &broker.Position{Offset: off, Epoch: epoch} }
	for _, c := range []struct {
		opts     broker.HistoryOptions
		from, to uint64 // in the order returned
		maxRead  uint64
	}{
		{broker.HistoryOptions{Limit: -1}, n - size + 1, n, size + size/4 + 16},
		{broker.HistoryOptions{Limit: -1, Since: at(n - 3)}, n - 2, n, 12},
		{broker.HistoryOptions{Limit: -1, Since: at(n - 100)}, n - 99, n, 400},
		{broker.HistoryOptions{Limit: -1, Since: at(1000)}, 1001, n, 4 * 1500},
		{broker.HistoryOptions{Limit: 5, Reverse: true}, n, n - 4, 20},
		// A read that ends before the newest starts near the newest.
		{broker.HistoryOptions{Limit: 5, Since: at(2222)}, 2223, 2227, 4 * (n - 2222)},
		{broker.HistoryOptions{Limit: 3, Since: at(5)}, n - size + 1, n - size + 3, 3 * 16},
		{broker.HistoryOptions{Limit: 1}, n - size + 1, n - size + 1, 16},
	} {
		before := nats.Scanned(b)
		h, err := b.History(ctx, "long", c.opts)
		if err != nil {
			t.Fatalf("History(%+v): %v", c.opts, err)
		}
		read := nats.Scanned(b) - before
		var want []uint64
		for off := c.from; ; {
			want = append(want, off)
			if off == c.to {
				break
			}
			if c.from < c.to {
				off++
			} else {
				off--
			}
		}
		var got []uint64
		for _, p := range h.Publications {
			got = append(got, p.Position.Offset)
			if p.Position.Epoch != epoch || string(p.Data) != fmt.Sprintf(`{"i":%d}`, p.Position.Offset) {
				t.Fatalf("History(%+v): publication %+v holds %s", c.opts, p.Position, p.Data)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("History(%+v): offsets %v…, want %d to %d", c.opts, got[:min(len(got), 5)], c.from, c.to)
		}
		if read > c.maxRead {
			t.Errorf("History(%+v): read %d messages for %d, want at most %d", c.opts, read, len(got), c.maxRead)
		}
		t.Logf("History(Since %v, Limit %d, Reverse %v): %d publications, %d messages read",
			c.opts.Since, c.opts.Limit, c.opts.Reverse, len(got), read)
	}
}

// TestTrim: a channel's subject holds about its HistorySize, and a new
// epoch drops the old one's messages.
func TestTrim(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	prefix := randomPrefix("trim")
	b, _ := started(t, testOptions(s, prefix))
	ctx := testCtx(t)
	nc, err := natsgo.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, prefix+"_history")
	if err != nil {
		t.Fatal(err)
	}
	subject := prefix + ".h." + base64.RawURLEncoding.EncodeToString([]byte("trim"))
	held := func() uint64 {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	waitHeld := func(what string, atMost uint64) {
		t.Helper()
		// The janitor trims off the publishers' path: poll.
		deadline := time.Now().Add(10 * time.Second)
		for n := held(); n > atMost; n = held() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the subject holds %d messages, want at most %d", what, n, atMost)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const size = 40
	publish := func(n int, opts broker.PublishOptions) broker.Position {
		var pos broker.Position
		for i := range n {
			var err error
			if pos, err = b.Publish(ctx, "trim", fmt.Appendf(nil, "%d", i), nil, opts); err != nil {
				t.Fatal(err)
			}
		}
		return pos
	}
	first := publish(300, broker.PublishOptions{HistorySize: size})
	waitHeld("after 300 publications", size+16) // trimmed every 16

	// A stream that expires starts a new epoch, whose first publication
	// drops the old one.
	short := broker.PublishOptions{HistorySize: size, StreamTTL: 50 * time.Millisecond}
	publish(1, short)
	time.Sleep(100 * time.Millisecond)
	pos := publish(1, short)
	if pos.Offset != 1 || pos.Epoch == first.Epoch {
		t.Fatalf("Publish after the stream expired: %+v, want offset 1 of a new epoch", pos)
	}
	waitHeld("after a new epoch", 1)
}

// TestManyMembers: presence lists more members than one batch of the
// server holds.
func TestManyMembers(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	b, _ := started(t, testOptions(s, randomPrefix("members")))
	ctx := testCtx(t)
	const n = 1100
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				info := &broker.ClientInfo{Client: fmt.Sprintf("c%d", i), User: fmt.Sprintf("u%d", i/2)}
				if err := b.AddPresence(ctx, "big", info, time.Minute); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m, err := b.Presence(ctx, "big")
	if err != nil || len(m) != n {
		t.Fatalf("Presence: %d members, %v; want %d", len(m), err, n)
	}
	st, err := b.PresenceStats(ctx, "big")
	if err != nil || st != (broker.PresenceStats{Clients: n, Users: n / 2}) {
		t.Fatalf("PresenceStats: %+v, %v", st, err)
	}
}

// TestRestartWithoutData: after the server lost its data, presence and
// history work again without the gateway's help.
func TestRestartWithoutData(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	b, rec := started(t, testOptions(s, randomPrefix("lost")))
	ctx := testCtx(t)
	info := &broker.ClientInfo{Client: "c1", User: "u1"}
	if err := b.AddPresence(ctx, "ch", info, time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Restart(t, false)
	rec.WaitLinkBack(t, 1, 15*time.Second)
	if err := b.AddPresence(ctx, "ch", info, time.Minute); err != nil {
		t.Fatalf("AddPresence after the restart: %v", err)
	}
	if m, err := b.Presence(ctx, "ch"); err != nil || len(m) != 1 {
		t.Fatalf("Presence after the restart: %v, %v", m, err)
	}
	if err := b.RemovePresence(ctx, "gone", "c1"); err != nil {
		t.Fatalf("RemovePresence after the restart: %v", err)
	}
}

// TestStartClose: Close before Start, and Start after Close.
func TestStartClose(t *testing.T) {
	ctx := testCtx(t)
	b := nats.New(nats.Options{Servers: []string{closedPort(t)}})
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if err := b.Start(ctx, brokertest.NewRecorder()); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Publish(ctx, "ch", []byte(`1`), nil, broker.PublishOptions{}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}
