package redis_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
)

// counter is a Handler that counts publications.
type counter struct {
	n    atomic.Int64
	done chan struct{}
	want int64
}

func (c *counter) HandlePublication(*broker.Publication) {
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}
func (c *counter) HandleJoin(string, *broker.ClientInfo)  {}
func (c *counter) HandleLeave(string, *broker.ClientInfo) {}
func (c *counter) HandleControl([]byte)                   {}
func (c *counter) HandleConnection(bool)                  {}

func startBench(b *testing.B, h broker.Handler) *redis.Broker {
	b.Helper()
	srv := testredis.Start(b, testredis.Options{})
	br, err := redis.New(redis.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(context.Background(), h); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close(context.Background()) })
	return br
}

// BenchmarkPublish: Publish with history from 64 goroutines over 1,024
// channels, nobody subscribed.
func BenchmarkPublish(b *testing.B) {
	br := startBench(b, &counter{})
	data := []byte(`{"text":"hello, world","n":42}`)
	info := &broker.ClientInfo{Client: "c42", User: "u42"}
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: time.Minute}
	var seq atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			ch := "bench-" + strconv.Itoa(int(seq.Add(1)%1024))
			if _, err := br.Publish(ctx, ch, data, info, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
}

// BenchmarkDelivery: publications of one channel from one publisher to the
// Handler of the same node, through the server: what a subscribed node
// pays per publication.
func BenchmarkDelivery(b *testing.B) {
	c := &counter{done: make(chan struct{}), want: int64(b.N)}
	br := startBench(b, c)
	ctx := context.Background()
	if err := br.Subscribe(ctx, "deliver"); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"text":"hello, world","n":42}`)
	opts := broker.PublishOptions{HistorySize: 100}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := br.Publish(ctx, "deliver", data, nil, opts); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", c.n.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
