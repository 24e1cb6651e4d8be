// Package cluster holds the multi-node tests of the gateway: three
// `duplex serve` processes on one broker (Redis, a Redis Cluster of three
// masters, NATS JetStream), each test counting what every client received
// while nodes are killed and the broker restarts or hangs. The binary is built
// once per run (or taken from DUPLEX_BIN); the brokers are real servers that
// internal/testredis and internal/testnats start on free loopback ports. The
// package has no code of its own: `go test ./internal/cluster` runs it, and
// `make cluster` runs the long forms (CLUSTER_FULL=1).
package cluster
