// Package metrics is a small Prometheus metrics registry for the gateway:
// counters, gauges and histograms, with or without labels, written in the
// Prometheus text exposition format 0.0.4.
//
// Metrics are created once, at setup, and their handles kept. After that
// Inc, Add, Set and Observe are lock-free (sync/atomic) and do not allocate,
// and neither does With for a label set it has already seen, so the hot path
// can afford them. Registering an invalid or duplicate name panics: it is a
// programming error, and the first run finds it.
package metrics

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Registry holds a set of metrics and writes them for a scrape. Its methods
// are safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	families []*family         // sorted by name; copied on write, so a scrape can keep a snapshot
	taken    map[string]string // every sample name in use → the family exposing it
}

// family is one metric name with its HELP and TYPE, and what produces its
// samples: a single metric or a vector of labelled children.
type family struct {
	name string
	help string // already escaped for the HELP line
	typ  string
	s    samples
}

// samples appends a family's sample lines to b.
type samples interface {
	appendSamples(b []byte, name string) []byte
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{taken: make(map[string]string)}
}

// Counter registers and returns a counter. It panics if name is not a valid
// Prometheus metric name or is already taken.
func (r *Registry) Counter(name, help string) *Counter {
	c := new(Counter)
	r.register(name, help, "counter", one{c}, nil)
	return c
}

// Gauge registers and returns a gauge. It panics like Counter.
func (r *Registry) Gauge(name, help string) *Gauge {
	g := new(Gauge)
	r.register(name, help, "gauge", one{g}, nil)
	return g
}

// GaugeFunc registers a gauge whose value is f's result, called at each
// scrape (outside the registry's lock, so f may be slow or use the
// registry). f must be safe to call from any goroutine. It panics like
// Counter, or if f is nil.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	if f == nil {
		panic("metrics: GaugeFunc " + name + " with a nil function")
	}
	r.register(name, help, "gauge", one{gaugeFunc(f)}, nil)
}

// Histogram registers and returns a histogram with the given bucket upper
// bounds, which must be strictly increasing; nil or empty means
// LatencyBuckets, and the +Inf bucket is always added. It panics like
// Counter, or on bad buckets.
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	b := newBounds(buckets)
	h := newHistogram(b)
	r.register(name, help, "histogram", one{h}, nil)
	return h
}

// CounterVec registers a family of counters distinguished by the values of
// the given labels. It panics like Counter, or if a label name is invalid,
// reserved (starts with "__") or repeated.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	v := new(CounterVec)
	v.v.init(labels, func() metric { return new(Counter) })
	r.register(name, help, "counter", &v.v, labels)
	return v
}

// GaugeVec registers a family of gauges distinguished by the values of the
// given labels. It panics like CounterVec.
func (r *Registry) GaugeVec(name, help string, labels ...string) *GaugeVec {
	v := new(GaugeVec)
	v.v.init(labels, func() metric { return new(Gauge) })
	r.register(name, help, "gauge", &v.v, labels)
	return v
}

// HistogramVec registers a family of histograms, all with the same buckets
// (as for Histogram), distinguished by the values of the given labels,
// which may not include "le". It panics like CounterVec or Histogram.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	b := newBounds(buckets)
	v := new(HistogramVec)
	v.v.init(labels, func() metric { return newHistogram(b) })
	r.register(name, help, "histogram", &v.v, labels)
	return v
}

func (r *Registry) register(name, help, typ string, s samples, labels []string) {
	if !validName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for i, l := range labels {
		switch {
		case !validLabelName(l):
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		case l == "le" && typ == "histogram":
			panic(fmt.Sprintf("metrics: %s: label name \"le\" is reserved for histogram buckets", name))
		case slices.Contains(labels[:i], l):
			panic(fmt.Sprintf("metrics: %s: label %q repeated", name, l))
		}
	}
	// A histogram's samples have names of their own, and the text format
	// cannot tell them apart from another family's: foo_count the counter
	// would collide with the histogram foo.
	names := []string{name}
	if typ == "histogram" {
		names = append(names, name+"_bucket", name+"_sum", name+"_count")
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if owner, ok := r.taken[n]; ok {
			panic(fmt.Sprintf("metrics: %s clashes with %s, already registered", name, owner))
		}
	}
	for _, n := range names {
		r.taken[n] = name
	}
	f := &family{name: name, help: helpEscaper.Replace(help), typ: typ, s: s}
	i, _ := slices.BinarySearchFunc(r.families, name, func(f *family, name string) int {
		return strings.Compare(f.name, name)
	})
	r.families = slices.Insert(slices.Clone(r.families), i, f)
}

// validName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c == '_' || c == ':' || isLetter(c) || i > 0 && isDigit(c)) {
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* without
// the "__" prefix Prometheus keeps for itself.
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c == '_' || isLetter(c) || i > 0 && isDigit(c)) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
