package nats_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/gateway/brokertest"
	"github.com/duplexws/duplex/internal/testnats"
)

// benchBrokers starts n brokers of one prefix on a fresh server.
func benchBrokers(b *testing.B, n int) []*nats.Broker {
	s := testnats.Start(b, testnats.Options{})
	prefix := randomPrefix("bench")
	out := make([]*nats.Broker, n)
	for i := range out {
		out[i] = nats.New(testOptions(s, prefix))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := out[i].Start(ctx, brokertest.NewRecorder()); err != nil {
			b.Fatal(err)
		}
		cancel()
		br := out[i]
		b.Cleanup(func() { br.Close(context.Background()) })
	}
	return out
}

// BenchmarkPublish publishes with history from parallel goroutines spread
// over two brokers (two gateway nodes), to one channel or to a channel
// each.
func BenchmarkPublish(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "OneChannel"
		if !shared {
			name = "ChannelEach"
		}
		b.Run(name, func(b *testing.B) {
			brokers := benchBrokers(b, 2)
			opts := broker.PublishOptions{HistorySize: 100}
			var next atomic.Int64
			data := []byte(`{"text":"a message of some size, as a chat would have it"}`)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := next.Add(1)
				br := brokers[w%2]
				ch := "bench"
				if !shared {
					ch = fmt.Sprintf("bench-%d", w)
				}
				for pb.Next() {
					if _, err := br.Publish(context.Background(), ch, data, nil, opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkHistoryRecover reads what a reconnecting client missed: the
// newest few of a channel keeping 10,000 (none: the position only).
func BenchmarkHistoryRecover(b *testing.B) {
	br := benchBrokers(b, 1)[0]
	ctx := context.Background()
	opts := broker.PublishOptions{HistorySize: 10_000}
	var top broker.Position
	for i := range 3000 {
		var err error
		if top, err = br.Publish(ctx, "recover", fmt.Appendf(nil, `{"i":%d}`, i), nil, opts); err != nil {
			b.Fatal(err)
		}
	}
	for _, missed := range []uint64{0, 10, 100} {
		b.Run(fmt.Sprintf("Missed%d", missed), func(b *testing.B) {
			since := &broker.Position{Offset: top.Offset - missed, Epoch: top.Epoch}
			for b.Loop() {
				h, err := br.History(ctx, "recover", broker.HistoryOptions{Since: since, Limit: -1})
				if err != nil || len(h.Publications) != int(missed) {
					b.Fatalf("History: %d publications, %v", len(h.Publications), err)
				}
			}
		})
	}
}
