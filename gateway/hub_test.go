package gateway

import (
	"runtime"
	"sync"
	"testing"
)

// TestEachSplitVisitsEveryoneOnce: a large channel's fan-out, split over
// the processors, calls f once for every subscriber, and has returned
// when eachSplit does; a small one runs on the caller alone.
func TestEachSplitVisitsEveryoneOnce(t *testing.T) {
	prev := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(prev)
	for _, n := range []int{1, splitFanOut - 1, splitFanOut, 3*splitFanOut + 7} {
		h := newHub()
		subs := make([]*session, n)
		for i := range subs {
			subs[i] = &session{}
			h.add("c", subs[i])
		}
		var mu sync.Mutex
		seen := make(map[*session]int, n)
		h.eachSplit("c", func(s *session) {
			mu.Lock()
			seen[s]++
			mu.Unlock()
		})
		mu.Lock()
		if len(seen) != n {
			t.Fatalf("%d subscribers: f called for %d", n, len(seen))
		}
		for _, s := range subs {
			if seen[s] != 1 {
				t.Fatalf("%d subscribers: f called %d times for one", n, seen[s])
			}
		}
		mu.Unlock()
	}
}
