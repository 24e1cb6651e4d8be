package metrics_test

import (
	"os"

	"github.com/duplexws/duplex/internal/metrics"
)

func Example() {
	reg := metrics.NewRegistry()
	accepted := reg.Counter("gateway_connections_total", "WebSocket connections accepted.")
	open := reg.Gauge("gateway_connections_open", "WebSocket connections open.")
	frames := reg.CounterVec("gateway_frames_total", "Frames read, by opcode.", "opcode")
	handshake := reg.Histogram("gateway_handshake_seconds", "Time to complete the opening handshake.", []float64{0.01, 0.1})

	// Resolve labelled children once, outside the hot path.
	text, binary := frames.With("text"), frames.With("binary")

	accepted.Inc()
	open.Inc()
	handshake.Observe(0.003)
	text.Add(2)
	binary.Inc()

	// In a server: http.Handle("/metrics", reg.Handler())
	reg.WriteTo(os.Stdout)
	// Output:
	// # HELP gateway_connections_open WebSocket connections open.
	// # TYPE gateway_connections_open gauge
	// gateway_connections_open 1
	// # HELP gateway_connections_total WebSocket connections accepted.
	// # TYPE gateway_connections_total counter
	// gateway_connections_total 1
	// # HELP gateway_frames_total Frames read, by opcode.
	// # TYPE gateway_frames_total counter
	// gateway_frames_total{opcode="binary"} 1
	// gateway_frames_total{opcode="text"} 2
	// # HELP gateway_handshake_seconds Time to complete the opening handshake.
	// # TYPE gateway_handshake_seconds histogram
	// gateway_handshake_seconds_bucket{le="0.01"} 1
	// gateway_handshake_seconds_bucket{le="0.1"} 1
	// gateway_handshake_seconds_bucket{le="+Inf"} 1
	// gateway_handshake_seconds_sum 0.003
	// gateway_handshake_seconds_count 1
}
