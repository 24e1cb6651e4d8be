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
	Mode    string  `json:"mode"` // echo or subscribe
	URL     string  `json:"url"`
	Seconds float64 `json:"seconds"` // how long the measurement lasted: connecting included (echo), publishing (subscribe)

	Connections struct {
		Requested  int   `json:"requested"`
		Opened     int64 `json:"opened"`
		Failed     int64 `json:"failed"`      // dials and handshakes that failed
		NotStarted int64 `json:"not_started"` // when --duration ended before the ramp did
		PeakOpen   int64 `json:"peak_open"`
	} `json:"connections"`

	HTTP2        *benchHTTP2Report     `json:"http2,omitempty"`        // --http2
	Subscribe    *benchSubscribeReport `json:"subscribe,omitempty"`    // subscribe mode
	Publications *benchPublications    `json:"publications,omitempty"` // subscribe mode
	Deliveries   *benchDeliveries      `json:"deliveries,omitempty"`   // subscribe mode
	Messages     *benchMessages        `json:"messages,omitempty"`     // echo mode

	Bytes struct {
		Sent              int64   `json:"sent"` // payload bytes (subscribe: data published, once per channel)
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
	dataSize  int64 // of a publication, in subscribe mode
}

// benchMessages are the messages of echo mode.
type benchMessages struct {
	Sent       int64   `json:"sent"`
	Received   int64   `json:"received"`   // echoes, checked
	Unanswered int64   `json:"unanswered"` // sent, but no echo came
	PerSecond  float64 `json:"per_second"` // echoes
}

// benchSubscribeReport describes the subscriptions of subscribe mode.
type benchSubscribeReport struct {
	Channels       int     `json:"channels"`
	Subscribed     int64   `json:"subscribed"`      // connections subscribed to all their channels
	ConnectSeconds float64 `json:"connect_seconds"` // from the start until every connection had subscribed (or failed)
	APIURL         string  `json:"api_url"`
}

// benchPublications are the publications of subscribe mode, one per
// channel published to.
type benchPublications struct {
	Sent      int64   `json:"sent"`     // accepted by the API
	Failed    int64   `json:"failed"`   // refused, or their request failed
	Requests  int64   `json:"requests"` // API requests
	PerSecond float64 `json:"per_second"`
}

// benchDeliveries are the publications that reached subscribers.
type benchDeliveries struct {
	Expected  int64   `json:"expected"` // every publication to every subscriber of its channel
	Received  int64   `json:"received"`
	Lost      int64   `json:"lost"`
	PerSecond float64 `json:"per_second"`
}

// benchErrorKind counts the failures of one kind.
type benchErrorKind struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example"` // the first one's message
}

