package metrics

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// CounterVec is a family of counters distinguished by label values.
type CounterVec struct{ v vec }

// With returns the counter for the given label values, one per label in
// the order registered, creating it on first use. It panics if the number
// of values is wrong. Later calls with the same values return the same
// *Counter without locking or allocating; still, resolve it once and keep
// it where the values are fixed.
func (v *CounterVec) With(values ...string) *Counter { return v.v.with(values).(*Counter) }

// GaugeVec is a family of gauges distinguished by label values.
type GaugeVec struct{ v vec }

// With returns the gauge for the given label values, as CounterVec.With.
func (v *GaugeVec) With(values ...string) *Gauge { return v.v.with(values).(*Gauge) }

// HistogramVec is a family of histograms distinguished by label values.
type HistogramVec struct{ v vec }

// With returns the histogram for the given label values, as
// CounterVec.With.
func (v *HistogramVec) With(values ...string) *Histogram { return v.v.with(values).(*Histogram) }

// vec holds the children of a labelled family. Lookups read an immutable
// snapshot through an atomic pointer, so they take no lock; a new child
// copies the snapshot under mu. That makes creating n children O(n²),
// fine for the tens or hundreds of label sets a family should have.
type vec struct {
	labels    []string
	newMetric func() metric
	mu        sync.Mutex // serialises creation
	cur       atomic.Pointer[children]
}

type children struct {
	byKey  map[string]*child
	sorted []*child // by label values, the order of exposition
}

type child struct {
	values []string
	labels string // formatted label pairs: a="x",b="y"
	m      metric
}

func (v *vec) init(labels []string, newMetric func() metric) {
	v.labels = slices.Clone(labels)
	v.newMetric = newMetric
	v.cur.Store(&children{byKey: map[string]*child{}})
}

// keySep joins label values into a map key. It cannot occur in UTF-8, so
// the join of valid values is unambiguous.
const keySep = '\xff'

func (v *vec) with(values []string) metric {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %d label values for labels %q", len(values), v.labels))
	}
	for _, s := range values {
		if !utf8.ValidString(s) {
			return v.create(values)
		}
	}
	// The key is built on the stack, and m[string(bytes)] does not
	// allocate, so finding an existing child costs no garbage.
	var buf [128]byte
	key := appendKey(buf[:0], values)
	if c, ok := v.cur.Load().byKey[string(key)]; ok {
		return c.m
	}
	return v.create(values)
}

// create returns the child for values, adding it unless another caller
// just did. Values that are not valid UTF-8, which Prometheus would reject,
// have their bad bytes replaced by U+FFFD.
func (v *vec) create(values []string) metric {
	vals := make([]string, len(values))
	for i, s := range values {
		// A copy, so the child does not pin a larger string the value
		// may be a slice of.
		vals[i] = strings.Clone(strings.ToValidUTF8(s, "\uFFFD"))
	}
	key := string(appendKey(nil, vals))

	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.cur.Load()
	if c, ok := old.byKey[key]; ok {
		return c.m
	}
	c := &child{values: vals, labels: formatLabels(v.labels, vals), m: v.newMetric()}
	next := &children{byKey: make(map[string]*child, len(old.byKey)+1)}
	maps.Copy(next.byKey, old.byKey)
	next.byKey[key] = c
	i, _ := slices.BinarySearchFunc(old.sorted, vals, func(c *child, vals []string) int {
		return slices.Compare(c.values, vals)
	})
	next.sorted = slices.Insert(slices.Clone(old.sorted), i, c)
	v.cur.Store(next)
	return c.m
}

func appendKey(b []byte, values []string) []byte {
	for i, s := range values {
		if i > 0 {
			b = append(b, keySep)
		}
		b = append(b, s...)
	}
	return b
}

func (v *vec) appendSamples(b []byte, name string) []byte {
	for _, c := range v.cur.Load().sorted {
		b = c.m.appendTo(b, name, c.labels)
	}
	return b
}

func formatLabels(labels, values []string) string {
	var b []byte
	for i, l := range labels {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, l...)
		b = append(b, `="`...)
		b = append(b, labelEscaper.Replace(values[i])...)
		b = append(b, '"')
	}
	return string(b)
}
