package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testgateway"
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

// BenchmarkFlushDelay: what a node and Redis spend per publication with
// history that comes back to the node (every channel subscribed), with
// and without FlushDelay, at a few calls in flight. The figures are CPU
// time per publication of this process (the node, the benchmark's own
// goroutines included) and of redis-server, from /proc: compare them
// within one run.
func BenchmarkFlushDelay(b *testing.B) {
	for _, delay := range []time.Duration{-1, 20 * time.Microsecond, 100 * time.Microsecond} {
		for _, inFlight := range []int{16, 64, 512} {
			b.Run(fmt.Sprintf("delay=%v/inflight=%d", max(delay, 0), inFlight), func(b *testing.B) {
				benchPublishCPU(b, delay, inFlight, 1024, 100)
			})
		}
	}
}

// BenchmarkPublishFullHistory: as BenchmarkFlushDelay, at the default
// FlushDelay and 64 calls in flight, on 64 channels whose history of 10
// is full after their first publications, so that nearly every
// publication trims one: the steady state of a busy channel, where
// redis-µs/op shows what the publish script costs Redis.
func BenchmarkPublishFullHistory(b *testing.B) {
	benchPublishCPU(b, 0, 64, 64, 10)
}

// benchPublishCPU publishes b.N times with history of size over channels,
// all subscribed, from inFlight goroutines, and reports the node's and
// Redis's CPU per publication.
func benchPublishCPU(b *testing.B, delay time.Duration, inFlight, channels, size int) {
	c := &counter{done: make(chan struct{}), want: int64(b.N)}
	srv := testredis.Start(b, testredis.Options{})
	br, err := redis.New(redis.Options{Addrs: []string{srv.Addr()}, FlushDelay: delay})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := br.Start(ctx, c); err != nil {
		b.Fatal(err)
	}
	defer br.Close(ctx)
	for i := range channels {
		if err := br.Subscribe(ctx, "bench-"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(`{"text":"hello, world","n":42}`)
	info := &broker.ClientInfo{Client: "c42", User: "u42"}
	opts := broker.PublishOptions{HistorySize: size, HistoryTTL: time.Minute}
	cpu := func() (self, redis time.Duration) {
		s, err1 := testgateway.ReadProcStat(os.Getpid())
		r, err2 := testgateway.ReadProcStat(srv.PID())
		if err := errors.Join(err1, err2); err != nil {
			b.Fatal(err)
		}
		return s.CPU, r.CPU
	}
	var next atomic.Int64
	b.ResetTimer()
	self0, redis0 := cpu()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := br.Publish(ctx, "bench-"+strconv.Itoa(int(i%int64(channels))), data, info, opts); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", c.n.Load(), b.N)
	}
	self1, redis1 := cpu()
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "pubs/s")
	b.ReportMetric(float64((self1-self0).Microseconds())/n, "node-µs/op")
	b.ReportMetric(float64((redis1-redis0).Microseconds())/n, "redis-µs/op")
}
