package ratelimit

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyedPerKey(t *testing.T) {
	k := NewKeyed(1, 2, 0)
	for i, s := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, true}, {"a", 0, true}, {"a", 0, false}, // a's burst is spent...
		{"b", 0, true}, {"b", 0, true}, // ...b's is its own
		{"a", 999 * time.Millisecond, false},
		{"a", time.Second, true},
		{"b", time.Second, true}, {"b", time.Second, false},
	} {
		if got := k.Allow(s.key, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: Allow(%q, t0+%v) = %v, want %v", i, s.key, s.at, got, s.want)
		}
	}
	if k.Len() != 2 {
		t.Errorf("Len = %d, want 2", k.Len())
	}
}

// TestKeyedSweep checks that buckets that have refilled are forgotten once
// a sweep is due, and that busy ones are kept with their state.
func TestKeyedSweep(t *testing.T) {
	// Refill time (and so sweep interval) 2s: each idle key below is full
	// again 1s after its one request.
	k := NewKeyed(1, 2, 0)
	for i := range 100 {
		k.Allow("idle"+strconv.Itoa(i), t0) // the first call also sweeps, an empty map
	}
	k.Allow("busy", t0.Add(1500*time.Millisecond))
	k.Allow("busy", t0.Add(1500*time.Millisecond))
	if k.Len() != 101 {
		t.Fatalf("Len = %d, want 101", k.Len())
	}
	k.Allow("busy", t0.Add(1999*time.Millisecond)) // sweep not due yet: refused, nothing forgotten
	if k.Len() != 101 {
		t.Fatalf("before the sweep is due: Len = %d, want 101", k.Len())
	}
	if k.Allow("new", t0.Add(2*time.Second)); k.Len() != 2 {
		t.Fatalf("after the sweep: Len = %d, want 2 (busy and new)", k.Len())
	}
	// busy kept its state: half a token at 2s.
	if k.Allow("busy", t0.Add(2*time.Second)) {
		t.Error("busy's bucket was reset by the sweep")
	}
	// An emptied shard gives its map back.
	k.Allow("x", t0.Add(100*time.Second))
	nilMaps := 0
	for i := range k.shards {
		if k.shards[i].tat == nil {
			nilMaps++
		}
	}
	if k.Len() != 1 || nilMaps != shardCount-1 {
		t.Errorf("after all went idle: Len %d, %d shards without a map", k.Len(), nilMaps)
	}
}

// TestKeyedSweepAfterClockStep checks that a wall clock stepped back does
// not put off sweeps until it catches up.
func TestKeyedSweepAfterClockStep(t *testing.T) {
	k := NewKeyed(1, 1, 0)
	k.Allow("a", t0)                 // sweeps (an empty map); next sweep due at t0+1s
	k.Allow("b", t0.Add(-time.Hour)) // sweeps again, though a is not full then
	if k.Len() != 2 {
		t.Fatalf("Len = %d, want 2", k.Len())
	}
	k.Allow("c", t0.Add(10*time.Second)) // due by the new schedule; a and b are full
	if k.Len() != 1 {
		t.Errorf("Len = %d, want 1", k.Len())
	}
}

func TestKeyedMaxKeys(t *testing.T) {
	k := NewKeyed(1, 2, 3)
	for _, key := range []string{"a", "b", "c"} {
		if !k.Allow(key, t0) {
			t.Fatalf("Allow(%q) refused below the cap", key)
		}
	}
	if k.Allow("d", t0) {
		t.Error("a new key over the cap was allowed")
	}
	if !k.Allow("a", t0) {
		t.Error("a known key was refused at the cap")
	}
	if k.Len() != 3 {
		t.Errorf("Len = %d, want 3", k.Len())
	}
	// b and c are full again after 1s, but only the sweep (due at 2s)
	// makes room.
	if k.Allow("d", t0.Add(1500*time.Millisecond)) {
		t.Error("d allowed before a sweep made room")
	}
	if !k.Allow("d", t0.Add(2*time.Second)) {
		t.Error("d refused after the sweep")
	}
	if k.Len() != 1 { // a, b and c refilled and were forgotten
		t.Errorf("Len = %d, want 1", k.Len())
	}
}

// TestKeyedRemembersOnlyWhatMatters: a refused new key and keys of an
// unlimited Keyed leave nothing behind, and a Keyed that never refills
// forgets nothing.
func TestKeyedRemembersOnlyWhatMatters(t *testing.T) {
	k := NewKeyed(1, 0, 1)
	if k.Allow("a", t0) || k.Len() != 0 {
		t.Errorf("burst 0: Len %d", k.Len())
	}
	f := NewKeyed(0, 1, 0)
	if !f.Allow("a", t0) || f.Allow("a", t0.Add(time.Hour)) || f.Len() != 1 {
		t.Errorf("rate 0: a not allowed once then refused, or forgotten (Len %d)", f.Len())
	}
	u := NewKeyed(2e10, 0, 1)
	for i := range 10 {
		if !u.Allow(strconv.Itoa(i), t0) {
			t.Fatal("unlimited Keyed refused")
		}
	}
	if u.Len() != 0 {
		t.Errorf("unlimited: Len %d", u.Len())
	}
}

// TestKeyedConcurrent has many goroutines ask for the same keys at the same
// instant: each key must grant exactly its burst, and the cap must hold.
// Run with -race.
func TestKeyedConcurrent(t *testing.T) {
	const burst, keys, maxKeys, goroutines = 5, 40, 30, 16
	k := NewKeyed(1, burst, maxKeys)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys * burst {
				if k.Allow("key"+strconv.Itoa((i+g)%keys), t0) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != maxKeys*burst {
		t.Errorf("allowed %d, want %d (%d keys admitted × burst %d)", got, maxKeys*burst, maxKeys, burst)
	}
	if k.Len() != maxKeys {
		t.Errorf("Len = %d, want %d", k.Len(), maxKeys)
	}
}

func TestKeyedAllocs(t *testing.T) {
	k := NewKeyed(1e6, 10, 100)
	k.Allow("192.0.2.1", t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		k.Allow("192.0.2.1", now)
	}); n != 0 {
		t.Errorf("Keyed.Allow on a known key: %v allocations, want 0", n)
	}
}
