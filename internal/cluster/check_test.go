package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
)

type position = testgateway.Position

// streamReport is what one subscriber received of one channel, walked by
// the rules of PROTOCOL.md: each publication is the one after the last
// (same epoch, next offset), or a gap push covers exactly the offsets in
// between, or a reset push moves the subscriber to a new epoch.
type streamReport struct {
	received  map[position]json.RawMessage // by epoch and offset
	pubs      int
	gaps      []testgateway.Event
	resets    int
	end       position            // the position after the last event
	leftEpoch map[string]uint64   // epochs a reset left, with the last offset had in each
	errs      []string            // holes, repeats, disorder
	infos     map[position]string // the publishing client's user, "" for the API
}

// checkStream walks the pub and gap events of one channel, starting from
// the position the subscriber had (its subscribe reply's; zero for a
// stream that did not exist yet).
func checkStream(events []testgateway.Event, start position) *streamReport {
	r := &streamReport{
		received: make(map[position]json.RawMessage), leftEpoch: make(map[string]uint64),
		infos: make(map[position]string), end: start,
	}
	bad := func(format string, args ...any) {
		if len(r.errs) < 10 {
			r.errs = append(r.errs, fmt.Sprintf(format, args...))
		}
	}
	for _, e := range events {
		switch e.Push {
		case "pub":
			p := position{Offset: e.Offset, Epoch: e.Epoch}
			next := (e.Epoch == r.end.Epoch && e.Offset == r.end.Offset+1) || (r.end.Epoch == "" && r.end.Offset == 0 && e.Offset == 1)
			if !next {
				if _, dup := r.received[p]; dup {
					bad("publication %d/%s repeated", e.Offset, e.Epoch)
				} else {
					bad("publication %d/%s after %d/%s with no gap push for what is between", e.Offset, e.Epoch, r.end.Offset, r.end.Epoch)
				}
			}
			r.received[p] = e.Data
			r.pubs++
			if e.Info != nil {
				r.infos[p] = e.Info.User
			} else {
				r.infos[p] = ""
			}
			r.end = p
		case "gap":
			r.gaps = append(r.gaps, e)
			switch {
			case e.Reset:
				if e.Epoch == r.end.Epoch || e.From != 1 || e.To < e.From-1 {
					bad("reset gap %+v at %d/%s", e, r.end.Offset, r.end.Epoch)
				}
				if r.end.Epoch != "" {
					r.leftEpoch[r.end.Epoch] = r.end.Offset
				}
				r.resets++
				r.end = position{Offset: e.To, Epoch: e.Epoch}
			case (e.Epoch == r.end.Epoch && e.From == r.end.Offset+1 && e.To >= e.From) ||
				(r.end.Epoch == "" && r.end.Offset == 0 && e.From == 1 && e.To >= 1):
				r.end = position{Offset: e.To, Epoch: e.Epoch}
			default:
				bad("gap %d–%d/%s at %d/%s", e.From, e.To, e.Epoch, r.end.Offset, r.end.Epoch)
			}
		}
	}
	return r
}

// covered reports whether the subscriber received p, or was told it was
// missing: by a gap of its epoch that spans it, or by a reset that left
// its epoch before it.
func (r *streamReport) covered(p position) bool {
	if _, ok := r.received[p]; ok {
		return true
	}
	for _, g := range r.gaps {
		if !g.Reset && g.Epoch == p.Epoch && g.From <= p.Offset && p.Offset <= g.To {
			return true
		}
		if g.Reset && g.Epoch == p.Epoch && p.Offset <= g.To {
			return true
		}
	}
	if last, ok := r.leftEpoch[p.Epoch]; ok && p.Offset > last {
		return true
	}
	return false
}

// published is what publishers were told was published, and every payload
// they tried (a call that failed may still have been published).
type published struct {
	mu        sync.Mutex
	acked     map[position]json.RawMessage
	attempted map[string]bool // payloads, compact JSON
	failures  map[string]int  // failed calls by error
}

func newPublished() *published {
	return &published{acked: make(map[position]json.RawMessage), attempted: make(map[string]bool), failures: make(map[string]int)}
}

// publishFunc publishes data through one node's API or one client.
type publishFunc func(ctx context.Context, data any) (position, error)

