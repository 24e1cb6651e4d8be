package cli

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lies in the range of its bucket, and the ranges tile the
	// values without gaps, each within 1% of its values.
	values := []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 1<<20 + 1, 123_456_789, math.MaxInt64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		values = append(values, r.Int64N(1<<uint(r.IntN(62)+1)))
	}
	for _, v := range values {
		b := histogramBucket(v)
		if b < 0 || b >= histogramBuckets {
			t.Fatalf("bucket(%d) = %d, outside 0..%d", v, b, histogramBuckets)
		}
		lo, hi := histogramRange(b)
		if v < lo || v > hi {
			t.Errorf("bucket(%d) = %d, whose range is %d..%d", v, b, lo, hi)
		}
		if float64(hi-lo) > 0.01*float64(max(lo, 1)) && hi != lo {
			t.Errorf("bucket %d: range %d..%d is wider than 1%%", b, lo, hi)
		}
	}
	for b := 1; b < histogramBuckets; b++ {
		_, prevHi := histogramRange(b - 1)
		if lo, _ := histogramRange(b); lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", b, lo, b-1, prevHi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Bars(10) != nil {
		t.Error("an empty histogram reports values")
	}
	r := rand.New(rand.NewPCG(3, 4))
	var exact []time.Duration
	for range 20_000 {
		// Log-normal around 100µs, as latencies are.
		d := time.Duration(math.Exp(r.NormFloat64()+math.Log(100e3))) + time.Duration(r.IntN(100))
		h.Record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	var sum time.Duration
	for _, d := range exact {
		sum += d
	}
	if h.Count() != int64(len(exact)) || h.Max() != exact[len(exact)-1] || h.Mean() != sum/time.Duration(len(exact)) {
		t.Errorf("count %d, max %v, mean %v; want %d, %v, %v", h.Count(), h.Max(), h.Mean(), len(exact), exact[len(exact)-1], sum/time.Duration(len(exact)))
	}
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[max(int(math.Ceil(q*float64(len(exact))))-1, 0)]
		got := h.Quantile(q)
		if math.Abs(float64(got-want)) > 0.01*float64(want) {
			t.Errorf("quantile %v: %v, want %v within 1%%", q, got, want)
		}
	}

	bars := h.Bars(6)
	if len(bars) != 6 {
		t.Fatalf("%d rows, want 6: %v", len(bars), bars)
	}
	var total int64
	for i, b := range bars {
		total += b.count
		if i > 0 && b.upTo != 2*bars[i-1].upTo {
			t.Errorf("row %d ends at %v, row %d at %v", i, b.upTo, i-1, bars[i-1].upTo)
		}
	}
	if total != h.Count() || bars[len(bars)-1].upTo <= h.Max() || bars[len(bars)-1].upTo/2 > h.Max() {
		t.Errorf("rows hold %d values up to %v; want %d up to just past %v", total, bars[len(bars)-1].upTo, h.Count(), h.Max())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		950:                     "950ns",
		39_812:                  "39.8µs",
		735_230:                 "735µs",
		2_114_000:               "2.11ms",
		1_048_576:               "1.05ms",
		3*time.Second + 4567890: "3s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%d) = %q, want %q", d, got, want)
		}
	}
}
