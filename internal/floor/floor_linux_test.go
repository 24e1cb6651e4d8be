package floor

import (
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestMeasure(t *testing.T) {
	f, err := Measure(50, 4, 128)
	if err != nil {
		t.Fatal(err)
	}
	if f.Write <= 0 || f.Read <= 0 {
		t.Fatalf("floor %+v: a write and a read each cost something", f)
	}
	if f.Delivery() > time.Millisecond {
		t.Fatalf("floor %v a delivery: not a system call's cost", f.Delivery())
	}
	// 2 cores, both ends here: 0.99 × 60,000 deliveries' worth on 2 cores.
	if got, want := f.Fanout(60000, 0.99, 2, true), time.Duration(0.99*60000*float64(f.Delivery())/2); got != want {
		t.Fatalf("fanout %v, want %v", got, want)
	}
	if f.Fanout(60000, 0.99, 2, false) >= f.Fanout(60000, 0.99, 2, true) {
		t.Fatal("the server's share of the floor is not below both ends'")
	}
}

// BenchmarkLoopbackDelivery reports the floor: the CPU time of one
// delivery's write and read on loopback (`go test -run '^$' -bench
// LoopbackDelivery ./internal/floor/`).
func BenchmarkLoopbackDelivery(b *testing.B) {
	var write, read time.Duration
	for b.Loop() {
		f, err := Measure(1000, 10, 128)
		if err != nil {
			b.Fatal(err)
		}
		write, read = write+f.Write, read+f.Read
	}
	b.ReportMetric(float64(write)/float64(b.N), "write-ns/delivery")
	b.ReportMetric(float64(read)/float64(b.N), "read-ns/delivery")
	b.ReportMetric(float64(write+read)/float64(b.N), "ns/delivery")
}

// A frame larger than a read may return still counts as one, read whole.
func TestMeasureLargeFrames(t *testing.T) {
	f, err := Measure(4, 2, MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	small, err := Measure(4, 2, 16)
	if err != nil {
		t.Fatal(err)
	}
	if f.Delivery() <= small.Delivery() {
		t.Fatalf("%d-byte frames cost %v, 16-byte ones %v", MaxSize, f.Delivery(), small.Delivery())
	}
}

func TestMeasureRefusesNothing(t *testing.T) {
	for _, a := range [][3]int{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {1, 1, MaxSize + 1}} {
		if _, err := Measure(a[0], a[1], a[2]); err == nil {
			t.Errorf("Measure%v: no error", a)
		}
	}
}
