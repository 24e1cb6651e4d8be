package metrics

import (
	"io"
	"strconv"
	"testing"
)

// The hot operations, each alone and from every P at once (where one cache
// line shared by all cores is what they cost).

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().Counter("c_total", "h")
	for b.Loop() {
		c.Inc()
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := NewRegistry().Counter("c_total", "h")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkGaugeAdd(b *testing.B) {
	g := NewRegistry().Gauge("g", "h")
	for b.Loop() {
		g.Add(1)
	}
}

func BenchmarkGaugeAddParallel(b *testing.B) {
	g := NewRegistry().Gauge("g", "h")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Add(1)
		}
	})
}

func BenchmarkGaugeSet(b *testing.B) {
	g := NewRegistry().Gauge("g", "h")
	for b.Loop() {
		g.Set(1)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().Histogram("h", "h", nil)
	for b.Loop() {
		h.Observe(0.042)
	}
}

func BenchmarkHistogramObserveParallel(b *testing.B) {
	h := NewRegistry().Histogram("h", "h", nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(0.042)
		}
	})
}

func BenchmarkCounterVecWith(b *testing.B) {
	v := NewRegistry().CounterVec("c_total", "h", "dir", "opcode")
	v.With("in", "text")
	for b.Loop() {
		v.With("in", "text").Inc()
	}
}

func BenchmarkCounterVecWithParallel(b *testing.B) {
	v := NewRegistry().CounterVec("c_total", "h", "dir", "opcode")
	v.With("in", "text")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v.With("in", "text").Inc()
		}
	})
}

// BenchmarkWriteTo is a scrape of a registry about the size of a gateway's.
func BenchmarkWriteTo(b *testing.B) {
	r := NewRegistry()
	for i := range 10 {
		r.Counter("c"+strconv.Itoa(i)+"_total", "A counter.").Add(uint64(i))
		r.Gauge("g"+strconv.Itoa(i), "A gauge.").Set(float64(i) / 3)
	}
	hv := r.HistogramVec("latency_seconds", "Latency.", nil, "route")
	cv := r.CounterVec("close_total", "Closes by code.", "code")
	for i := range 10 {
		hv.With("/r" + strconv.Itoa(i)).Observe(0.01)
		cv.With(strconv.Itoa(1000 + i)).Inc()
	}
	b.ReportAllocs()
	for b.Loop() {
		r.WriteTo(io.Discard)
	}
}
