package metrics

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// contentType is what Prometheus expects for text format 0.0.4.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// WriteTo writes every metric in the text exposition format 0.0.4: families
// sorted by name, each with its # HELP (omitted when help is empty) and
// # TYPE lines, and labelled children sorted by their label values. A
// labelled family with no children yet is left out. The text is built
// first and written with a single Write, so a slow reader holds up nothing
// else.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.appendText(nil))
	return int64(n), err
}

// Handler returns an HTTP handler serving WriteTo's text to GET and HEAD
// requests, for Prometheus to scrape.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		text := r.appendText(nil)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(text)))
		w.Write(text) // an error means the scraper went away: nothing to do
	})
}

func (r *Registry) appendText(b []byte) []byte {
	r.mu.Lock()
	families := r.families // never modified in place, see register
	r.mu.Unlock()
	for _, f := range families {
		mark := len(b)
		if f.help != "" {
			b = append(b, "# HELP "...)
			b = append(b, f.name...)
			b = append(b, ' ')
			b = append(b, f.help...)
			b = append(b, '\n')
		}
		b = append(b, "# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		header := len(b)
		b = f.s.appendSamples(b, f.name)
		if len(b) == header {
			b = b[:mark] // no samples: drop the header too, as the Go client does
		}
	}
	return b
}

// appendSeries appends a sample's name and labels and the space before its
// value: name+suffix{labels,le="le"}, with the braces only when needed.
func appendSeries(b []byte, name, suffix, labels, le string) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if labels != "" || le != "" {
		b = append(b, '{')
		b = append(b, labels...)
		if le != "" {
			if labels != "" {
				b = append(b, ',')
			}
			b = append(b, `le="`...)
			b = append(b, le...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

func sampleUint(b []byte, name, suffix, labels, le string, v uint64) []byte {
	b = appendSeries(b, name, suffix, labels, le)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

func sampleFloat(b []byte, name, suffix, labels, le string, v float64) []byte {
	b = appendSeries(b, name, suffix, labels, le)
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendFloat formats v as Prometheus reads it: whole numbers that a
// float64 holds exactly without an exponent (1000000, not 1e+06), others in
// the shortest form that round-trips, and +Inf, -Inf and NaN spelt so.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case v == math.Trunc(v) && math.Abs(v) <= 1<<53:
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
