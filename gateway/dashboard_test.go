package gateway

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

var (
	// seriesRef is a metric name the dashboard's PromQL uses, with its
	// label matchers; every series of ours starts with one of these.
	seriesRef = regexp.MustCompile(`\b((?:duplex|go|process)_[a-zA-Z0-9_:]*)(\{[^}]*\})?`)
	// exactMatcher is label="value" inside a selector's braces.
	exactMatcher = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"`)
	// grouping is the label list of by (…) or without (…).
	grouping = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// dashboardQueries returns every PromQL query in the Grafana dashboard:
// panel targets' expr, at any depth, and query variables' definitions.
func dashboardQueries(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

// checkQuery reports what in the PromQL query q the scrape mfs does not
// have: a metric name (a histogram's or summary's _bucket, _sum and _count
// resolve to their family), an exact label="value" matcher (those on
// $variables aside), or a label to group by that none of the query's
// families has (instance and job, which Prometheus adds, aside).
func checkQuery(q string, mfs map[string]*dto.MetricFamily) []string {
	var problems []string
	labels := map[string]bool{"instance": true, "job": true}
	refs := 0
	for _, m := range seriesRef.FindAllStringSubmatchIndex(q, -1) {
		if strings.Count(q[:m[0]], `"`)%2 == 1 {
			continue // inside a string: a label value
		}
		refs++
		name := q[m[2]:m[3]]
		mf := mfs[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if f := mfs[base]; ok && mf == nil && f != nil &&
				(f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket") {
				mf = f
				if suffix == "_bucket" {
					labels["le"] = true
				}
			}
		}
		if mf == nil {
			problems = append(problems, fmt.Sprintf("%q: no series %s in /metrics", q, name))
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		if mf.GetType() == dto.MetricType_SUMMARY {
			labels["quantile"] = true
		}
		if m[4] < 0 {
			continue
		}
		for _, em := range exactMatcher.FindAllStringSubmatch(q[m[4]:m[5]], -1) {
			label, value := em[1], em[2]
			if strings.Contains(value, "$") {
				continue
			}
			if !hasLabel(mf, label, value) {
				problems = append(problems, fmt.Sprintf("%q: %s has no series with %s=%q", q, name, label, value))
			}
		}
	}
	if refs == 0 {
		problems = append(problems, fmt.Sprintf("%q uses no duplex_, go_ or process_ series", q))
	}
	for _, g := range grouping.FindAllStringSubmatch(q, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				problems = append(problems, fmt.Sprintf("%q: groups by %s, a label none of its series has", q, l))
			}
		}
	}
	return problems
}

// hasLabel reports whether a series of mf has label=value; a summary's
// quantile counts as a label, as Prometheus stores it.
func hasLabel(mf *dto.MetricFamily, label, value string) bool {
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				return true
			}
		}
		if label == "quantile" && m.GetSummary() != nil {
			want, err := strconv.ParseFloat(value, 64)
			if err == nil && slices.ContainsFunc(m.GetSummary().GetQuantile(), func(q *dto.Quantile) bool { return q.GetQuantile() == want }) {
				return true
			}
		}
	}
	return false
}

// TestGrafanaDashboard: every query of docs/grafana-dashboard.json uses
// series, label values and grouping labels that a scrape of a running
// gateway has, so no panel of it shows "no data" for a name that does not
// exist.
func TestGrafanaDashboard(t *testing.T) {
	ts := newServer(t, nil)
	connected(t, ts.url, "")
	_, body := scrape(t, ts.http.URL, "", "")
	mfs := parseText(t, body)

	queries := dashboardQueries(t, "../docs/grafana-dashboard.json")
	if len(queries) < 20 {
		t.Fatalf("the dashboard has %d queries; it changed shape", len(queries))
	}
	for _, q := range queries {
		for _, p := range checkQuery(q, mfs) {
			t.Error(p)
		}
	}

	// The check finds what is wrong.
	for _, bad := range []string{
		`rate(duplex_disconnect_total[5m])`,                     // a misspelt name
		`rate(duplex_disconnects_total{reason="slow"}[5m])`,     // a label value that does not exist
		`sum by (reasons) (rate(duplex_disconnects_total[5m]))`, // a label that does not exist
		`duplex_connections_bucket`,                             // not a histogram
		`up`,                                                    // none of ours
	} {
		if len(checkQuery(bad, mfs)) == 0 {
			t.Errorf("checkQuery finds nothing wrong with %s", bad)
		}
	}
}
