package main

import (
	"testing"
	"time"
)

func TestFloor(t *testing.T) {
	f, err := measureFloor(50, 4)
	if err != nil {
		t.Fatal(err)
	}
	if f.write <= 0 || f.read <= 0 {
		t.Fatalf("floor %+v: a write and a read each cost something", f)
	}
	if f.delivery() > time.Millisecond {
		t.Fatalf("floor %v a delivery: not a system call's cost", f.delivery())
	}
	// 2 cores, both ends here: 0.99 × 60,000 deliveries' worth on 2 cores.
	if got, want := f.fanout(60000, 0.99, 2, true), time.Duration(0.99*60000*float64(f.delivery())/2); got != want {
		t.Fatalf("fanout %v, want %v", got, want)
	}
	if f.fanout(60000, 0.99, 2, false) >= f.fanout(60000, 0.99, 2, true) {
		t.Fatal("the server's share of the floor is not below both ends'")
	}
}

// BenchmarkLoopbackDelivery reports the floor: the CPU time of one
// delivery's write and read on loopback (`go test -run '^$' -bench
// LoopbackDelivery ./internal/clusterbench/`).
func BenchmarkLoopbackDelivery(b *testing.B) {
	var write, read time.Duration
	for b.Loop() {
		f, err := measureFloor(1000, 10)
		if err != nil {
			b.Fatal(err)
		}
		write, read = write+f.write, read+f.read
	}
	b.ReportMetric(float64(write)/float64(b.N), "write-ns/delivery")
	b.ReportMetric(float64(read)/float64(b.N), "read-ns/delivery")
	b.ReportMetric(float64(write+read)/float64(b.N), "ns/delivery")
}
