package websocket

import (
	"context"
	"errors"
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
