package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// benchReport is the outcome of duplex bench, as --json writes it.
type benchReport struct {
	URL     string  `json:"url"`
	Seconds float64 `json:"seconds"` // how long the measurement lasted, connecting included

	Connections struct {
		Requested  int   `json:"requested"`
		Opened     int64 `json:"opened"`
		Failed     int64 `json:"failed"`      // dials and handshakes that failed
		NotStarted int64 `json:"not_started"` // when --duration ended before the ramp did
		PeakOpen   int64 `json:"peak_open"`
	} `json:"connections"`

	Messages struct {
		Sent       int64   `json:"sent"`
		Received   int64   `json:"received"`   // echoes, checked
		Unanswered int64   `json:"unanswered"` // sent, but no echo came
		PerSecond  float64 `json:"per_second"` // echoes
	} `json:"messages"`

	Bytes struct {
		Sent              int64   `json:"sent"` // payload bytes
		Received          int64   `json:"received"`
		ReceivedPerSecond float64 `json:"received_per_second"`
	} `json:"bytes"`

	LatencyNS struct {
		Count int64 `json:"count"`
		Mean  int64 `json:"mean"`
		P50   int64 `json:"p50"`
		P90   int64 `json:"p90"`
		P99   int64 `json:"p99"`
		P999  int64 `json:"p999"`
		Max   int64 `json:"max"`
	} `json:"latency_ns"`

	Errors []benchErrorKind `json:"errors"` // most frequent first

	histogram []histogramBar
	config    *benchConfig
}

// benchErrorKind counts the failures of one kind.
type benchErrorKind struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example"` // the first one's message
}

// report sums up the bench, once run has returned.
func (b *bench) report(elapsed time.Duration) *benchReport {
	r := &benchReport{URL: b.cfg.dialer.url.String(), Seconds: elapsed.Seconds(), config: b.cfg}
	r.Connections.Requested = b.cfg.connections
	r.Connections.Opened = b.opened.Load()
	r.Connections.Failed = b.failed.Load()
	r.Connections.NotStarted = int64(b.cfg.connections) - b.started.Load()
	r.Connections.PeakOpen = b.peakOpen.Load()
	r.Messages.Sent = b.sent.Load()
	r.Messages.Received = b.received.Load()
	r.Messages.Unanswered = r.Messages.Sent - r.Messages.Received
	r.Bytes.Sent = b.bytesSent.Load()
	r.Bytes.Received = b.bytesReceived.Load()
	if elapsed > 0 {
		r.Messages.PerSecond = float64(r.Messages.Received) / elapsed.Seconds()
		r.Bytes.ReceivedPerSecond = float64(r.Bytes.Received) / elapsed.Seconds()
	}
	l := &r.LatencyNS
	l.Count = b.latency.Count()
	l.Mean = int64(b.latency.Mean())
	l.P50 = int64(b.latency.Quantile(0.50))
	l.P90 = int64(b.latency.Quantile(0.90))
	l.P99 = int64(b.latency.Quantile(0.99))
	l.P999 = int64(b.latency.Quantile(0.999))
	l.Max = int64(b.latency.Max())
	r.histogram = b.latency.Bars(12)

	b.errMu.Lock()
	for kind, e := range b.errors {
		r.Errors = append(r.Errors, benchErrorKind{Kind: kind, Count: e.count, Example: e.example})
	}
	b.errMu.Unlock()
	slices.SortFunc(r.Errors, func(x, y benchErrorKind) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), strings.Compare(x.Kind, y.Kind))
	})
	if r.Errors == nil {
		r.Errors = []benchErrorKind{} // [] in JSON, not null
	}
	return r
}

func (r *benchReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText writes the report for people.
func (r *benchReport) writeText(w io.Writer) error {
	var b strings.Builder
	cfg := r.config
	typ := "binary"
	if cfg.text {
		typ = "text"
	}
	pace := "each on the echo of the last"
	if cfg.messageRate > 0 {
		pace = fmt.Sprintf("%g/s each", cfg.messageRate)
	}
	limit := ""
	if cfg.messages > 0 {
		limit = fmt.Sprintf(", %d per connection", cfg.messages)
	}
	fmt.Fprintf(&b, "duplex bench %s\n", r.URL)
	fmt.Fprintf(&b, "  %d connections, %d B %s messages, %s%s, for at most %v\n\n",
		cfg.connections, cfg.size, typ, pace, limit, cfg.duration)

	c := r.Connections
	fmt.Fprintf(&b, "connections  %d opened, %d failed", c.Opened, c.Failed)
	if c.NotStarted > 0 {
		fmt.Fprintf(&b, ", %d not started", c.NotStarted)
	}
	fmt.Fprintf(&b, "; at most %d open at once\n", c.PeakOpen)
	m := r.Messages
	fmt.Fprintf(&b, "messages     %d sent, %d echoed, %d unanswered\n", m.Sent, m.Received, m.Unanswered)
	fmt.Fprintf(&b, "throughput   %.1f messages/s, %s/s echoed, over %.2fs\n",
		m.PerSecond, formatBytes(r.Bytes.ReceivedPerSecond), r.Seconds)

	l := r.LatencyNS
	if l.Count == 0 {
		b.WriteString("latency      no echo\n")
	} else {
		d := func(ns int64) string { return formatDuration(time.Duration(ns)) }
		fmt.Fprintf(&b, "latency      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
			d(l.P50), d(l.P90), d(l.P99), d(l.P999), d(l.Max), d(l.Mean))
		writeBars(&b, r.histogram, l.Count)
	}

	if len(r.Errors) == 0 {
		b.WriteString("errors       none\n")
	} else {
		var total int64
		for _, e := range r.Errors {
			total += e.Count
		}
		fmt.Fprintf(&b, "errors       %d\n", total)
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %8d  %s  (e.g. %s)\n", e.Count, e.Kind, e.Example)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBars draws the histogram rows, the longest 40 characters wide.
func writeBars(b *strings.Builder, rows []histogramBar, total int64) {
	var most int64
	for _, r := range rows {
		most = max(most, r.count)
	}
	for _, r := range rows {
		bar := int((r.count*40 + most - 1) / most)
		line := fmt.Sprintf("  %9s %10d  %5.1f%%  %s",
			"< "+formatDuration(r.upTo), r.count, 100*float64(r.count)/float64(total), strings.Repeat("#", bar))
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}

// formatDuration rounds d to 3 significant digits.
func formatDuration(d time.Duration) string {
	unit := time.Duration(1)
	for x := d; x >= 1000; x /= 10 {
		unit *= 10
	}
	return d.Round(unit).String()
}

// formatBytes formats a byte count with a binary prefix.
func formatBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
