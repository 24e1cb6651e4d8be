package brokertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Options adapts the suite to a broker.
type Options struct {
	// SingleNode says that two brokers cannot share a backend (the memory
	// broker): the multi-node subtests are skipped.
	SingleNode bool
	// Timeout bounds every wait for a delivery or an expiry, and every
	// call. Default: 5 seconds.
	Timeout time.Duration
	// TTL is the short lifetime that the expiry subtests give history,
	// streams and presence entries. Default: 100 milliseconds; a backend
	// with a coarser clock sets more.
	TTL time.Duration
	// Server controls the backend server behind the brokers, for the
	// Faults subtests (connections cut, the server restarted with and
	// without its data, paused). Default: nil, and they are skipped.
	Server Server
	// NewIsolated returns a broker, not yet started, on the same backend
	// as newBroker's but kept apart by another key prefix, for the
	// Isolation subtest. Default: nil, and it is skipped.
	NewIsolated func(t *testing.T) broker.Broker
}

// Run runs the contract suite against the brokers that newBroker makes.
// Every subtest gets fresh brokers: newBroker returns one not yet started,
// and Run starts it and closes it at the end of the subtest. Multi-node
// subtests call newBroker twice for two nodes of one backend, unless
// opts.SingleNode.
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker, opts Options) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.TTL <= 0 {
		opts.TTL = 100 * time.Millisecond
	}
	var id [4]byte
	rand.Read(id[:])
	s := &suite{newBroker: newBroker, opts: opts, run: hex.EncodeToString(id[:])}

	groups := []struct {
		name  string
		tests []subtest
	}{
		{"Lifecycle", []subtest{
			{"StartTwice", s.testStartTwice},
			{"AfterClose", s.testAfterClose},
			{"CloseTwice", s.testCloseTwice},
		}},
		{"Publish", []subtest{
			{"WithoutHistory", s.testPublishWithoutHistory},
			{"Offsets", s.testPublishOffsets},
			{"ConcurrentOrder", s.testConcurrentOrder},
			{"ConcurrentHistory", s.testConcurrentHistory},
			{"Resubscribe", s.testResubscribe},
			{"RoundTrip", s.testRoundTrip},
		}},
		{"History", []subtest{
			{"Empty", s.testHistoryEmpty},
			{"Limit", s.testHistoryLimit},
			{"Since", s.testHistorySince},
			{"Size", s.testHistorySize},
			{"TTL", s.testHistoryTTL},
			{"ReadThenPublish", s.testHistoryReadThenPublish},
			{"StreamTTL", s.testStreamTTL},
		}},
		{"Presence", []subtest{
			{"Members", s.testPresenceMembers},
			{"TTL", s.testPresenceTTL},
		}},
		{"Events", []subtest{
			{"JoinLeave", s.testJoinLeave},
			{"Control", s.testControl},
		}},
		{"Context", []subtest{
			{"Done", s.testContextDone},
		}},
		{"MultiNode", []subtest{
			{"Publish", s.testMultiPublish},
			{"Resubscribe", s.testMultiResubscribe},
			{"ConcurrentOrder", s.testMultiConcurrentOrder},
			{"History", s.testMultiHistory},
			{"Presence", s.testMultiPresence},
			{"JoinLeave", s.testMultiJoinLeave},
			{"Control", s.testMultiControl},
			{"CloseOneNode", s.testMultiCloseOne},
		}},
		{"Faults", []subtest{
			{"Cut", s.testFaultCut},
			{"Restart", s.testFaultRestart},
			{"Pause", s.testFaultPause},
		}},
		{"Isolation", []subtest{
			{"Prefix", s.testIsolation},
		}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			switch {
			case g.name == "MultiNode" && opts.SingleNode:
				t.Skip("single-node broker")
			case g.name == "Faults" && opts.Server == nil:
				t.Skip("no Options.Server to make faults with")
			case g.name == "Isolation" && opts.NewIsolated == nil:
				t.Skip("no Options.NewIsolated")
			}
			for _, st := range g.tests {
				t.Run(st.name, st.f)
			}
		})
	}
}

type subtest struct {
	name string
	f    func(t *testing.T)
}

type suite struct {
	newBroker func(t *testing.T) broker.Broker
	opts      Options
	run       string // unique to the Run, in channel names
	seq       atomic.Uint64
}

// node is one started broker and what its handler received.
type node struct {
	broker.Broker
	rec *Recorder
}

// start makes and starts a broker; the subtest's cleanup closes it and
// reports the deliveries that broke the Handler contract.
func (s *suite) start(t *testing.T) node {
	t.Helper()
	return s.startWith(t, s.newBroker)
}

