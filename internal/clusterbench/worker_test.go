package main

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func pubLine(channel string, offset uint64, sent time.Time) []byte {
	return fmt.Appendf(nil, `{"push":"pub","channel":%q,"offset":%d,"epoch":"e1","data":{"t":%d,"p":"xx"}}`,
		channel, offset, sent.UnixNano())
}

// TestGapsAreNotSilentLoss: what a gap push announces is counted in gaps,
// not missing, and the publication after it follows on; a gap that covers
// offsets already received counts only the rest.
func TestGapsAreNotSilentLoss(t *testing.T) {
	w := &worker{}
	c := &benchClient{channels: []string{"bench:all"}, last: make([]atomic.Uint64, 1)}
	sent := time.Now()
	w.push(c, pubLine("bench:all", 1, sent))
	w.push(c, pubLine("bench:all", 2, sent))
	w.push(c, []byte(`{"push":"gap","channel":"bench:all","epoch":"e1","from":2,"to":5}`)) // 3, 4, 5 new
	w.push(c, pubLine("bench:all", 6, sent))
	w.push(c, []byte(`{"push":"gap","channel":"bench:other","epoch":"e1","from":1,"to":9}`))
	if got := w.gapped.Load(); got != 3 {
		t.Errorf("in gaps %d, want 3", got)
	}
	if got := w.missing.Load(); got != 0 {
		t.Errorf("missing %d, want 0: the gap announced them", got)
	}
	if missing, extra := c.settle(0, 6); missing != 0 || extra != 0 {
		t.Errorf("settle at 6: %d missing, %d extra", missing, extra)
	}
}

// TestOffsetsFindLossAndRepeats: a client's offsets must run 1, 2, 3 …;
// a skipped one is counted missing, a repeated one duplicated, and what
// has not arrived by the check is missing, once.
func TestOffsetsFindLossAndRepeats(t *testing.T) {
	w := &worker{}
	c := &benchClient{channels: []string{"bench:all", "bench:c7"}, last: make([]atomic.Uint64, 2)}
	sent := time.Now().Add(-5 * time.Millisecond)
	for _, off := range []uint64{1, 2, 4, 4, 3} { // 3 skipped, then 4 and 3 late
		w.push(c, pubLine("bench:all", off, sent))
	}
	w.push(c, pubLine("bench:c7", 1, sent))
	w.push(c, []byte(`{"push":"join","channel":"bench:all","info":{"client":"x","user":""}}`))
	if got := w.received.Load(); got != 6 {
		t.Errorf("received %d publications, want 6", got)
	}
	if got := w.missing.Load(); got != 1 {
		t.Errorf("missing %d, want 1 (offset 3 skipped)", got)
	}
	if got := w.duplicates.Load(); got != 2 {
		t.Errorf("duplicates %d, want 2 (4 twice, 3 after 4)", got)
	}
	if got := w.pushes.Load(); got != 1 {
		t.Errorf("other pushes %d, want 1", got)
	}
	if n := len(c.latencies); n != 4 {
		t.Fatalf("%d latencies, want one per publication in order (4)", n)
	}
	for _, d := range c.latencies {
		if d < 5*time.Millisecond || d > time.Minute {
			t.Errorf("latency %v, want about 5 ms", d)
		}
	}

	for _, tc := range []struct {
		ch             int
		want           uint64
		missing, extra int64
	}{
		{0, 4, 0, 0},
		{0, 6, 2, 0}, // 5 and 6 never came
		{0, 6, 0, 0}, // counted once
		{1, 0, 0, 1}, // one more than was published
	} {
		if m, e := c.settle(tc.ch, tc.want); m != tc.missing || e != tc.extra {
			t.Errorf("settle(%d, %d) = %d missing, %d extra; want %d, %d", tc.ch, tc.want, m, e, tc.missing, tc.extra)
		}
	}
}

// TestPerClientCount matches the count of publications per channel with
// the publisher's own walk over the positions.
func TestPerClientCount(t *testing.T) {
	for _, total := range []uint64{1, 7, 100, 250} {
		for _, positions := range []uint64{0, 1, 99, 100, 101, 1000, 1234} {
			counts := make([]uint64, total)
			for p := range positions {
				counts[p%total]++
			}
			for i, want := range counts {
				if got := perClientCount(uint64(i), positions, total); got != want {
					t.Errorf("perClientCount(%d, %d, %d) = %d, want %d", i, positions, total, got, want)
				}
			}
		}
	}
}

// TestWorkerShares: no worker holds more than maxPerWorker connections,
// which keeps each process under its 20,000 descriptors, and together they
// hold every client once.
func TestWorkerShares(t *testing.T) {
	for _, n := range []int{1, 200, maxPerWorker, maxPerWorker + 1, 60000, 60001, 100000} {
		shares := workerShares(n)
		next := 0
		for _, s := range shares {
			if s.count > maxPerWorker || s.count < 1 {
				t.Errorf("%d clients: a worker with %d", n, s.count)
			}
			if s.first != next {
				t.Errorf("%d clients: a share starts at %d, want %d", n, s.first, next)
			}
			next += s.count
		}
		if next != n {
			t.Errorf("%d clients: shares hold %d", n, next)
		}
		if want := (n + maxPerWorker - 1) / maxPerWorker; len(shares) != want {
			t.Errorf("%d clients: %d workers, want %d", n, len(shares), want)
		}
	}
}

// TestPercentileWeighsWorkers: a worker's sample counts as many
// deliveries as it stands for, whatever its length.
func TestPercentileWeighsWorkers(t *testing.T) {
	ms := int64(time.Millisecond)
	all := mergeLatencies([]answer{
		{Latencies: []int64{1 * ms, 2 * ms}, Measured: 2},
		{Latencies: []int64{10 * ms}, Measured: 8}, // a sample of 8 equal latencies
	})
	if got := percentile(all, 0.5); got != 10*time.Millisecond {
		t.Errorf("p50 %v, want 10ms: 8 of the 10 deliveries took 10 ms", got)
	}
	if got := percentile(all, 0.1); got != time.Millisecond {
		t.Errorf("p10 %v, want 1ms", got)
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing %v, want 0", got)
	}
}

// TestGroupExpectation: a group channel's count is its group's, for every
// member, whichever worker holds it; one publication short shows.
func TestGroupExpectation(t *testing.T) {
	const clients, positions = 60, 13 // 6 groups: group 0 gets 3 publications, the others 2
	e := expectation{Channel: groupChannel, Positions: positions, Total: clients / groupSize, Group: groupSize}
	for _, first := range []int{0, 25} {
		j := job{First: first, Count: clients - first, Channels: []string{ownChannel, groupChannel}}
		for k := range j.Count {
			c := &benchClient{last: make([]atomic.Uint64, 2)}
			got := uint64(2)
			if (first+k)/groupSize == 0 {
				got = 3
			}
			c.last[1].Store(got)
			if missing, extra := c.check(j, k, []expectation{e}); missing != 0 || extra != 0 {
				t.Errorf("client %d: %d missing, %d extra", first+k, missing, extra)
			}
		}
	}
	short := &benchClient{last: make([]atomic.Uint64, 2)}
	short.last[1].Store(1)
	if missing, _ := short.check(job{First: 0, Count: 1, Channels: []string{ownChannel, groupChannel}}, 0, []expectation{e}); missing != 2 {
		t.Errorf("a client of group 0 with 1 of 3: %d missing, want 2", missing)
	}
}
