package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/gateway/brokertest"
	"github.com/duplexws/duplex/internal/testredis"
)

// start starts a broker of o with a Recorder and closes it in t's cleanup.
func start(t *testing.T, o redis.Options) (*redis.Broker, *brokertest.Recorder) {
	t.Helper()
	b, err := redis.New(testOptions(o))
	if err != nil {
		t.Fatal(err)
	}
	rec := brokertest.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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

// TestStartUnreachable: Start fails with a clear error, naming the
// server, when nothing listens, and within its context when the server
// does not answer.
func TestStartUnreachable(t *testing.T) {
	testredis.Require(t)
	t.Run("Refused", func(t *testing.T) {
		srv := testredis.Start(t, testredis.Options{})
		addr := srv.Addr()
		srv.Close() // nothing listens on addr now
		b, err := redis.New(redis.Options{Addrs: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		begin := time.Now()
		err = b.Start(ctx, brokertest.NewRecorder())
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("Start: %v, want an error naming %s", err, addr)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("Start took %v to see a refused connection", d)
		}
		t.Log(err)
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close after a failed Start: %v", err)
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		const secret = "Wr0ngS3cret"
		srv := testredis.Start(t, testredis.Options{Password: "right"})
		b, err := redis.New(redis.Options{Addrs: []string{srv.Addr()}, Password: secret})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = b.Start(ctx, brokertest.NewRecorder())
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), srv.Addr()) {
			t.Fatalf("Start with a wrong password: %v; want an error naming the server, not the password", err)
		}
		if s := b.String(); strings.Contains(s, secret) {
			t.Errorf("String() = %q", s)
		}
		t.Log(err)
		b.Close(ctx)
	})
	t.Run("Paused", func(t *testing.T) {
		srv := testredis.Start(t, testredis.Options{})
		srv.Pause(t)
		defer srv.Resume(t)
		// DialTimeout far beyond the context: the context must win.
		b, err := redis.New(redis.Options{Addrs: []string{srv.Addr()}, DialTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		const timeout = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		begin := time.Now()
		err = b.Start(ctx, brokertest.NewRecorder())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start on a paused server: %v, want one wrapping context.DeadlineExceeded", err)
		}
		if d := time.Since(begin); d > timeout+time.Second {
			t.Errorf("Start took %v, its context %v", d, timeout)
		}
		t.Log(err)
		b.Close(context.Background())
	})
}

// TestPaused: while the server hangs, the link is reported lost, every
// call returns within its context, also many at once, and Close does not
// wait for the server; after it answers again the link is back.
func TestPaused(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	b, rec := start(t, redis.Options{Addrs: []string{srv.Addr()}})
	ctx := context.Background()
	ch := "paused"
	if err := b.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, ch, []byte(`{"i":1}`), nil, broker.PublishOptions{HistorySize: 10}); err != nil {
		t.Fatal(err)
	}
	rec.WaitPublications(t, ch, 1, 5*time.Second)

	srv.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume(t)
		}
	}()
	rec.WaitLinkLost(t, 1, 10*time.Second)

	const timeout = 300 * time.Millisecond
	calls := map[string]func(ctx context.Context, i int) error{
		"Publish": func(ctx context.Context, i int) error {
			_, err := b.Publish(ctx, ch, []byte(`{"i":0}`), nil, broker.PublishOptions{HistorySize: 10})
			return err
		},
		"Publish without history": func(ctx context.Context, i int) error {
			_, err := b.Publish(ctx, ch, []byte(`{"i":0}`), nil, broker.PublishOptions{})
			return err
		},
		"History": func(ctx context.Context, i int) error {
			_, err := b.History(ctx, ch, broker.HistoryOptions{Limit: -1})
			return err
		},
		"Subscribe": func(ctx context.Context, i int) error {
			return b.Subscribe(ctx, fmt.Sprintf("paused-%d", i))
		},
		"AddPresence": func(ctx context.Context, i int) error {
			return b.AddPresence(ctx, ch, &broker.ClientInfo{Client: fmt.Sprint(i)}, 0)
		},
		"PresenceStats": func(ctx context.Context, i int) error {
			_, err := b.PresenceStats(ctx, ch)
			return err
		},
		"Control": func(ctx context.Context, i int) error { return b.Control(ctx, []byte(`{}`)) },
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	for name, call := range calls {
		for i := range 50 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				begin := time.Now()
				err := call(ctx, i)
				d := time.Since(begin)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					problems = append(problems, name+": no error")
				case d > timeout+time.Second:
					problems = append(problems, fmt.Sprintf("%s took %v, its context %v", name, d, timeout))
				case !errors.Is(err, context.DeadlineExceeded):
					problems = append(problems, fmt.Sprintf("%s: %v, want one wrapping context.DeadlineExceeded", name, err))
				}
			})
		}
	}
	wg.Wait()
	for i, p := range problems {
		if i == 10 {
			t.Errorf("and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}

	srv.Resume(t)
	resumed = true
	rec.WaitLinkBack(t, 1, 15*time.Second)
	pos, err := b.Publish(ctx, ch, []byte(`{"i":2}`), nil, broker.PublishOptions{HistorySize: 10})
	if err != nil {
		t.Fatalf("Publish after Resume: %v", err)
	}
	pubs := rec.WaitPublications(t, ch, 2, 5*time.Second)
	if last := pubs[len(pubs)-1]; last.Position != pos {
		t.Errorf("last delivered %+v, want %+v", last.Position, pos)
	}
}

// TestCloseWhilePaused: Close of a broker whose server hangs returns
// promptly and leaves no goroutine behind (leakcheck).
func TestCloseWhilePaused(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	b, err := redis.New(testOptions(redis.Options{Addrs: []string{srv.Addr()}}))
	if err != nil {
		t.Fatal(err)
	}
	rec := brokertest.NewRecorder()
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	defer srv.Resume(t)
	rec.WaitLinkLost(t, 1, 10*time.Second)
	// A reconnection is now waiting on the paused server.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close while the server is paused: %v", err)
	}
	if lost, back := rec.Links(); lost != 1 || back != 0 {
		t.Errorf("links lost %d, back %d; want 1, 0 (none after Close)", lost, back)
	}
}

// TestACLUser: a named ACL user, from the URL, limited to the broker's
// prefix.
func TestACLUser(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{Password: "admin"})
	if _, err := srv.Do("ACL", "SETUSER", "gw", "on", ">gw-pass", "~app:*", "&app:*", "+@all"); err != nil {
		t.Fatal(err)
	}
	o, err := redis.ParseURL("redis://gw:gw-pass@" + srv.Addr() + "?prefix=app")
	if err != nil {
		t.Fatal(err)
	}
	b, rec := start(t, o)
	ctx := context.Background()
	if err := b.Subscribe(ctx, "acl"); err != nil {
		t.Fatal(err)
	}
	pos, err := b.Publish(ctx, "acl", []byte(`{"i":1}`), nil, broker.PublishOptions{HistorySize: 1})
	if err != nil || pos.Offset != 1 {
		t.Fatalf("Publish as an ACL user: %+v, %v", pos, err)
	}
	rec.WaitPublications(t, "acl", 1, 5*time.Second)
	if err := b.AddPresence(ctx, "acl", &broker.ClientInfo{Client: "c", User: "u"}, 0); err != nil {
		t.Fatal(err)
	}
}