// startWith is start with another maker of brokers.
func (s *suite) startWith(t *testing.T, newBroker func(t *testing.T) broker.Broker) node {
	t.Helper()
	b := newBroker(t)
	if b == nil {
		t.Fatal("newBroker returned nil")
	}
	n := node{Broker: b, rec: NewRecorder()}
	t.Cleanup(func() {
		for _, v := range n.rec.Violations() {
			t.Errorf("handler contract broken: %s", v)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if err := b.Start(ctx, n.rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// startPair starts two nodes of one backend.
func (s *suite) startPair(t *testing.T) (node, node) {
	t.Helper()
	return s.start(t), s.start(t)
}

// ctx returns a context for the calls of a subtest, bounded so that a
// broker that hangs fails the subtest.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 4*s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// channel returns a channel name unique to the run.
func (s *suite) channel(name string) string {
	return fmt.Sprintf("brokertest-%s:%d-%s", s.run, s.seq.Add(1), name)
}

// hist keeps ten publications and no more limits.
var hist = broker.PublishOptions{HistorySize: 10}

// data returns compact JSON.
func data(format string, args ...any) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(format, args...))
}

func publish(t *testing.T, ctx context.Context, b broker.Broker, channel string, d json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) broker.Position {
	t.Helper()
	pos, err := b.Publish(ctx, channel, d, info, opts)
	if err != nil {
		t.Fatalf("Publish(%q, %s): %v", channel, d, err)
	}
	return pos
}

// publishN publishes {"i":1} to {"i":n} and returns their positions.
func publishN(t *testing.T, ctx context.Context, b broker.Broker, channel string, n int, opts broker.PublishOptions) []broker.Position {
	t.Helper()
	var out []broker.Position
	for i := 1; i <= n; i++ {
		out = append(out, publish(t, ctx, b, channel, data(`{"i":%d}`, i), nil, opts))
	}
	return out
}

func history(t *testing.T, ctx context.Context, b broker.Broker, channel string, opts broker.HistoryOptions) broker.HistoryResult {
	t.Helper()
	h, err := b.History(ctx, channel, opts)
	if err != nil {
		t.Fatalf("History(%q, %+v): %v", channel, opts, err)
	}
	for i, p := range h.Publications {
		if p == nil {
			t.Fatalf("History(%q, %+v): publication %d is nil", channel, opts, i)
		}
	}
	return h
}

func subscribe(t *testing.T, ctx context.Context, b broker.Broker, channel string) {
	t.Helper()
	if err := b.Subscribe(ctx, channel); err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
}

func unsubscribe(t *testing.T, ctx context.Context, b broker.Broker, channel string) {
	t.Helper()
	if err := b.Unsubscribe(ctx, channel); err != nil {
		t.Fatalf("Unsubscribe(%q): %v", channel, err)
	}
}

func addPresence(t *testing.T, ctx context.Context, b broker.Broker, channel string, info *broker.ClientInfo, ttl time.Duration) {
	t.Helper()
	if err := b.AddPresence(ctx, channel, info, ttl); err != nil {
		t.Fatalf("AddPresence(%q, %q): %v", channel, info.Client, err)
	}
}

func removePresence(t *testing.T, ctx context.Context, b broker.Broker, channel, client string) {
	t.Helper()
	if err := b.RemovePresence(ctx, channel, client); err != nil {
		t.Fatalf("RemovePresence(%q, %q): %v", channel, client, err)
	}
}

func offsets(pubs []*broker.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Position.Offset
	}
	return out
}

// wantOffsets checks the offsets of pubs, and that each is {"i":offset} of
// epoch as publishN published it.
func wantOffsets(t *testing.T, what string, pubs []*broker.Publication, epoch string, want ...uint64) {
	t.Helper()
	if want == nil {
		want = []uint64{}
	}
	if got := offsets(pubs); !slices.Equal(got, want) {
		t.Errorf("%s: offsets %v, want %v", what, got, want)
		return
	}
	for _, p := range pubs {
		if p.Position.Epoch != epoch {
			t.Errorf("%s: publication %d of epoch %q, want %q", what, p.Position.Offset, p.Position.Epoch, epoch)
			return
		}
		if d := data(`{"i":%d}`, p.Position.Offset); !bytes.Equal(p.Data, d) {
			t.Errorf("%s: publication %d holds %s, want %s", what, p.Position.Offset, p.Data, d)
			return
		}
	}
}

func wantPosition(t *testing.T, what string, got, want broker.Position) {
	t.Helper()
	if got != want {
		t.Errorf("%s: position %+v, want %+v", what, got, want)
	}
}

func equalInfo(a, b *broker.ClientInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Client == b.Client && a.User == b.User &&
		(a.Info == nil) == (b.Info == nil) && bytes.Equal(a.Info, b.Info)
}

func fmtInfo(i *broker.ClientInfo) string {
	if i == nil {
		return "<nil>"
	}
	info := "<nil>"
	if i.Info != nil {
		info = string(i.Info)
	}
	return fmt.Sprintf("{Client:%q User:%q Info:%s}", i.Client, i.User, info)
}

func wantInfos(t *testing.T, what string, got []*broker.ClientInfo, want ...*broker.ClientInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if !equalInfo(got[i], want[i]) {
			t.Errorf("%s[%d]: %s, want %s", what, i, fmtInfo(got[i]), fmtInfo(want[i]))
		}
	}
}

// waitGroup waits for wg, failing the test after timeout (a deadlocked
// broker).
func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s did not finish within %v: the broker deadlocked or is far too slow", what, timeout)
	}
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noPanic calls f, turning a panic into an error.
func noPanic(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return f()
}

// isCtxErr reports whether err wraps want.
func isCtxErr(err, want error) bool { return err != nil && errors.Is(err, want) }
