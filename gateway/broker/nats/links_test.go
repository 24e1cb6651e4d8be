package nats

import (
	"math/rand/v2"
	"testing"
)

// TestLinks builds the links of a channel whose messages sit at scattered
// stream sequences, the way publishers compute them, and checks for
// every pair (newest n, first offset wanted f) that start gives a
// sequence at or before f's, close below it.
func TestLinks(t *testing.T) {
	const total = 3000
	rng := rand.New(rand.NewPCG(1, 2))
	for _, prev := range []uint64{0, 41} { // the epoch follows nothing, or an older epoch's message
		seqs := make([]uint64, total+1) // by offset
		all := make([]links, total+1)
		seq := prev
		for n := uint64(1); n <= total; n++ {
			seq += 1 + rng.Uint64N(50) // other channels in between
			seqs[n] = seq
			if n == 1 {
				all[n] = firstLinks(prev)
			} else {
				all[n] = all[n-1].next(n-1, seqs[n-1])
			}
		}
		check := func(n, f uint64) {
			s, off := all[n].start(n, f)
			if off > f {
				t.Fatalf("prev %d: start(%d, %d) at offset %d, after the first wanted", prev, n, f, off)
			}
			if off == 0 {
				if s != prev+1 {
					t.Fatalf("prev %d: start(%d, %d) = epoch start %d, want %d", prev, n, f, s, prev+1)
				}
			} else if s != seqs[off] {
				t.Fatalf("prev %d: start(%d, %d) = sequence %d for offset %d, which is at %d", prev, n, f, s, off, seqs[off])
			}
			// The read costs fewer than four times what it wants, below
			// the top level; above it, it starts at most a top level's
			// spacing early (where the trimming to HistorySize takes
			// over).
			wanted := n - f + 1
			if over := f - off; off > 0 && over >= 4*wanted && over >= spacing(linkLevels-1) {
				t.Fatalf("prev %d: start(%d, %d) at offset %d: reads %d more for %d", prev, n, f, off, over, wanted)
			}
			if wanted < spacing(linkLevels-1)/4 && f-off >= 4*wanted {
				t.Fatalf("prev %d: start(%d, %d) at offset %d: reads %d more for %d", prev, n, f, off, f-off, wanted)
			}
		}
		for n := uint64(2); n <= total; n++ {
			for _, f := range []uint64{1, n - 1, n / 2, n - 3, n - 17, n - 100, n - 1000} {
				if f >= 1 && f < n {
					check(n, f)
				}
			}
		}
		for range 20000 {
			n := 2 + rng.Uint64N(total-1)
			check(n, 1+rng.Uint64N(n-1))
		}
	}
}
