package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkFanout: one op is a publication through the node (Server.Publish
// on a channel with history, so through the broker's delivery and the
// node's ordering) delivered to 100 WebSocket subscribers; allocations are
// the clients' and the server's together. It measures the delivery path:
// encoding once, queueing per subscriber, batching and writing. It uses
// only the exported API, so the same file measures any version of the
// gateway.
func BenchmarkFanout(b *testing.B) {
	const subscribers, window = 100, 64
	srv, err := New(Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{AllowAnonymous: true},
		Limits:     Limits{MessageRate: -1},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"

	received := make([]atomic.Int64, subscribers)
	var readers sync.WaitGroup
	conns := make([]*websocket.Conn, subscribers)
	for i := range conns {
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.CloseNow()
		conn.SetReadLimit(-1)
		conns[i] = conn
		for _, cmd := range []string{`{"id":1,"method":"connect"}`, `{"id":2,"method":"subscribe","channel":"feed:bench"}`} {
			if err := conn.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
				b.Fatal(err)
			}
			if _, _, err := conn.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					return
				}
				received[i].Add(int64(bytes.Count(data, []byte(`"push":"pub"`))))
			}
		}()
	}
	defer readers.Wait()
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	waitAll := func(n int64) {
		for i := range received {
			for received[i].Load() < n {
				if ctx.Err() != nil {
					b.Fatalf("subscriber %d has %d of %d publications", i, received[i].Load(), n)
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	data := json.RawMessage(fmt.Sprintf(`{"text":%q}`, strings.Repeat("x", 100)))
	b.ReportAllocs()
	b.ResetTimer()
	publishWindowed(b, srv, data, window, waitAll)
}

// publishWindowed publishes data to feed:bench once per iteration of b,
// keeping about window publications in flight (waitAll(n) waits until
// every subscriber has n), and returns how many it published once all are
// delivered.
func publishWindowed(b *testing.B, srv *Server, data json.RawMessage, window int64, waitAll func(int64)) int64 {
	var sent int64
	for b.Loop() {
		if _, err := srv.Publish(context.Background(), "feed:bench", data); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%window == 0 {
			waitAll(sent - window/2)
		}
	}
	waitAll(sent)
	return sent
}
