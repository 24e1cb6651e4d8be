package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkCommandBatch: one op is a message of 100 ping commands on one
// connection and their 100 replies; allocations are the client's and the
// server's together. It measures the command path: decoding, handling,
// encoding the replies, queueing and batching them.
func BenchmarkCommandBatch(b *testing.B) {
	srv, err := New(Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{AllowAnonymous: true},
		Limits:     Limits{MessageRate: -1}, // no command rate: the benchmark floods
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
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws",
		&websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)
	const n = 100
	var batch bytes.Buffer
	for i := range n {
		if i > 0 {
			batch.WriteByte('\n')
		}
		fmt.Fprintf(&batch, `{"id":%d,"method":"ping"}`, i+2)
	}
	roundTrip := func(msg []byte, want int) {
		if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < want; {
			_, data, err := conn.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += bytes.Count(data, []byte(`{"id":`))
		}
	}
	roundTrip([]byte(`{"id":1,"method":"connect"}`), 1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip(batch.Bytes(), n)
	}
}
