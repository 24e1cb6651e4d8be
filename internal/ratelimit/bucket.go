// Package ratelimit holds the limits of a WebSocket gateway: a token Bucket
// per connection for its message rate, Keyed buckets for the handshake rate
// of each client address, and PerKey caps on live connections per address
// or user.
//
// Nothing here reads a clock: every call is given the time. Callers pass
// time.Now(), whose monotonic reading keeps the arithmetic immune to steps
// of the wall clock, and tests pass whatever instants they need.
package ratelimit

import (
	"math"
	"time"
)

// refill is how a bucket earns tokens, shared by Bucket and by every key of
// a Keyed. It is the generic cell rate algorithm: rather than a token count
// the state is tat, the instant at which the bucket will be full again
// (full now if tat is not after now). Taking n tokens moves tat n intervals
// later, and is refused if that would put tat more than burst intervals
// ahead of now. Whole nanoseconds keep the arithmetic exact, with no float
// error to build up over a connection's life.
type refill struct {
	interval time.Duration // time to earn one token; 0 means unlimited
	tau      time.Duration // burst*interval: how far tat may run ahead of now
	burst    int
	// frozen is set when the rate is zero: the bucket never refills. It
	// runs on the same arithmetic with time standing still at the zero
	// time.Time, which every state starts from.
	frozen bool
}

func newRefill(rate float64, burst int) refill {
	burst = max(burst, 0)
	if !(rate > 0) { // also NaN
		return refill{interval: 1, tau: time.Duration(burst), burst: burst, frozen: true}
	}
	iv := math.Round(1e9 / rate) // 0 for rates above 2e9/s (and +Inf): unlimited
	if iv*float64(max(burst, 1)) >= 1<<62 {
		// Slower than a token per century or so: never, in practice, and
		// the durations would overflow.
		return refill{interval: 1, tau: time.Duration(burst), burst: burst, frozen: true}
	}
	interval := time.Duration(iv)
	return refill{interval: interval, tau: interval * time.Duration(burst), burst: burst}
}

// take takes n tokens from the bucket whose state is *tat, if it holds
// them, and reports whether it did. A refusal leaves the state as it was.
func (r *refill) take(tat *time.Time, now time.Time, n int) bool {
	switch {
	case n <= 0 || r.interval == 0:
		return true
	case n > r.burst:
		return false
	}
	if r.frozen {
		now = time.Time{}
	}
	t := *tat
	if t.Before(now) {
		t = now // full: tokens beyond burst were never kept
	}
	t = t.Add(time.Duration(n) * r.interval)
	if t.Sub(now) > r.tau {
		return false
	}
	*tat = t
	return true
}

// full reports whether the bucket whose state is tat holds burst tokens at
// now, so that forgetting it changes nothing.
func (r *refill) full(tat, now time.Time) bool {
	if r.frozen {
		now = time.Time{}
	}
	return !tat.After(now)
}

// Bucket is a token bucket: it holds at most burst tokens, earns rate
// tokens per second (to the nanosecond) and each request takes one or more.
// It is a plain value with no lock, not safe for concurrent use: it is
// meant to be owned by one goroutine, such as a connection's reader. Allow
// and AllowN do not allocate.
//
// The zero Bucket allows everything.
type Bucket struct {
	r   refill
	tat time.Time
}

// NewBucket returns a full bucket of burst tokens earning rate tokens per
// second from now on. A rate of zero or less means the bucket never
// refills; an infinite rate (or one above 2e9) means no limit, whatever
// the burst. Otherwise a burst of zero or less allows nothing.
func NewBucket(rate float64, burst int, now time.Time) Bucket {
	b := Bucket{r: newRefill(rate, burst)}
	if !b.r.frozen {
		b.tat = now
	}
	return b
}

// Allow takes a token if there is one at now, and reports whether it did.
func (b *Bucket) Allow(now time.Time) bool { return b.r.take(&b.tat, now, 1) }

// AllowN takes n tokens if there are that many at now, and reports whether
// it did; it takes none otherwise. n larger than the burst is never
// allowed (unless there is no limit), and n of zero or less always is.
// Times should not go backwards from call to call; if one does, the bucket
// just holds fewer tokens at it.
func (b *Bucket) AllowN(now time.Time, n int) bool { return b.r.take(&b.tat, now, n) }