// slowHandler delivers each publication to a Recorder after a pause, as a
// node that fans out to many clients does.
type slowHandler struct {
	*brokertest.Recorder
	pause time.Duration
}

func (h slowHandler) HandlePublication(pub *broker.Publication) {
	time.Sleep(h.pause)
	h.Recorder.HandlePublication(pub)
}

// TestBusyIsNotLost: a node that reads its pub/sub connection slowly,
// because it is busy delivering, has its PING answer queued behind the
// messages it has not read yet. That is a busy link, not a lost one: it
// must not be dropped (which loses what Redis had queued for it), and
// every publication arrives, in order. Nor is a link lost while one
// delivery takes longer than the health timeout (many subscribers on a
// starved machine, or a catch-up holding the channel).
func TestBusyIsNotLost(t *testing.T) {
	// The health timeouts are short, so that a few seconds of deliveries
	// span several of them, and long enough that a PING answer delayed by
	// a starved scheduler (CI on 2 shared cores) is not taken for a lost
	// link: a link that is lost is TestPaused's.
	for _, tc := range []struct {
		name   string
		pause  time.Duration
		n      int
		health time.Duration
	}{
		{"ManySlowDeliveries", 10 * time.Millisecond, 150, 200 * time.Millisecond}, // 1.5 s of reading, 7 health timeouts
		{"OneLongDelivery", 1750 * time.Millisecond, 3, 500 * time.Millisecond},    // each delivery 3.5 health timeouts
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testredis.Start(t, testredis.Options{})
			o := testOptions(redis.Options{Addrs: []string{srv.Addr()}})
			o.HealthInterval, o.HealthTimeout = tc.health/4, tc.health
			b, err := redis.New(o)
			if err != nil {
				t.Fatal(err)
			}
			rec := brokertest.NewRecorder()
			ctx := context.Background()
			if err := b.Start(ctx, slowHandler{rec, tc.pause}); err != nil {
				t.Fatal(err)
			}
			defer b.Close(ctx)
			const ch = "busy"
			if err := b.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
			for i := range tc.n {
				if _, err := b.Publish(ctx, ch, []byte(fmt.Sprintf(`{"i":%d}`, i)), nil, broker.PublishOptions{HistorySize: tc.n}); err != nil {
					t.Fatal(err)
				}
			}
			pubs := rec.WaitPublications(t, ch, tc.n, 20*time.Second)
			for i, p := range pubs {
				if p.Position.Offset != uint64(i+1) {
					t.Fatalf("publication %d has offset %d", i, p.Position.Offset)
				}
			}
			if lost, _ := rec.Links(); lost != 0 {
				t.Errorf("the link was reported lost %d times while it was busy", lost)
			}
			for _, v := range rec.Violations() {
				t.Errorf("handler contract broken: %s", v)
			}
		})
	}
}