// publishAll publishes the payloads {"src":src,"i":0…n-1} through pub,
// inflight calls at a time, recording each. A call that fails is tried
// again (under a payload of its own, {"src","i","try"}: the failed call may
// have been published) while retryFor has not passed since the item's first
// failure; with retryFor 0, or past it, the run ends with the error.
func (p *published) publishAll(ctx context.Context, src string, n, inflight int, retryFor time.Duration, pub publishFunc) error {
	var mu sync.Mutex
	next := 0
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		next++
		return next - 1, next <= n
	}
	errs := make(chan error, inflight)
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			for i, ok := take(); ok; i, ok = take() {
				if err := p.publishOne(ctx, src, i, retryFor, pub); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (p *published) publishOne(ctx context.Context, src string, i int, retryFor time.Duration, pub publishFunc) error {
	var firstFailure time.Time
	for try := 0; ; try++ {
		data := map[string]any{"src": src, "i": i}
		if try > 0 {
			data["try"] = try
		}
		raw, _ := json.Marshal(data)
		p.mu.Lock()
		p.attempted[string(raw)] = true
		p.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		pos, err := pub(cctx, data)
		cancel()
		p.mu.Lock()
		if err == nil {
			p.acked[pos] = raw
		} else {
			p.failures[failureKind(err)]++
		}
		p.mu.Unlock()
		if err == nil {
			return nil
		}
		if firstFailure.IsZero() {
			firstFailure = time.Now()
		}
		if retryFor == 0 || ctx.Err() != nil || time.Since(firstFailure) > retryFor {
			return fmt.Errorf("publish %s: %w", raw, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// record records one publication that was tried, and its outcome.
func (p *published) record(data any, pos position, err error) {
	raw, _ := json.Marshal(data)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempted[string(raw)] = true
	if err == nil {
		p.acked[pos] = raw
	} else {
		p.failures[failureKind(err)]++
	}
}

// failureKind names an error for counting: the API's status and code, the
// client's error code, or the error's text.
func failureKind(err error) string {
	var api *testgateway.APIError
	var proto *testgateway.Error
	switch {
	case errors.As(err, &api):
		return fmt.Sprintf("HTTP %d error %d", api.Status, api.Code)
	case errors.As(err, &proto):
		return fmt.Sprintf("error %d", proto.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}

// verify checks one subscriber's report against what was published and the
// stream's final position: every acknowledged publication received or
// covered by a gap, nothing received that nobody published, and the
// subscriber at the stream's end. It returns the problems found.
func (r *streamReport) verify(p *published, final position) []string {
	errs := append([]string(nil), r.errs...)
	missing := 0
	for pos, data := range p.acked {
		got, ok := r.received[pos]
		if ok && compact(got) != compact(data) {
			errs = append(errs, fmt.Sprintf("publication %d/%s is %s, published as %s", pos.Offset, pos.Epoch, got, data))
		}
		if !r.covered(pos) {
			missing++
			if missing <= 3 {
				errs = append(errs, fmt.Sprintf("publication %d/%s neither received nor in a gap push", pos.Offset, pos.Epoch))
			}
		}
	}
	if missing > 3 {
		errs = append(errs, fmt.Sprintf("%d publications in all neither received nor in a gap push", missing))
	}
	for pos, data := range r.received {
		if !p.attempted[compact(data)] {
			errs = append(errs, fmt.Sprintf("publication %d/%s (%s) was never published", pos.Offset, pos.Epoch, data))
			break
		}
	}
	if r.end != final {
		errs = append(errs, fmt.Sprintf("ends at %d/%s, the stream at %d/%s", r.end.Offset, r.end.Epoch, final.Offset, final.Epoch))
	}
	return errs
}

func (r *streamReport) summary() string {
	var gaps []string
	for _, g := range r.gaps {
		if g.Reset {
			gaps = append(gaps, fmt.Sprintf("reset to %s (1–%d)", g.Epoch, g.To))
		} else {
			gaps = append(gaps, fmt.Sprintf("%d–%d", g.From, g.To))
		}
	}
	return fmt.Sprintf("%d publications, gaps [%s], at %d", r.pubs, strings.Join(gaps, ", "), r.end.Offset)
}

func compact(data json.RawMessage) string {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return string(data)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
