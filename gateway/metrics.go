package gateway

import (
	"net/http"
	"runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// serverMetrics are the gateway's Prometheus metrics, served at /metrics
// by client_golang: its Go and process collectors, and content
// negotiation (text 0.0.4, OpenMetrics, gzip) through promhttp.
type serverMetrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	connections   prometheus.Gauge
	subscriptions prometheus.Gauge
	queued        prometheus.Gauge
	queuedBytes   prometheus.Gauge
	messagesIn    prometheus.Counter
	messagesOut   prometheus.Counter
	bytesIn       prometheus.Counter
	bytesOut      prometheus.Counter
	publications  prometheus.Counter
	handshake     prometheus.Histogram
	drops         *counterFamily
	disconnects   *counterFamily
	limitHits     *counterFamily
	apiRequests   *counterFamily
	recovered     prometheus.Counter
	gaps          prometheus.Counter
	duplicates    prometheus.Counter
	presencePush  *counterFamily
	// fallbackUnknown counts fallback POSTs for sessions the node that
	// should hold them does not have: ended ones, and made-up ids.
	fallbackUnknown prometheus.Counter
}

// Reasons a connection ended, the label of duplex_disconnects_total.
const (
	reasonClient        = "client"         // the client closed
	reasonNetwork       = "network"        // the connection broke
	reasonNoPong        = "no_pong"        // keepalive failed
	reasonProtocol      = "protocol_error" // a WebSocket protocol violation
	reasonMessageSize   = "message_size"   // a message over the limit
	reasonBadRequest    = "bad_request"
	reasonUnauthorized  = "unauthorized"
	reasonTokenExpired  = "token_expired"
	reasonConnectTime   = "connect_timeout"
	reasonSlowConsumer  = "slow_consumer"
	reasonMessageRate   = "message_rate"
	reasonConnLimit     = "connection_limit"
	reasonServer        = "server_disconnect" // the backend API
	reasonShutdown      = "shutdown"
	reasonNoSubprotocol = "subprotocol"
	reasonServerError   = "server_error" // the server could not go on (4000)
)

// Limits hit, the label of duplex_limit_hits_total.
const (
	limitConnections        = "connections"
	limitConnectionsPerIP   = "connections_per_ip"
	limitConnectionsPerUser = "connections_per_user"
	limitHandshakeRate      = "handshake_rate"
	limitMessageRate        = "message_rate"
	limitMessageSize        = "message_size"
	limitChannels           = "channels"
	limitStreams            = "streams"
	limitReplySize          = "reply_size" // a history or recovery reply cut to the reply budget
	limitMembers            = "presence_members"
	limitClientEvents       = "client_events"        // Pusher client events over PusherApp.ClientEventRate
	limitWebhookQueue       = "pusher_webhook_queue" // Pusher webhook events dropped, their app's queue full
	limitFallbackSendRate   = "fallback_send_rate"
)

// The label values each family is made with, so that every series exists,
// at 0, from the first scrape: rate() and increase() then see the first
// event, and a dashboard shows 0 rather than no data.
var (
	disconnectReasons = []string{
		reasonClient, reasonNetwork, reasonNoPong, reasonProtocol, reasonMessageSize,
		reasonBadRequest, reasonUnauthorized, reasonTokenExpired, reasonConnectTime,
		reasonSlowConsumer, reasonMessageRate, reasonReadRate, reasonFragments,
		reasonMessageTimeout, reasonConnLimit, reasonServer, reasonShutdown,
		reasonNoSubprotocol, reasonServerError,
	}
	limitNames = []string{
		limitConnections, limitConnectionsPerIP, limitConnectionsPerUser, limitHandshakeRate,
		limitMessageRate, limitMessageSize, limitReadRate, limitFragments, limitMessageTimeout,
		limitChannels, limitStreams, limitReplySize, limitPendingConnections,
		limitPendingConnectionsPerIP, limitAPIBrowser, limitMembers, limitClientEvents,
		limitWebhookQueue, limitFallbackSendRate,
	}
	slowPolicies   = []string{string(SlowDisconnect), string(SlowDropOldest), string(SlowLatest)}
	apiMethodNames = []string{
		"publish", "broadcast", "presence", "presence_stats", "history",
		"disconnect", "unsubscribe", "channels",
	}
	presenceKinds = []string{"join", "leave", "count"}
)

// latencyBuckets are the bucket bounds, in seconds, of
// duplex_handshake_seconds: half a millisecond to five seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

