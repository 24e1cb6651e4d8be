package ratelimit

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestPerKey(t *testing.T) {
	p := NewPerKey(2)
	for i, want := range []bool{true, true, false} {
		if got := p.Acquire("a"); got != want {
			t.Fatalf("Acquire(a) #%d = %v, want %v", i+1, got, want)
		}
	}
	if !p.Acquire("b") || p.Count("b") != 1 || p.Count("a") != 2 || p.Count("c") != 0 {
		t.Fatal("counts wrong")
	}
	p.Release("a")
	if !p.Acquire("a") {
		t.Fatal("a refused after a release")
	}
	p.Release("a")
	p.Release("a")
	p.Release("b")
	if p.Count("a") != 0 || p.entries() != 0 {
		t.Errorf("after releasing all: Count(a) %d, %d entries remembered", p.Count("a"), p.entries())
	}
}

func (p *PerKey) entries() int {
	n := 0
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		n += len(s.n)
		s.mu.Unlock()
	}
	return n
}

func TestPerKeyUnlimited(t *testing.T) {
	for _, max := range []int{0, -1} {
		p := NewPerKey(max)
		for range 1000 {
			if !p.Acquire("a") {
				t.Fatalf("max %d: refused", max)
			}
		}
		if p.Count("a") != 1000 {
			t.Errorf("max %d: Count %d", max, p.Count("a"))
		}
	}
}

func TestPerKeyReleaseWithoutAcquirePanics(t *testing.T) {
	p := NewPerKey(1)
	defer func() {
		if r, _ := recover().(string); !strings.Contains(r, "without Acquire") {
			t.Errorf("recovered %q", r)
		}
		// The lock was released on the way out.
		if !p.Acquire("a") {
			t.Error("Acquire refused after the panic")
		}
	}()
	p.Release("a")
}

// TestPerKeyConcurrent has goroutines acquire and release a few keys in a
// loop, tracking what they hold: no key may ever go over its cap, and all
// must be forgotten at the end. Run with -race.
func TestPerKeyConcurrent(t *testing.T) {
	const max, keys, goroutines, rounds = 3, 5, 32, 2000
	p := NewPerKey(max)
	var held [keys]atomic.Int32
	var acquired atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				k := (g + i) % keys
				key := "user" + strconv.Itoa(k)
				if !p.Acquire(key) {
					continue
				}
				acquired.Add(1)
				if n := held[k].Add(1); n > max {
					t.Errorf("%s: %d held, over the cap of %d", key, n, max)
				}
				held[k].Add(-1)
				p.Release(key)
			}
		})
	}
	wg.Wait()
	if acquired.Load() == 0 {
		t.Error("nothing was ever acquired")
	}
	if n := p.entries(); n != 0 {
		t.Errorf("%d entries remembered after every release", n)
	}
}
