package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets, as HDR histograms do:
// exact below 128 ns, then 64 buckets per power of two, so a quantile is
// within 1.6% of the true value. Record is safe for concurrent use and does
// not allocate.
type histogram struct {
	counts [histogramBuckets]atomic.Uint64
}

const (
	subBucketBits    = 6
	subBuckets       = 1 << subBucketBits
	histogramBuckets = 64 * subBuckets // enough for 2^63 ns
)

func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBucketBits - 1 // v>>shift is in [64, 128)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketMid returns the middle of bucket i's range.
func bucketMid(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	low := uint64(i%subBuckets+subBuckets) << shift
	return low + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))].Add(1)
}

func (h *histogram) total() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// quantile returns the q-quantile (0 < q <= 1), or 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.total()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return 0
}
