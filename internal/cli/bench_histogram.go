package cli

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets, like HdrHistogram:
// exact below 128 ns, and above that 128 buckets per power of two, so that
// any value is reported within 1% of itself. It holds every value up to
// 2^63 ns in 58 KiB. Record is safe for concurrent use and takes no lock;
// reading it while values are recorded gives a slightly stale view.
type histogram struct {
	counts [histogramBuckets]atomic.Int64
	total  atomic.Int64
	sum    atomic.Int64 // nanoseconds
	max    atomic.Int64
}

const (
	histogramSubBits = 7 // 2^7 = 128 buckets per power of two
	histogramSub     = 1 << histogramSubBits
	histogramBuckets = (64 - histogramSubBits) * histogramSub
)

// histogramBucket returns the bucket of v ≥ 0.
func histogramBucket(v int64) int {
	if v < histogramSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histogramSubBits - 1
	return (shift+1)*histogramSub + int(v>>shift) - histogramSub
}

// histogramRange returns the smallest and largest values of bucket b.
func histogramRange(b int) (lo, hi int64) {
	if b < histogramSub {
		return int64(b), int64(b)
	}
	shift := b/histogramSub - 1
	m := int64(b%histogramSub + histogramSub)
	return m << shift, (m+1)<<shift - 1
}

// Record counts d; a negative d counts as 0.
func (h *histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histogramBucket(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	storeMax(&h.max, v)
}

// Count returns how many values were recorded.
func (h *histogram) Count() int64 { return h.total.Load() }

// Max returns the largest value recorded, exactly.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the mean of the values recorded.
func (h *histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the value below or at which the fraction q of the
// values lie, within 1%: the middle of its bucket, never above Max.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			lo, hi := histogramRange(b)
			return min(time.Duration(lo+(hi-lo)/2), h.Max())
		}
	}
	return h.Max()
}

// histogramBar is one row of a coarse view of the distribution.
type histogramBar struct {
	upTo  time.Duration // values in the row are below this, and at least the row before's
	count int64
}

// Bars groups the values into rows of powers of two, from the row of the
// smallest value to the row of the largest, at most limit rows (the first
// rows are merged into one when there would be more).
func (h *histogram) Bars(limit int) []histogramBar {
	var rows []histogramBar
	for b := range h.counts {
		c := h.counts[b].Load()
		if c == 0 && len(rows) == 0 {
			continue
		}
		_, hi := histogramRange(b)
		upTo := time.Duration(1) << bits.Len64(uint64(hi))
		if len(rows) == 0 || rows[len(rows)-1].upTo != upTo {
			if h.Max() < time.Duration(upTo)/2 {
				break
			}
			rows = append(rows, histogramBar{upTo: upTo})
		}
		rows[len(rows)-1].count += c
	}
	if limit > 0 && len(rows) > limit {
		merged := rows[len(rows)-limit+1:]
		var c int64
		for _, r := range rows[:len(rows)-limit+1] {
			c += r.count
		}
		rows = append([]histogramBar{{upTo: merged[0].upTo / 2, count: c}}, merged...)
	}
	return rows
}
