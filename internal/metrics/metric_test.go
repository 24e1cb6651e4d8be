package metrics

import (
	"math"
	"sync"
	"testing"
)

func TestGauge(t *testing.T) {
	var g Gauge
	g.Set(1.5)
	g.Inc()
	g.Add(-0.25)
	g.Dec()
	if v := g.Value(); v != 1.25 {
		t.Errorf("Value = %v, want 1.25", v)
	}
}

func TestHistogramObserve(t *testing.T) {
	h := newHistogram(newBounds([]float64{1, 2, 4}))
	// On a bound counts in that bucket (le is "less or equal"); NaN and
	// anything over the last bound in +Inf.
	for _, v := range []float64{-1, 1, 1.5, 2, 4, 4.5, math.Inf(1), math.NaN()} {
		h.Observe(v)
	}
	want := []uint64{2, 2, 1, 3}
	for i := range want {
		if got := h.counts[i].Load(); got != want[i] {
			t.Errorf("bucket %d (le %s) = %d, want %d", i, h.b.les[i], got, want[i])
		}
	}
}

func TestVecWithReturnsSameChild(t *testing.T) {
	r := NewRegistry()
	cv := r.CounterVec("c_total", "h", "a", "b")
	xy := cv.With("x", "y")
	if again := cv.With("x", "y"); again != xy {
		t.Error("CounterVec.With returned two counters for one label set")
	}
	// The key joins values, so the split between them must still count.
	if cv.With("xy", "") == xy || cv.With("", "xy") == xy {
		t.Error("different label sets share a counter")
	}
	gv := r.GaugeVec("g", "h", "a")
	if g1, g2 := gv.With("x"), gv.With("x"); g1 != g2 {
		t.Error("GaugeVec.With returned two gauges for one label set")
	}
	hv := r.HistogramVec("hist", "h", nil, "a")
	if h1, h2 := hv.With("x"), hv.With("x"); h1 != h2 || h1 == hv.With("y") {
		t.Error("HistogramVec.With is not one histogram per label set")
	}
	// A value longer than With's stack buffer takes the slow path but
	// finds the same child.
	long := string(make([]byte, 300))
	if g1, g2 := gv.With(long), gv.With(long); g1 != g2 {
		t.Error("long label value: two gauges")
	}
}

// TestConcurrentTotals hammers every kind of metric, including the
// creation of labelled children, from many goroutines and checks that no
// update was lost. Run with -race.
func TestConcurrentTotals(t *testing.T) {
	const goroutines, perG = 16, 2000
	r := NewRegistry()
	c := r.Counter("c_total", "h")
	g := r.Gauge("g", "h")
	h := r.Histogram("h", "h", []float64{1, 2})
	cv := r.CounterVec("cv_total", "h", "k")
	hv := r.HistogramVec("hv", "h", []float64{1}, "k")
	keys := []string{"a", "b", "c", "d"}

	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for j := range perG {
				c.Inc()
				g.Add(0.5)
				h.Observe(float64(j % 3))
				cv.With(keys[(i+j)%len(keys)]).Inc()
				hv.With(keys[j%len(keys)]).Observe(0.25)
				if j%100 == 0 {
					r.appendText(nil) // scrapes race with updates
				}
			}
		})
	}
	wg.Wait()

	const n = goroutines * perG
	if got := c.Value(); got != n {
		t.Errorf("counter = %d, want %d", got, n)
	}
	if got := g.Value(); got != n*0.5 {
		t.Errorf("gauge = %v, want %v", got, n*0.5)
	}
	var count uint64
	for i := range h.counts {
		count += h.counts[i].Load()
	}
	if count != n {
		t.Errorf("histogram count = %d, want %d", count, n)
	}
	// Sum of j%3 over perG values of j, per goroutine: exact in float64.
	var perGSum float64
	for j := range perG {
		perGSum += float64(j % 3)
	}
	if got := math.Float64frombits(h.sum.Load()); got != goroutines*perGSum {
		t.Errorf("histogram sum = %v, want %v", got, goroutines*perGSum)
	}
	var vecTotal uint64
	for _, k := range keys {
		vecTotal += cv.With(k).Value()
		if got, want := hv.With(k).counts[0].Load(), uint64(n/len(keys)); got != want {
			t.Errorf("histogram vec %q: %d in le=1, want %d", k, got, want)
		}
	}
	if vecTotal != n {
		t.Errorf("counter vec total = %d, want %d", vecTotal, n)
	}
	if got := len(cv.v.cur.Load().sorted); got != len(keys) {
		t.Errorf("counter vec has %d children, want %d", got, len(keys))
	}
}

func TestHotPathAllocs(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "h")
	g := r.Gauge("g", "h")
	h := r.Histogram("h", "h", nil)
	cv := r.CounterVec("cv_total", "h", "dir", "opcode")
	child := cv.With("in", "text")
	cv1 := r.CounterVec("cv1_total", "h", "code")
	cv1.With("1000")
	hv := r.HistogramVec("hv", "h", nil, "route")
	hv.With("/chat")
	in, text := "in", "text" // not constants: the variadic slice is built at run time

	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Counter.Inc", func() { c.Inc() }},
		{"Counter.Add", func() { c.Add(3) }},
		{"Gauge.Add", func() { g.Add(1.5) }},
		{"Gauge.Set", func() { g.Set(2) }},
		{"Gauge.Inc", func() { g.Inc() }},
		{"Histogram.Observe", func() { h.Observe(0.042) }},
		{"CounterVec child Inc", func() { child.Inc() }},
		{"CounterVec.With existing", func() { cv.With(in, text).Inc() }},
		{"CounterVec.With one label", func() { cv1.With("1000").Inc() }},
		{"HistogramVec.With existing", func() { hv.With("/chat").Observe(0.5) }},
	} {
		if allocs := testing.AllocsPerRun(1000, tc.f); allocs != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.name, allocs)
		}
	}
}
