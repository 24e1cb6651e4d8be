package ratelimit

import (
	"math"
	"testing"
	"time"
)

// t0 is an arbitrary start; the tests move time by offsets from it.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// step asks for n tokens at t0+at and expects want.
type step struct {
	at   time.Duration
	n    int
	want bool
}

func TestBucketRefill(t *testing.T) {
	const hour = time.Hour
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"one per second", 1, 1, []step{
			{0, 1, true}, {0, 1, false}, {999 * ms, 1, false}, {time.Second, 1, true}, {time.Second, 1, false},
		}},
		{"starts full", 10, 3, []step{
			{0, 1, true}, {0, 1, true}, {0, 1, true}, {0, 1, false},
		}},
		{"fractional rate: one per two seconds", 0.5, 2, []step{
			{0, 2, true}, {time.Second, 1, false}, {2 * time.Second, 1, true},
			{3 * time.Second, 1, false}, {4 * time.Second, 1, true}, {4 * time.Second, 1, false},
		}},
		{"fractional rate: 2.5 per second", 2.5, 1, []step{
			{0, 1, true}, {399 * ms, 1, false}, {400 * ms, 1, true}, {799 * ms, 1, false}, {800 * ms, 1, true},
		}},
		{"a rate that is no whole number of nanoseconds", 3, 1, []step{
			{0, 1, true}, {333333332, 1, false}, {333333333, 1, true},
		}},
		{"tokens earned partly carry over", 1, 2, []step{
			{0, 2, true}, {1500 * ms, 1, true}, {1999 * ms, 1, false}, {2 * time.Second, 1, true},
			{2500 * ms, 1, false}, {3 * time.Second, 1, true},
		}},
		{"burst caps refill", 10, 3, []step{
			{0, 3, true}, {10 * time.Second, 3, true}, {10 * time.Second, 1, false},
		}},
		{"long idle refills only to the burst", 1, 5, []step{
			{0, 5, true}, {1000 * hour, 5, true}, {1000 * hour, 1, false}, {1000*hour + time.Second, 1, true},
		}},
		{"n above the burst is never allowed", 100, 5, []step{
			{0, 6, false}, {hour, 6, false}, {hour, 5, true},
		}},
		{"a refused AllowN takes nothing", 1, 4, []step{
			{0, 3, true}, {0, 2, false}, {0, 1, true}, {0, 1, false},
		}},
		{"n of zero always allowed", 1, 0, []step{
			{0, 0, true}, {0, -1, true}, {0, 1, false},
		}},
		{"burst zero allows nothing", 1000, 0, []step{
			{0, 1, false}, {hour, 1, false},
		}},
		{"rate zero never refills", 0, 2, []step{
			{0, 1, true}, {hour, 1, true}, {1000 * hour, 1, false},
		}},
		{"negative rate is zero", -5, 1, []step{
			{0, 1, true}, {hour, 1, false},
		}},
		{"NaN rate is zero", math.NaN(), 1, []step{
			{0, 1, true}, {hour, 1, false},
		}},
		{"a token a century is never", 1e-10, 1, []step{
			{0, 1, true}, {100000 * hour, 1, false},
		}},
		{"infinite rate is no limit, even with no burst", math.Inf(1), 0, []step{
			{0, 1, true}, {0, 1000, true}, {0, 1, true},
		}},
		{"time going back earns nothing", 1, 1, []step{
			{10 * time.Second, 1, true}, {5 * time.Second, 1, false}, {10 * time.Second, 1, false}, {11 * time.Second, 1, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBucket(tc.rate, tc.burst, t0)
			for i, s := range tc.steps {
				var got bool
				if s.n == 1 {
					got = b.Allow(t0.Add(s.at))
				} else {
					got = b.AllowN(t0.Add(s.at), s.n)
				}
				if got != s.want {
					t.Fatalf("step %d: AllowN(t0+%v, %d) = %v, want %v", i, s.at, s.n, got, s.want)
				}
			}
		})
	}
}

// TestBucketSustainedRate checks that over a long run a bucket allows
// exactly its rate plus the burst it starts with, with no drift. (Rates
// whose interval is a whole number of nanoseconds; others are rounded to
// the nanosecond.)
func TestBucketSustainedRate(t *testing.T) {
	for _, rate := range []float64{0.5, 1, 8, 100, 250} {
		b := NewBucket(rate, 10, t0)
		allowed := 0
		const every = time.Millisecond // asks far more often than it may
		for at := time.Duration(0); at <= 2*time.Minute; at += every {
			if b.Allow(t0.Add(at)) {
				allowed++
			}
		}
		if want := int(rate*120) + 10; allowed != want {
			t.Errorf("rate %v: allowed %d in two minutes, want %d", rate, allowed, want)
		}
	}
}

func TestZeroBucketAllowsAll(t *testing.T) {
	var b Bucket
	if !b.Allow(t0) || !b.AllowN(t0, 1<<30) {
		t.Error("zero Bucket refused")
	}
}

func TestBucketAllocs(t *testing.T) {
	b := NewBucket(1e6, 10, t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		b.Allow(now)
	}); n != 0 {
		t.Errorf("Bucket.Allow: %v allocations, want 0", n)
	}
}
