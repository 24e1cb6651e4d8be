package metrics

import (
	"math"
	"strings"
	"testing"
)

func TestValidNames(t *testing.T) {
	for _, tc := range []struct {
		s             string
		metric, label bool
	}{
		{"a", true, true},
		{"_", true, true},
		{"http_requests_total", true, true},
		{"A9_b", true, true},
		{"job:rate5m", true, false},
		{":x", true, false},
		{"__x", true, false}, // reserved for labels only
		{"", false, false},
		{"9a", false, false},
		{"a-b", false, false},
		{"a b", false, false},
		{"é", false, false},
	} {
		if got := validName(tc.s); got != tc.metric {
			t.Errorf("validName(%q) = %v", tc.s, got)
		}
		if got := validLabelName(tc.s); got != tc.label {
			t.Errorf("validLabelName(%q) = %v", tc.s, got)
		}
	}
}

// mustPanic runs f and fails unless it panics with a message containing want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, want) {
			t.Errorf("panic %v, want one mentioning %q", r, want)
		}
	}()
	f()
}

func TestRegisterPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("c_total", "h")
	r.Histogram("h", "h", nil)
	for _, tc := range []struct {
		name string
		want string
		f    func()
	}{
		{"bad name", "invalid metric name", func() { r.Gauge("1x", "h") }},
		{"duplicate", "clashes", func() { r.Gauge("c_total", "h") }},
		{"histogram sample name", "clashes", func() { r.Counter("h_count", "h") }},
		{"histogram over a counter", "clashes", func() { r.Counter("z_sum", "h"); r.Histogram("z", "h", nil) }},
		{"bad label", "invalid label name", func() { r.CounterVec("v1", "h", "a-b") }},
		{"reserved label", "invalid label name", func() { r.GaugeVec("v2", "h", "__name__") }},
		{"repeated label", "repeated", func() { r.CounterVec("v3", "h", "a", "a") }},
		{"le on a histogram", "reserved", func() { r.HistogramVec("v4", "h", nil, "le") }},
		{"unsorted buckets", "strictly increasing", func() { r.Histogram("v5", "h", []float64{1, 0.5}) }},
		{"repeated bucket", "strictly increasing", func() { r.Histogram("v6", "h", []float64{1, 1}) }},
		{"NaN bucket", "strictly increasing", func() { r.Histogram("v7", "h", []float64{math.NaN()}) }},
		{"nil GaugeFunc", "nil function", func() { r.GaugeFunc("v8", "h", nil) }},
		{"wrong label count", "label values", func() { r.CounterVec("v9", "h", "a", "b").With("x") }},
	} {
		t.Run(tc.name, func(t *testing.T) { mustPanic(t, tc.want, tc.f) })
	}
}

// TestFailedRegistrationLeavesNoTrace checks that a panicking registration
// takes no name, so the registry is the same as before it.
func TestFailedRegistrationLeavesNoTrace(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_count", "h")
	mustPanic(t, "clashes", func() { r.Histogram("x", "h", nil) })
	r.Gauge("x", "h") // the histogram did not keep "x"
	mustPanic(t, "strictly increasing", func() { r.Histogram("y", "h", []float64{2, 1}) })
	r.Gauge("y", "h")
}

func TestHistogramBounds(t *testing.T) {
	b := newBounds(nil)
	if len(b.upper) != len(LatencyBuckets) || b.les[len(b.les)-1] != "+Inf" {
		t.Errorf("default bounds %v %v", b.upper, b.les)
	}
	LatencyBuckets[0] = -1 // a caller changing the shared default later...
	defer func() { LatencyBuckets[0] = .0005 }()
	if b.upper[0] != .0005 { // ...does not reach histograms already made
		t.Errorf("bounds share LatencyBuckets' array")
	}
	if b := newBounds([]float64{math.Inf(1)}); len(b.upper) != 0 || len(b.les) != 1 {
		t.Errorf("+Inf only: %v %v", b.upper, b.les)
	}
}