// report sums up the bench, once run has returned.
func (b *bench) report(elapsed time.Duration) *benchReport {
	r := &benchReport{Mode: "echo", URL: b.cfg.dialer.url.String(), Seconds: elapsed.Seconds(), config: b.cfg}
	r.Connections.Requested = b.cfg.connections
	r.Connections.Opened = b.opened.Load()
	r.Connections.Failed = b.failed.Load()
	r.Connections.NotStarted = int64(b.cfg.connections) - b.started.Load()
	r.Connections.PeakOpen = b.peakOpen.Load()
	if b.h2 != nil {
		r.HTTP2 = b.h2.report()
	}
	r.Bytes.Sent = b.bytesSent.Load()
	r.Bytes.Received = b.bytesReceived.Load()
	perSecond := func(n int64) float64 {
		if elapsed <= 0 {
			return 0
		}
		return float64(n) / elapsed.Seconds()
	}
	r.Bytes.ReceivedPerSecond = perSecond(r.Bytes.Received)
	if s := b.sub; s != nil {
		r.Mode = "subscribe"
		r.dataSize = s.dataSize()
		r.Subscribe = &benchSubscribeReport{
			Channels:       len(s.subscribers),
			Subscribed:     s.subscribed.Load(),
			ConnectSeconds: s.connectTime.Seconds(),
			APIURL:         s.cfg.api.base + "/api/",
		}
		r.Publications = &benchPublications{
			Sent:      s.accepted.Load(),
			Failed:    s.refused.Load(),
			Requests:  s.requests.Load(),
			PerSecond: perSecond(s.accepted.Load()),
		}
		d := &benchDeliveries{Expected: s.expected, Received: b.received.Load()}
		d.Lost = max(d.Expected-d.Received, 0)
		d.PerSecond = perSecond(d.Received)
		r.Deliveries = d
	} else {
		m := &benchMessages{Sent: b.sent.Load(), Received: b.received.Load()}
		m.Unanswered = m.Sent - m.Received
		m.PerSecond = perSecond(m.Received)
		r.Messages = m
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
	if r.Subscribe != nil {
		r.writeSubscribeHead(&b)
	} else {
		r.writeEchoHead(&b)
	}
	r.writeTail(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeEchoHead writes the lines of the report for echo mode.
func (r *benchReport) writeEchoHead(b *strings.Builder) {
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
	fmt.Fprintf(b, "duplex bench %s\n", r.URL)
	fmt.Fprintf(b, "  %d connections, %d B %s messages, %s%s, for at most %v\n\n",
		cfg.connections, cfg.size, typ, pace, limit, cfg.duration)

	c := r.Connections
	fmt.Fprintf(b, "connections  %d opened, %d failed", c.Opened, c.Failed)
	if c.NotStarted > 0 {
		fmt.Fprintf(b, ", %d not started", c.NotStarted)
	}
	fmt.Fprintf(b, "; at most %d open at once\n", c.PeakOpen)
	if r.HTTP2 != nil {
		r.HTTP2.writeText(b)
	}
	m := r.Messages
	fmt.Fprintf(b, "messages     %d sent, %d echoed, %d unanswered\n", m.Sent, m.Received, m.Unanswered)
	fmt.Fprintf(b, "throughput   %.1f messages/s, %s/s echoed, over %.2fs\n",
		m.PerSecond, formatBytes(r.Bytes.ReceivedPerSecond), r.Seconds)
}

// writeSubscribeHead writes the lines of the report for subscribe mode.
func (r *benchReport) writeSubscribeHead(b *strings.Builder) {
	sc := r.config.sub
	s := r.Subscribe
	fmt.Fprintf(b, "duplex bench --mode subscribe %s\n", r.URL)
	var where string
	switch {
	case len(sc.channels) == 1:
		where = "all on channel " + sc.channels[0]
	case len(sc.channels) > 1:
		where = fmt.Sprintf("all on %d channels (%s … %s)", len(sc.channels), sc.channels[0], sc.channels[len(sc.channels)-1])
	case sc.perConn == 1:
		where = fmt.Sprintf("each on a channel of its own (%s … %s)", sc.name(0), sc.name(s.Channels-1))
	default:
		where = fmt.Sprintf("each on %d channels of its own (%s … %s)", sc.perConn, sc.name(0), sc.name(s.Channels-1))
	}
	limit := ""
	if r.config.messages > 0 {
		limit = fmt.Sprintf(", %d times", r.config.messages)
	}
	fmt.Fprintf(b, "  %d connections, %s;\n", r.config.connections, where)
	fmt.Fprintf(b, "  %d B publications at %g/s on each channel%s, for at most %v, through %s\n\n",
		r.dataSize, sc.rate, limit, r.config.duration, s.APIURL)

	c := r.Connections
	fmt.Fprintf(b, "connections  %d opened, %d failed", c.Opened, c.Failed)
	if c.NotStarted > 0 {
		fmt.Fprintf(b, ", %d not started", c.NotStarted)
	}
	fmt.Fprintf(b, ", %d subscribed in %.2fs; at most %d open at once\n", s.Subscribed, s.ConnectSeconds, c.PeakOpen)
	if r.HTTP2 != nil {
		r.HTTP2.writeText(b)
	}
	p := r.Publications
	fmt.Fprintf(b, "publications %d published, %d failed, in %d API requests: %.1f/s\n", p.Sent, p.Failed, p.Requests, p.PerSecond)
	d := r.Deliveries
	fmt.Fprintf(b, "deliveries   %d received of %d expected, %d lost\n", d.Received, d.Expected, d.Lost)
	fmt.Fprintf(b, "throughput   %.1f deliveries/s, %s/s of data, over %.2fs\n",
		d.PerSecond, formatBytes(r.Bytes.ReceivedPerSecond), r.Seconds)
}

// writeTail writes the latency and the errors.
func (r *benchReport) writeTail(b *strings.Builder) {
	l := r.LatencyNS
	switch {
	case l.Count == 0 && r.Subscribe != nil:
		b.WriteString("latency      no delivery\n")
	case l.Count == 0:
		b.WriteString("latency      no echo\n")
	default:
		d := func(ns int64) string { return formatDuration(time.Duration(ns)) }
		fmt.Fprintf(b, "latency      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
			d(l.P50), d(l.P90), d(l.P99), d(l.P999), d(l.Max), d(l.Mean))
		writeBars(b, r.histogram, l.Count)
	}

	if len(r.Errors) == 0 {
		b.WriteString("errors       none\n")
	} else {
		var total int64
		for _, e := range r.Errors {
			total += e.Count
		}
		fmt.Fprintf(b, "errors       %d\n", total)
		for _, e := range r.Errors {
			fmt.Fprintf(b, "  %8d  %s  (e.g. %s)\n", e.Count, e.Kind, e.Example)
		}
	}
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