// blockingHandler holds every publication until release is closed.
type blockingHandler struct {
	*brokertest.Recorder
	release chan struct{}
}

func (h blockingHandler) HandlePublication(pub *broker.Publication) {
	<-h.release
	h.Recorder.HandlePublication(pub)
}

// TestTooSlowNode: a node that cannot keep up holds at most
// MaxPendingBytes of what it read and did not deliver; past it the link
// counts as lost (the gateway then catches its channels up from history)
// and comes back by itself. What is delivered stays in order and is never
// repeated.
func TestTooSlowNode(t *testing.T) {
	srv := testredis.Start(t, testredis.Options{})
	o := testOptions(redis.Options{Addrs: []string{srv.Addr()}})
	o.MaxPendingBytes = 64 << 10
	b, err := redis.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rec := brokertest.NewRecorder()
	h := blockingHandler{rec, make(chan struct{})}
	ctx := context.Background()
	if err := b.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(h.release)
		}
		b.Close(ctx)
	}()
	const ch, n = "slow", 200
	if err := b.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	for range n { // 200 KB, over the 64 KiB bound
		if _, err := b.Publish(ctx, ch, data, nil, broker.PublishOptions{HistorySize: n}); err != nil {
			t.Fatal(err)
		}
	}
	rec.WaitLinkLost(t, 1, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	// No new connection while the node has not caught up: it would
	// overflow at once, again and again.
	if lost, back := rec.Links(); lost != 1 || back != 0 {
		t.Errorf("while the node is stuck: links lost %d, back %d; want 1, 0", lost, back)
	}
	close(h.release)
	released = true
	rec.WaitLinkBack(t, 1, 15*time.Second)
	pos, err := b.Publish(ctx, ch, data, nil, broker.PublishOptions{HistorySize: n})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pubs := rec.Publications(ch)
		if len(pubs) > 0 && pubs[len(pubs)-1].Position == pos {
			if len(pubs) > 1+64 { // at most what fits in 64 KiB, then the last
				t.Errorf("%d publications delivered, more than the bound lets a node hold", len(pubs))
			}
			break
		}
		if time.Now().After(deadline) {
			lost, back := rec.Links()
			t.Fatalf("the publication after the link came back did not arrive (%d delivered; links lost %d, back %d)", len(pubs), lost, back)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, v := range rec.Violations() {
		t.Errorf("handler contract broken: %s", v)
	}
}