func newServerMetrics() *serverMetrics {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Documented before the Go collector took over; go_goroutines now
	// comes from it.
	runtimeGauge(r, "go_heap_objects_bytes", "Bytes of live and not yet swept heap objects.", "/memory/classes/heap/objects:bytes")
	runtimeGauge(r, "go_stack_bytes", "Bytes of goroutine stacks.", "/memory/classes/heap/stacks:bytes")
	runtimeGauge(r, "go_memory_total_bytes", "Bytes of memory the Go runtime has mapped.", "/memory/classes/total:bytes")

	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		r.MustRegister(g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		r.MustRegister(c)
		return c
	}
	family := func(name, help, label string, values []string) *counterFamily {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		r.MustRegister(v)
		f := &counterFamily{vec: v, children: make(map[string]prometheus.Counter, len(values))}
		for _, val := range values {
			f.children[val] = v.WithLabelValues(val)
		}
		return f
	}
	handshake := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "duplex_handshake_seconds", Help: "Time to complete a WebSocket handshake.", Buckets: latencyBuckets,
	})
	r.MustRegister(handshake)
	return &serverMetrics{
		registry: r,
		handler: promhttp.HandlerFor(r, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			// A scrape that fails to gather part of the metrics still
			// gets the rest, rather than nothing.
			ErrorHandling: promhttp.ContinueOnError,
		}),
		connections:     gauge("duplex_connections", "Open client connections."),
		subscriptions:   gauge("duplex_subscriptions", "Channel subscriptions of the open connections."),
		queued:          gauge("duplex_outbound_queue_messages", "Messages queued for connections and not yet written."),
		queuedBytes:     gauge("duplex_outbound_queue_bytes", "Bytes held for connections: queued, and in the batches being written."),
		messagesIn:      counter("duplex_messages_in_total", "Commands received from clients."),
		messagesOut:     counter("duplex_messages_out_total", "Replies and pushes written to clients."),
		bytesIn:         counter("duplex_bytes_in_total", "Bytes of WebSocket messages received from clients."),
		bytesOut:        counter("duplex_bytes_out_total", "Bytes of WebSocket messages written to clients."),
		publications:    counter("duplex_publications_total", "Publications accepted, from clients and the backend API."),
		handshake:       handshake,
		drops:           family("duplex_drops_total", "Publications not delivered to a slow client, by slow-consumer policy.", "policy", slowPolicies),
		disconnects:     family("duplex_disconnects_total", "Connections ended, by reason.", "reason", disconnectReasons),
		limitHits:       family("duplex_limit_hits_total", "Requests refused by a limit, by limit.", "limit", limitNames),
		apiRequests:     family("duplex_api_requests_total", "Backend API requests, by method.", "method", apiMethodNames),
		recovered:       counter("duplex_broker_recovered_total", "Publications the broker did not deliver that the node read from history and delivered."),
		gaps:            counter("duplex_broker_gaps_total", "Gap and reset pushes for publications that history no longer held."),
		duplicates:      counter("duplex_broker_duplicates_total", "Publications delivered by the broker twice and dropped."),
		presencePush:    family("duplex_presence_pushes_total", "Presence pushes queued for subscribers, by kind (join, leave, count).", "kind", presenceKinds),
		fallbackUnknown: counter("duplex_fallback_unknown_sessions_total", "Fallback POSTs for a session this node does not hold though its id names this node: an ended session or a made-up id (whether they reached it directly or over the broker)."),
	}
}

// gaugeFunc registers a gauge read at scrape time from f, which must be
// safe to call from any goroutine.
func (m *serverMetrics) gaugeFunc(name, help string, f func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// counterFamily is a counter family with one label whose children for the
// values known at start are made up front, so each series is exposed from
// the first scrape, and kept in a map that is never written again. With
// is a plain map lookup, without lock or allocation; CounterVec's
// WithLabelValues hashes the values and takes a read lock on every call,
// about five times slower (BenchmarkMetricsHotPath).
type counterFamily struct {
	vec      *prometheus.CounterVec
	children map[string]prometheus.Counter // read-only after newServerMetrics
}

// With returns the counter for the label value.
func (f *counterFamily) With(value string) prometheus.Counter {
	if c, ok := f.children[value]; ok {
		return c
	}
	return f.vec.WithLabelValues(value)
}

// runtimeGauge exports one runtime/metrics sample, read at scrape time.
func runtimeGauge(r *prometheus.Registry, name, help, sample string) {
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		s := []metrics.Sample{{Name: sample}}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(s[0].Value.Uint64())
	}))
}

// readValue reads a counter's or a gauge's value, as a scrape would (for
// Stats, which is not on a hot path: it allocates).
func readValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue() // nil-safe: 0 for another kind
}
