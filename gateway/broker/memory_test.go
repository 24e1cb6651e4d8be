package broker_test

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/brokertest"
)

func TestMemoryContract(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		return broker.NewMemory(nil)
	}, brokertest.Options{SingleNode: true})
}

// TestMemoryContractSweeping runs the contract with the sweeper running
// every millisecond, concurrently with everything the suite does: it must
// neither drop what is still alive nor block publishers and readers.
func TestMemoryContractSweeping(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		return broker.NewMemory(&broker.MemoryOptions{SweepInterval: time.Millisecond})
	}, brokertest.Options{SingleNode: true})
}

// TestMemoryPublishDeadlock pins down the lock orders that one publisher
// at a time must not deadlock against: a History reader of the same
// channel (a subscriber recovering while publications flow) and the
// sweeper. Publish holds the stream's lock while it looks up the
// subscription under the shard's lock; both others take the shard's lock,
// then the stream's.
func TestMemoryPublishDeadlock(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    *broker.MemoryOptions
		readers int
	}{
		{"History", nil, 1},
		{"Sweeper", &broker.MemoryOptions{SweepInterval: 50 * time.Microsecond}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := broker.NewMemory(c.opts)
			if err := m.Start(t.Context(), brokertest.NewRecorder()); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if err := m.Close(ctx); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			ctx := context.Background()
			const ch = "deadlock"
			if err := m.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var once sync.Once
			halt := func() { once.Do(func() { close(stop) }) }
			defer halt() // also when the test fails
			var wg sync.WaitGroup
			for range c.readers {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						m.History(ctx, ch, broker.HistoryOptions{Limit: -1})
						runtime.Gosched()
					}
				})
			}
			published := make(chan struct{})
			go func() {
				defer close(published)
				for i := range 20000 {
					m.Publish(ctx, ch, json.RawMessage(strconv.Itoa(i)), nil, broker.PublishOptions{HistorySize: 10})
				}
			}()
			select {
			case <-published:
			case <-time.After(5 * time.Second):
				t.Fatal("a single publisher did not finish 20000 publications in 5s: deadlocked")
			}
			halt()
			wg.Wait()
		})
	}
}

// TestMemoryMaxStreams: past MaxStreams a namespace starts no more streams,
// existing ones go on, other namespaces are not counted against it, reads
// count nothing, and an expired stream frees its place.
func TestMemoryMaxStreams(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := broker.NewMemory(&broker.MemoryOptions{Now: clock, SweepInterval: time.Hour})
	ctx := context.Background()
	if err := m.Start(ctx, brokertest.NewRecorder()); err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 1, MaxStreams: 3, StreamTTL: time.Minute}
	pub := func(channel string) error {
		_, err := m.Publish(ctx, channel, json.RawMessage(`1`), nil, opts)
		return err
	}
	for i := range 1000 {
		if _, err := m.History(ctx, "ns:read-"+strconv.Itoa(i), broker.HistoryOptions{Limit: -1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := pub("ns:" + strconv.Itoa(i)); err != nil {
			t.Fatalf("stream %d of 3: %v", i, err)
		}
	}
	if err := pub("ns:3"); err != broker.ErrStreamLimit {
		t.Fatalf("a fourth stream: %v, want ErrStreamLimit", err)
	}
	if err := pub("ns:0"); err != nil {
		t.Fatalf("an existing stream past the cap: %v", err)
	}
	if err := pub("other:0"); err != nil {
		t.Fatalf("another namespace: %v", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if err := pub("ns:3"); err != nil {
		t.Fatalf("after the streams expired: %v", err)
	}
}
