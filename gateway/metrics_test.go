package gateway

import (
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs base+"/metrics" with the given Accept and Accept-Encoding
// (none when empty), without the transport's transparent gzip, and
// returns the response and its body, decompressed when it came gzipped.
func scrape(t testing.TB, base, accept, encoding string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// parseText parses text exposition format 0.0.4 with Prometheus's own
// parser, failing the test on any error.
func parseText(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(text)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, text)
	}
	return mfs
}

// documentedMetrics reads docs/gateway.md's "Metrics" section: the series
// names in backquotes, and the label values its "Disconnect reasons:" and
// "Limits:" sentences list.
func documentedMetrics(t testing.TB) (names, reasons, limits []string) {
	t.Helper()
	doc, err := os.ReadFile("../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Metrics\n")
	if !ok {
		t.Fatal(`docs/gateway.md has no "## Metrics" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	quoted := regexp.MustCompile("`([a-z_:]+)(?:\\{[a-z_,]*\\})?`")
	list := func(text string) []string {
		var out []string
		for _, m := range quoted.FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
		return out
	}
	before, rest, ok := strings.Cut(sec, "Disconnect reasons:")
	if !ok {
		t.Fatal(`docs/gateway.md "Metrics" lists no disconnect reasons`)
	}
	rs, ls, ok := strings.Cut(rest, "Limits:")
	if !ok {
		t.Fatal(`docs/gateway.md "Metrics" lists no limits`)
	}
	ls, _, _ = strings.Cut(ls, "\n\n")
	for _, n := range list(before) {
		if strings.HasPrefix(n, "duplex_") || strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
			names = append(names, n) // a series, not a config key
		}
	}
	return names, list(rs), list(ls)
}

// labelValues returns the values of label in family mf.
func labelValues(mf *dto.MetricFamily, label string) []string {
	var out []string
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

// TestMetricsExposition: /metrics, now served by client_golang, parses
// with Prometheus's parser and exposes every series and label value
// docs/gateway.md documents, and every duplex_ family it exposes is
// documented; the Go and process collectors are there; the handshake
// histogram keeps its buckets.
func TestMetricsExposition(t *testing.T) {
	ts := newServer(t, nil)
	connected(t, ts.url, "")
	resp, body := scrape(t, ts.http.URL, "", "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want text format 0.0.4", ct)
	}
	mfs := parseText(t, body)

	names, reasons, limits := documentedMetrics(t)
	if len(names) < 15 || len(reasons) < 15 || len(limits) < 10 {
		t.Fatalf("docs/gateway.md lists %d series, %d reasons, %d limits: the section changed shape", len(names), len(reasons), len(limits))
	}
	for _, n := range names {
		for _, suffix := range []string{"_count", "_sum", "_bucket"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && mfs[base].GetType() == dto.MetricType_HISTOGRAM {
				n = base // a histogram's sample, not a family
			}
		}
		if mfs[n] == nil {
			t.Errorf("documented series %s is not exposed", n)
		}
	}
	for n := range mfs {
		if strings.HasPrefix(n, "duplex_") && !slices.Contains(names, n) {
			t.Errorf("series %s is exposed but not documented in docs/gateway.md", n)
		}
	}
	check := func(family, label string, documented []string) {
		t.Helper()
		exposed := labelValues(mfs[family], label)
		for _, v := range documented {
			if !slices.Contains(exposed, v) {
				t.Errorf("%s{%s=%q} is documented but not exposed", family, label, v)
			}
		}
		for _, v := range exposed {
			if !slices.Contains(documented, v) {
				t.Errorf("%s{%s=%q} is exposed but not documented", family, label, v)
			}
		}
	}
	check("duplex_disconnects_total", "reason", reasons)
	check("duplex_limit_hits_total", "limit", limits)

	for _, n := range []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if mfs[n] == nil {
			t.Errorf("%s (Go and process collectors) is not exposed", n)
		}
	}

	h := mfs["duplex_handshake_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.GetMetric()) != 1 {
		t.Fatalf("duplex_handshake_seconds: %v", h)
	}
	var les []float64
	for _, b := range h.GetMetric()[0].GetHistogram().GetBucket() {
		les = append(les, b.GetUpperBound())
	}
	want := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, math.Inf(1)}
	if !slices.Equal(les, want) {
		t.Errorf("handshake buckets %v, want %v", les, want)
	}
	if n := h.GetMetric()[0].GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("handshake count %d after one connection, want 1", n)
	}
}

// TestMetricsNegotiation: a scraper that asks for OpenMetrics gets it,
// and one that accepts gzip gets the text compressed.
func TestMetricsNegotiation(t *testing.T) {
	ts := newServer(t, nil)
	resp, body := scrape(t, ts.http.URL, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("asked for OpenMetrics, got Content-Type %q", ct)
	}
	if !strings.HasSuffix(string(body), "# EOF\n") {
		t.Errorf("OpenMetrics exposition does not end with # EOF")
	}
	// OpenMetrics names a counter family without _total.
	if !strings.Contains(string(body), "# TYPE duplex_disconnects counter\n") {
		t.Errorf("OpenMetrics exposition has no counter family duplex_disconnects")
	}

	// Other methods than GET and HEAD are refused (the route is GET's).
	post, err := http.Post(ts.http.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed || post.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: %s, Allow %q; want 405, GET, HEAD", post.Status, post.Header.Get("Allow"))
	}

	resp, body = scrape(t, ts.http.URL, "", "gzip")
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("accepted gzip, got Content-Encoding %q", ce)
	}
	if mfs := parseText(t, body); mfs["duplex_connections"] == nil {
		t.Errorf("gzipped exposition has no duplex_connections")
	}
}

// hotPath is what the gateway does to its metrics per message, delivery
// and connection.
func hotPath(m *serverMetrics) {
	m.messagesIn.Inc()
	m.bytesIn.Add(123)
	m.messagesOut.Add(3)
	m.bytesOut.Add(456)
	m.publications.Inc()
	m.queued.Inc()
	m.queuedBytes.Add(456)
	m.queued.Dec()
	m.queuedBytes.Add(-456)
	m.drops.With(string(SlowDropOldest)).Inc()
	m.presencePush.With("join").Inc()
	m.limitHits.With(limitMessageRate).Inc()
	m.disconnects.With(reasonNetwork).Inc()
	m.apiRequests.With("publish").Inc()
	m.handshake.Observe(0.003)
	m.connections.Inc()
	m.connections.Dec()
}

// TestMetricsHotPathAllocs: counting messages, deliveries and connection
// ends allocates nothing, labelled families included.
func TestMetricsHotPathAllocs(t *testing.T) {
	m := newServerMetrics()
	if n := testing.AllocsPerRun(1000, func() { hotPath(m) }); n != 0 {
		t.Fatalf("the metrics hot path allocates %v times per run, want 0", n)
	}
	// Every label value the gateway uses was made up front, so none
	// falls through to CounterVec.WithLabelValues.
	for _, f := range []struct {
		f      *counterFamily
		values []string
	}{{m.disconnects, disconnectReasons}, {m.limitHits, limitNames}, {m.drops, slowPolicies}, {m.apiRequests, apiMethodNames}, {m.presencePush, presenceKinds}} {
		for _, v := range f.values {
			if n := testing.AllocsPerRun(100, func() { f.f.With(v).Inc() }); n != 0 {
				t.Errorf("With(%q) allocates %v times", v, n)
			}
		}
	}
}

// BenchmarkMetricsHotPath measures the per-message metric updates (run
// with -benchmem: 0 allocs/op), and, for comparison, what counterFamily
// saves over CounterVec.WithLabelValues.
func BenchmarkMetricsHotPath(b *testing.B) {
	m := newServerMetrics()
	b.Run("hotPath", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hotPath(m)
		}
	})
	b.Run("counterFamily.With", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.disconnects.With(reasonNetwork).Inc()
		}
	})
	b.Run("WithLabelValues", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.disconnects.vec.WithLabelValues(reasonNetwork).Inc()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				hotPath(m)
			}
		})
	})
}
