package websocket

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// A context stays watched between calls, so cancelling it interrupts a
// later call that passes it again without handing it over anew.
func TestWatchSameContextAcrossCalls(t *testing.T) {
	client, server := newPair(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		if err := client.Write(ctx, MessageText, []byte("m")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := server.Read(ctx); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	read := readAsync(ctx, server)
	time.Sleep(50 * time.Millisecond) // let the Read block
	cancel()
	r := waitResult(t, read, 2*time.Second, "Read")
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", r.err)
	}
}

// A watched context that ends while no call is running must not cut short
// the next call, which passes another context: the deadline it set is
// cleared when the watch moves on. Both directions.
func TestWatchEndedContextDoesNotLeak(t *testing.T) {
	for _, next := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"cancelable", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
	} {
		t.Run(next.name, func(t *testing.T) {
			client, server := newPair(t, nil, nil)
			first, cancelFirst := context.WithCancel(context.Background())
			if err := client.Write(first, MessageText, []byte("one")); err != nil {
				t.Fatal(err)
			}
			if _, _, err := server.Read(first); err != nil {
				t.Fatal(err)
			}
			cancelFirst() // ends while nothing runs: the watcher sets past deadlines
			time.Sleep(20 * time.Millisecond)

			ctx, cancel := next.ctx()
			defer cancel()
			read := readAsync(ctx, server)
			time.Sleep(50 * time.Millisecond) // the Read waits past the old deadline
			if err := client.Write(ctx, MessageText, []byte("two")); err != nil {
				t.Fatalf("Write after the old context ended: %v", err)
			}
			r := waitResult(t, read, 2*time.Second, "Read")
			if r.err != nil || string(r.msg) != "two" {
				t.Fatalf("Read after the old context ended = %q, %v", r.msg, r.err)
			}
			// Writes from the server side, whose watched write context ended too.
			if err := server.Write(first, MessageText, []byte("x")); !errors.Is(err, context.Canceled) {
				t.Fatalf("Write with the ended context = %v, want context.Canceled", err)
			}
			if err := server.Write(ctx, MessageText, []byte("three")); err != nil {
				t.Fatalf("server Write after an ended context: %v", err)
			}
			if _, msg, err := client.Read(ctx); err != nil || string(msg) != "three" {
				t.Fatalf("client Read = %q, %v", msg, err)
			}
		})
	}
}

// Watching a cancelable context costs no goroutine: a server of many
// idle connections, each read under its request's context, runs one
// goroutine per connection, not two.
func TestWatchStartsNoGoroutine(t *testing.T) {
	client, server := newPair(t, nil, nil)
	ctx := context.Background()
	if err := client.Write(ctx, MessageText, []byte("warm up")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.Read(ctx); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 5 {
		other, cancelOther := context.WithCancel(context.Background())
		if err := client.Write(other, MessageText, []byte("m")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := server.Read(cancelable); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		cancelOther()
	}
	// A context's end runs its AfterFunc in a goroutine of a moment; only
	// one that stays is a cost.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines after reads and writes under cancelable contexts, %d before", after, before)
	}
}

// Answering the peer's pings keeps the application's write context
// watched: its next Write under that context registers nothing anew.
func TestPongKeepsWriteWatch(t *testing.T) {
	client, server := newPair(t, nil, nil)
	drain := drainUntilError(client) // reads the server's messages and pongs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := server.Write(ctx, MessageText, []byte("watched")); err != nil {
		t.Fatal(err)
	}
	server.frameMu.lock(context.Background(), nil)
	gen := server.watches.Load().write.gen // moves only when a watch is retired
	server.frameMu.unlock()

	pinged := make(chan error, 1)
	go func() { pinged <- client.Ping(context.Background()) }()
	read := readAsync(context.Background(), server) // answers the ping
	if err := waitResult(t, pinged, 2*time.Second, "Ping"); err != nil {
		t.Fatal(err)
	}
	if err := server.Write(ctx, MessageText, []byte("again")); err != nil {
		t.Fatal(err)
	}
	server.frameMu.lock(context.Background(), nil)
	w := &server.watches.Load().write
	w.mu.Lock()
	kept := w.gen == gen && w.done == ctx.Done()
	w.mu.Unlock()
	server.frameMu.unlock()
	if !kept {
		t.Fatal("answering a ping retired the watch of the write context")
	}
	server.CloseNow()
	<-drain
	<-read
}
