package gateway

import (
	"runtime/metrics"

	dmetrics "github.com/duplexws/duplex/internal/metrics"
)

// serverMetrics are the gateway's Prometheus metrics, served at /metrics.
type serverMetrics struct {
	registry *dmetrics.Registry

	connections   *dmetrics.Gauge
	subscriptions *dmetrics.Gauge
	queued        *dmetrics.Gauge
	queuedBytes   *dmetrics.Gauge
	messagesIn    *dmetrics.Counter
	messagesOut   *dmetrics.Counter
	bytesIn       *dmetrics.Counter
	bytesOut      *dmetrics.Counter
	publications  *dmetrics.Counter
	handshake     *dmetrics.Histogram
	drops         *dmetrics.CounterVec
	disconnects   *dmetrics.CounterVec
	limitHits     *dmetrics.CounterVec
	apiRequests   *dmetrics.CounterVec
	recovered     *dmetrics.Counter
	gaps          *dmetrics.Counter
	duplicates    *dmetrics.Counter
	presencePush  *dmetrics.CounterVec
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
)

func newServerMetrics() *serverMetrics {
	r := dmetrics.NewRegistry()
	runtimeGauge(r, "go_goroutines", "Goroutines of the process.", "/sched/goroutines:goroutines")
	runtimeGauge(r, "go_heap_objects_bytes", "Bytes of live and not yet swept heap objects.", "/memory/classes/heap/objects:bytes")
	runtimeGauge(r, "go_stack_bytes", "Bytes of goroutine stacks.", "/memory/classes/heap/stacks:bytes")
	runtimeGauge(r, "go_memory_total_bytes", "Bytes of memory the Go runtime has mapped.", "/memory/classes/total:bytes")
	return &serverMetrics{
		registry:      r,
		connections:   r.Gauge("duplex_connections", "Open client connections."),
		subscriptions: r.Gauge("duplex_subscriptions", "Channel subscriptions of the open connections."),
		queued:        r.Gauge("duplex_outbound_queue_messages", "Messages queued for connections and not yet written."),
		queuedBytes:   r.Gauge("duplex_outbound_queue_bytes", "Bytes held for connections: queued, and in the batches being written."),
		messagesIn:    r.Counter("duplex_messages_in_total", "Commands received from clients."),
		messagesOut:   r.Counter("duplex_messages_out_total", "Replies and pushes written to clients."),
		bytesIn:       r.Counter("duplex_bytes_in_total", "Bytes of WebSocket messages received from clients."),
		bytesOut:      r.Counter("duplex_bytes_out_total", "Bytes of WebSocket messages written to clients."),
		publications:  r.Counter("duplex_publications_total", "Publications accepted, from clients and the backend API."),
		handshake:     r.Histogram("duplex_handshake_seconds", "Time to complete a WebSocket handshake.", dmetrics.LatencyBuckets),
		drops:         r.CounterVec("duplex_drops_total", "Publications not delivered to a slow client, by slow-consumer policy.", "policy"),
		disconnects:   r.CounterVec("duplex_disconnects_total", "Connections ended, by reason.", "reason"),
		limitHits:     r.CounterVec("duplex_limit_hits_total", "Requests refused by a limit, by limit.", "limit"),
		apiRequests:   r.CounterVec("duplex_api_requests_total", "Backend API requests, by method.", "method"),
		recovered:     r.Counter("duplex_broker_recovered_total", "Publications the broker did not deliver that the node read from history and delivered."),
		gaps:          r.Counter("duplex_broker_gaps_total", "Gap and reset pushes for publications that history no longer held."),
		duplicates:    r.Counter("duplex_broker_duplicates_total", "Publications delivered by the broker twice and dropped."),
		presencePush:  r.CounterVec("duplex_presence_pushes_total", "Presence pushes queued for subscribers, by kind (join, leave, count).", "kind"),
	}
}

// runtimeGauge exports one runtime/metrics sample, read at scrape time.
func runtimeGauge(r *dmetrics.Registry, name, help, sample string) {
	r.GaugeFunc(name, help, func() float64 {
		s := []metrics.Sample{{Name: sample}}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(s[0].Value.Uint64())
	})
}
