package websocket

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Close must see the peer's answer even when the goroutine that was
// reading stops before the answer arrives: it then reads for it itself
// instead of waiting out the close timeout.
func TestCloseWhileReaderQuits(t *testing.T) {
	type result struct {
		took time.Duration
		err  error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, &AcceptOptions{CloseTimeout: 3 * time.Second})
		if err != nil {
			return
		}
		defer c.CloseNow()
		readCtx, cancel := context.WithCancel(context.Background())
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			c.Read(readCtx)
		}()
		time.Sleep(50 * time.Millisecond)
		time.AfterFunc(50*time.Millisecond, cancel) // the reader gives up before the answer comes
		start := time.Now()
		err = c.Close(StatusGoingAway, "bye")
		<-readDone
		results <- result{time.Since(start), err}
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// Hold the answer back until the server's reader has quit.
	time.Sleep(300 * time.Millisecond)
	_, _, err = c.Read(ctx)
	if got := CloseStatus(err); got != StatusGoingAway {
		t.Fatalf("client read: %v, want close 1001", err)
	}
	r := <-results
	if r.err != nil {
		t.Fatalf("server Close: %v, want nil (the peer answered)", r.err)
	}
	if r.took > 2*time.Second {
		t.Fatalf("server Close took %v: it waited for the timeout instead of reading the answer", r.took)
	}
}
