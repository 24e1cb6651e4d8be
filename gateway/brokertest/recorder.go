package brokertest

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Recorder is a broker.Handler that records what it receives, for tests to
// wait for. It never blocks the broker for long. It also checks, as things
// arrive, the order the Handler contract promises: for one channel,
// publications with a position arrive one at a time and with growing
// offsets within an epoch; Violations lists what broke it.
type Recorder struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every event
	pubs     map[string][]*broker.Publication
	joins    map[string][]*broker.ClientInfo
	leaves   map[string][]*broker.ClientInfo
	controls [][]byte
	links    []bool                     // HandleConnection calls, in order
	last     map[string]broker.Position // per channel, of the last publication
	inflight map[string]int             // per channel, HandlePublication calls running
	errs     []string
}

var _ broker.Handler = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		changed:  make(chan struct{}),
		pubs:     make(map[string][]*broker.Publication),
		joins:    make(map[string][]*broker.ClientInfo),
		leaves:   make(map[string][]*broker.ClientInfo),
		last:     make(map[string]broker.Position),
		inflight: make(map[string]int),
	}
}

// notifyLocked wakes the waiters; r.mu is held.
func (r *Recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Recorder) violationLocked(format string, args ...any) {
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// HandlePublication implements broker.Handler.
func (r *Recorder) HandlePublication(pub *broker.Publication) {
	r.mu.Lock()
	if pub == nil {
		r.violationLocked("HandlePublication(nil)")
		r.mu.Unlock()
		return
	}
	ch := pub.Channel
	ordered := pub.Position.Offset != 0
	if ordered {
		if last := r.last[ch]; last.Epoch == pub.Position.Epoch && pub.Position.Offset <= last.Offset {
			r.violationLocked("channel %q: publication %d delivered after %d (epoch %q)",
				ch, pub.Position.Offset, last.Offset, last.Epoch)
		}
		if pub.Position.Epoch == "" {
			r.violationLocked("channel %q: publication %d delivered without an epoch", ch, pub.Position.Offset)
		}
		r.last[ch] = pub.Position
		if r.inflight[ch] > 0 {
			r.violationLocked("channel %q: publication %d delivered while another one of the channel was being handled",
				ch, pub.Position.Offset)
		}
		r.inflight[ch]++
		// Widen the window in which a second, concurrent delivery of the
		// channel would be caught.
		r.mu.Unlock()
		runtime.Gosched()
		r.mu.Lock()
		r.inflight[ch]--
	}
	r.pubs[ch] = append(r.pubs[ch], pub)
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleJoin implements broker.Handler.
func (r *Recorder) HandleJoin(channel string, info *broker.ClientInfo) {
	r.mu.Lock()
	r.joins[channel] = append(r.joins[channel], info)
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleLeave implements broker.Handler.
func (r *Recorder) HandleLeave(channel string, info *broker.ClientInfo) {
	r.mu.Lock()
	r.leaves[channel] = append(r.leaves[channel], info)
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleControl implements broker.Handler.
func (r *Recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, data)
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleConnection implements broker.Handler. Calls must alternate,
// starting with false.
func (r *Recorder) HandleConnection(up bool) {
	r.mu.Lock()
	if want := len(r.links)%2 == 1; up != want {
		r.violationLocked("HandleConnection(%v) after %d calls: calls must alternate, starting with false", up, len(r.links))
	}
	r.links = append(r.links, up)
	r.notifyLocked()
	r.mu.Unlock()
}

// Links counts the HandleConnection calls so far: how often the link to
// the backend was lost, and how often it came back.
func (r *Recorder) Links() (lost, back int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.linksLocked()
}

func (r *Recorder) linksLocked() (lost, back int) {
	for _, up := range r.links {
		if up {
			back++
		} else {
			lost++
		}
	}
	return lost, back
}

// WaitLinkLost waits until the link was reported lost at least n times; it
// fails the test after timeout.
func (r *Recorder) WaitLinkLost(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	r.wait(t, timeout, func() bool { lost, _ := r.linksLocked(); return lost >= n },
		func() string {
			lost, _ := r.linksLocked()
			return fmt.Sprintf("the link lost %d times (got %d)", n, lost)
		})
}

// WaitLinkBack waits until the link was reported back at least n times; it
// fails the test after timeout.
func (r *Recorder) WaitLinkBack(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	r.wait(t, timeout, func() bool { _, back := r.linksLocked(); return back >= n },
		func() string {
			_, back := r.linksLocked()
			return fmt.Sprintf("the link back %d times (got %d)", n, back)
		})
}

// Publications returns the publications of channel received so far, in
// the order they arrived.
func (r *Recorder) Publications(channel string) []*broker.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*broker.Publication(nil), r.pubs[channel]...)
}

// Joins returns the joins of channel received so far.
func (r *Recorder) Joins(channel string) []*broker.ClientInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*broker.ClientInfo(nil), r.joins[channel]...)
}

// Leaves returns the leaves of channel received so far.
func (r *Recorder) Leaves(channel string) []*broker.ClientInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*broker.ClientInfo(nil), r.leaves[channel]...)
}

// Controls returns the control messages received so far.
func (r *Recorder) Controls() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.controls...)
}

// Violations returns how the deliveries broke the Handler contract's
// ordering, or nil.
func (r *Recorder) Violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// WaitPublications waits until at least n publications of channel have
// arrived and returns all that did; it fails the test after timeout. Like
// the other Wait methods, it is called from the test's goroutine.
func (r *Recorder) WaitPublications(t testing.TB, channel string, n int, timeout time.Duration) []*broker.Publication {
	t.Helper()
	r.wait(t, timeout, func() bool { return len(r.pubs[channel]) >= n },
		func() string {
			return fmt.Sprintf("%d publications on %q (got %d)", n, channel, len(r.pubs[channel]))
		})
	return r.Publications(channel)
}

// WaitJoins waits until at least n joins of channel have arrived and
// returns all that did; it fails the test after timeout.
func (r *Recorder) WaitJoins(t testing.TB, channel string, n int, timeout time.Duration) []*broker.ClientInfo {
	t.Helper()
	r.wait(t, timeout, func() bool { return len(r.joins[channel]) >= n },
		func() string { return fmt.Sprintf("%d joins on %q (got %d)", n, channel, len(r.joins[channel])) })
	return r.Joins(channel)
}

// WaitLeaves waits until at least n leaves of channel have arrived and
// returns all that did; it fails the test after timeout.
func (r *Recorder) WaitLeaves(t testing.TB, channel string, n int, timeout time.Duration) []*broker.ClientInfo {
	t.Helper()
	r.wait(t, timeout, func() bool { return len(r.leaves[channel]) >= n },
		func() string { return fmt.Sprintf("%d leaves on %q (got %d)", n, channel, len(r.leaves[channel])) })
	return r.Leaves(channel)
}

// WaitControl waits until a control message equal to data has arrived; it
// fails the test after timeout. Other control messages are ignored.
func (r *Recorder) WaitControl(t testing.TB, data []byte, timeout time.Duration) {
	t.Helper()
	r.wait(t, timeout, func() bool {
		for _, c := range r.controls {
			if bytes.Equal(c, data) {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("control message %q (got %d others)", data, len(r.controls))
	})
}

// wait waits until cond, called with r.mu held, holds; after timeout it
// fails the test with what, also called with r.mu held.
func (r *Recorder) wait(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		changed := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			r.mu.Lock()
			msg := what()
			r.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
	}
}
