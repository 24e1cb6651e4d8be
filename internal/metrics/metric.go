package metrics

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// metric is one series (or, for a histogram, one set of series) of a
// family; labels is its label pairs already formatted, or "".
type metric interface {
	appendTo(b []byte, name, labels string) []byte
}

// one is a family of a single metric without labels.
type one struct{ m metric }

func (o one) appendSamples(b []byte, name string) []byte { return o.m.appendTo(b, name, "") }

// Counter is a count that only goes up, such as connections accepted. Its
// methods are safe for concurrent use, lock-free and allocation-free.
type Counter struct {
	v atomic.Uint64
}

// Inc adds one to the counter.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n to the counter.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the counter's current value.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) appendTo(b []byte, name, labels string) []byte {
	return sampleUint(b, name, "", labels, "", c.Value())
}

// Gauge is a value that goes up and down, such as connections open. Its
// methods are safe for concurrent use, lock-free and allocation-free.
type Gauge struct {
	bits atomic.Uint64 // math.Float64bits of the value
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d, which may be negative, to the gauge.
func (g *Gauge) Add(d float64) { addFloat(&g.bits, d) }

// Inc adds one to the gauge.
func (g *Gauge) Inc() { addFloat(&g.bits, 1) }

// Dec subtracts one from the gauge.
func (g *Gauge) Dec() { addFloat(&g.bits, -1) }

// Value returns the gauge's current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func (g *Gauge) appendTo(b []byte, name, labels string) []byte {
	return sampleFloat(b, name, "", labels, "", g.Value())
}

// addFloat adds d to the float64 whose bits p holds. There is no atomic
// float add, so it retries a compare-and-swap until no other writer got
// in between.
func addFloat(p *atomic.Uint64, d float64) {
	for {
		old := p.Load()
		if p.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// gaugeFunc is a gauge sampled at scrape time.
type gaugeFunc func() float64

func (f gaugeFunc) appendTo(b []byte, name, labels string) []byte {
	return sampleFloat(b, name, "", labels, "", f())
}

// LatencyBuckets are histogram bucket bounds in seconds, from half a
// millisecond to five seconds, for handshake and message latencies. They
// are the default when Histogram or HistogramVec is given no buckets.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// bounds are a histogram's bucket upper bounds, shared by every child of a
// HistogramVec.
type bounds struct {
	upper []float64 // strictly increasing, without +Inf
	les   []string  // the le label of each bucket, then "+Inf"
}

func newBounds(buckets []float64) *bounds {
	if len(buckets) == 0 {
		buckets = LatencyBuckets
	}
	upper := slices.Clone(buckets)
	if math.IsInf(upper[len(upper)-1], 1) {
		upper = upper[:len(upper)-1] // always added anyway
	}
	les := make([]string, 0, len(upper)+1)
	for i, u := range upper {
		if math.IsNaN(u) || i > 0 && u <= upper[i-1] {
			panic(fmt.Sprintf("metrics: histogram buckets %v are not strictly increasing", buckets))
		}
		les = append(les, string(appendFloat(nil, u)))
	}
	return &bounds{upper: upper, les: append(les, "+Inf")}
}

// Histogram counts observations, such as latencies, in buckets. Its
// methods are safe for concurrent use, lock-free and allocation-free.
type Histogram struct {
	b *bounds
	// counts holds each bucket's own count, the last one +Inf's; a scrape
	// adds them up, which keeps the cumulative counts monotonic and _count
	// equal to the +Inf bucket even while observations land.
	counts []atomic.Uint64
	sum    atomic.Uint64 // math.Float64bits of the sum
}

func newHistogram(b *bounds) *Histogram {
	return &Histogram{b: b, counts: make([]atomic.Uint64, len(b.upper)+1)}
}

// Observe records the value v, in the first bucket whose bound is at least
// v (NaN goes to +Inf, as in the Prometheus client).
func (h *Histogram) Observe(v float64) {
	// Binary search for the first bound >= v; written out rather than
	// sort.SearchFloat64s to stay clear of a closure on the hot path.
	lo, hi := 0, len(h.b.upper)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if v <= h.b.upper[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	h.counts[lo].Add(1)
	addFloat(&h.sum, v)
}

// appendTo writes the buckets, _sum and _count. _sum is read apart from the
// counts, so during a scrape it may include an observation they do not yet
// show, or the reverse; Prometheus tolerates that.
func (h *Histogram) appendTo(b []byte, name, labels string) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		b = sampleUint(b, name, "_bucket", labels, h.b.les[i], cum)
	}
	b = sampleFloat(b, name, "_sum", labels, "", math.Float64frombits(h.sum.Load()))
	return sampleUint(b, name, "_count", labels, "", cum)
}
