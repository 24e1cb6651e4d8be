package metrics

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// goldenRegistry has a metric of every kind, labels and help text that
// need escaping, values that test number formatting, and a labelled
// family with no children, which is left out.
func goldenRegistry() *Registry {
	r := NewRegistry()
	r.Counter("dx_conns_total", "Connections accepted.").Add(3)
	g := r.Gauge("dx_conns_open", "Connections open.")
	g.Set(2)
	g.Add(0.5)
	r.Gauge("dx_big", "").Set(1e21)
	r.GaugeFunc("dx_uptime_seconds", "Seconds since start.", func() float64 { return 12 })
	h := r.Histogram("dx_handshake_seconds", "Handshake latency.", []float64{0.01, 0.1, 1})
	for _, v := range []float64{0.0078125, 0.0625, 0.5, 4} {
		h.Observe(v)
	}
	frames := r.CounterVec("dx_frames_total", "Frames, by direction and opcode.", "dir", "opcode")
	frames.With("out", "binary").Inc()
	frames.With("in", "text").Add(5)
	frames.With("in", "binary").Inc()
	r.GaugeVec("dx_peer_info", "Peers by \\agent\nand version.", "agent").With("a\"b\\c\nd").Set(math.Inf(-1))
	sizes := r.HistogramVec("dx_msg_bytes", "Message sizes.", []float64{1024, 65536, math.Inf(1)}, "route")
	sizes.With("/chat").Observe(100)
	sizes.With("/chat").Observe(1e6)
	r.CounterVec("dx_unused_total", "Never used.", "x")
	return r
}

const golden = `# TYPE dx_big gauge
dx_big 1e+21
# HELP dx_conns_open Connections open.
# TYPE dx_conns_open gauge
dx_conns_open 2.5
# HELP dx_conns_total Connections accepted.
# TYPE dx_conns_total counter
dx_conns_total 3
# HELP dx_frames_total Frames, by direction and opcode.
# TYPE dx_frames_total counter
dx_frames_total{dir="in",opcode="binary"} 1
dx_frames_total{dir="in",opcode="text"} 5
dx_frames_total{dir="out",opcode="binary"} 1
# HELP dx_handshake_seconds Handshake latency.
# TYPE dx_handshake_seconds histogram
dx_handshake_seconds_bucket{le="0.01"} 1
dx_handshake_seconds_bucket{le="0.1"} 2
dx_handshake_seconds_bucket{le="1"} 3
dx_handshake_seconds_bucket{le="+Inf"} 4
dx_handshake_seconds_sum 4.5703125
dx_handshake_seconds_count 4
# HELP dx_msg_bytes Message sizes.
# TYPE dx_msg_bytes histogram
dx_msg_bytes_bucket{route="/chat",le="1024"} 1
dx_msg_bytes_bucket{route="/chat",le="65536"} 1
dx_msg_bytes_bucket{route="/chat",le="+Inf"} 2
dx_msg_bytes_sum{route="/chat"} 1000100
dx_msg_bytes_count{route="/chat"} 2
# HELP dx_peer_info Peers by \\agent\nand version.
# TYPE dx_peer_info gauge
dx_peer_info{agent="a\"b\\c\nd"} -Inf
# HELP dx_uptime_seconds Seconds since start.
# TYPE dx_uptime_seconds gauge
dx_uptime_seconds 12
`

func TestWriteToGolden(t *testing.T) {
	var buf bytes.Buffer
	n, err := goldenRegistry().WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	if got := buf.String(); got != golden {
		t.Errorf("exposition differs\n got:\n%s\nwant:\n%s", got, golden)
	}
}

func TestWriteToEmpty(t *testing.T) {
	var buf bytes.Buffer
	if n, err := NewRegistry().WriteTo(&buf); n != 0 || err != nil || buf.Len() != 0 {
		t.Errorf("empty registry: WriteTo = %d, %v, %q", n, err, buf.String())
	}
}

func TestHandler(t *testing.T) {
	h := goldenRegistry().Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if body := rec.Body.String(); body != golden {
		t.Errorf("GET body differs:\n%s", body)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestAppendFloat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-42, "-42"},
		{1e6, "1000000"},
		{1 << 53, "9007199254740992"},
		{1 << 54, "1.8014398509481984e+16"},
		{1e21, "1e+21"},
		{0.5, "0.5"},
		{-2.25, "-2.25"},
		{0.0005, "0.0005"},
		{1e-7, "1e-07"},
		{0.1, "0.1"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	} {
		if got := string(appendFloat(nil, tc.v)); got != tc.want {
			t.Errorf("appendFloat(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// TestWithInvalidUTF8 checks that a value Prometheus would reject is
// repaired, and that values repairing to the same text share a child
// rather than showing up as two identical series.
func TestWithInvalidUTF8(t *testing.T) {
	r := NewRegistry()
	v := r.CounterVec("bad_total", "h", "v")
	v.With("a\xffb").Inc()
	v.With("a\xfeb").Inc()
	if v.With("a\uFFFDb").Value() != 2 {
		t.Errorf("invalid values did not share the repaired child")
	}
	var buf bytes.Buffer
	r.WriteTo(&buf)
	if want := "bad_total{v=\"a\uFFFDb\"} 2\n"; !strings.HasSuffix(buf.String(), want) {
		t.Errorf("got %q, want suffix %q", buf.String(), want)
	}
}
