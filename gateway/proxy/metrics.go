package proxy

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results are the values of the result label of
// duplex_proxy_requests_total: how a request ended.
var Results = []string{"ok", "refused", "disconnect", "unavailable", "busy", "bad_reply"}

// Metrics counts the requests of every Proxy that shares it, by kind:
//
//	duplex_proxy_requests_total{proxy, result}
//	duplex_proxy_request_duration_seconds{proxy} (histogram)
//
// Every series exists from the start, at 0.
type Metrics struct {
	requests map[Kind]map[string]prometheus.Counter
	duration map[Kind]prometheus.Observer
}

// NewMetrics registers the proxies' series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duplex_proxy_requests_total",
		Help: "Requests to the app's backend by proxy (connect, refresh, subscribe, publish, sub_refresh, rpc) and result (ok, refused, disconnect, unavailable, busy, bad_reply).",
	}, []string{"proxy", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "duplex_proxy_request_duration_seconds",
		Help:    "How long requests to the app's backend took, retries included, by proxy.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"proxy"})
	for _, c := range []prometheus.Collector{requests, duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &Metrics{requests: map[Kind]map[string]prometheus.Counter{}, duration: map[Kind]prometheus.Observer{}}
	for _, k := range Kinds {
		m.requests[k] = map[string]prometheus.Counter{}
		for _, r := range Results {
			m.requests[k][r] = requests.WithLabelValues(string(k), r)
		}
		m.duration[k] = duration.WithLabelValues(string(k))
	}
	return m, nil
}

// observe counts a request of kind that ended with err after d.
func (m *Metrics) observe(kind Kind, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.requests[kind][result(err)].Inc()
	if !errors.Is(err, ErrBusy) {
		m.duration[kind].Observe(d.Seconds())
	}
}

// result is the result label of err.
func result(err error) string {
	var refused *Error
	var disconnect *Disconnect
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &refused):
		return "refused"
	case errors.As(err, &disconnect):
		return "disconnect"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrBadReply):
		return "bad_reply"
	default:
		return "unavailable"
	}
}
