// Command duplex is the benchmark server for Duplex (peers/bench/README.md).
// Echo connections, busy all the time, read in their handler's goroutine,
// through Reader into a buffer each reuses.
// Idle connections and broadcast subscribers wait for their next message
// with Conn.Await, which holds no goroutine, and their handler returns, so
// net/http frees its state too.
package main

import (
	"bytes"
	"context"
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/duplexws/duplex/websocket"
)

// serve calls handle with each message of c until reading ends, then
// closes c and calls end.
func serve(c *websocket.Conn, handle func(websocket.MessageType, []byte) error, end func()) {
	var next func()
	next = func() {
		for {
			if ready, _ := c.Await(next); !ready {
				return // next runs when a message comes
			}
			typ, p, err := c.Read(context.Background())
			if err != nil || handle(typ, p) != nil {
				c.CloseNow()
				end()
				return
			}
		}
	}
	next()
}

func main() {
	flags := benchsrv.ParseFlags()
	opts := &websocket.AcceptOptions{}
	if flags.Compress {
		opts.Compression.Mode = websocket.CompressionContextTakeover
	}
	var hub benchsrv.Hub[*websocket.Conn]
	ctx := context.Background()
	accept := func(handle func(r *http.Request, c *websocket.Conn)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if c, err := websocket.Accept(w, r, opts); err == nil {
				handle(r, c)
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", accept(func(_ *http.Request, c *websocket.Conn) {
		defer c.CloseNow()
		c.SetReadLimit(benchsrv.MaxMessage)
		var msg bytes.Buffer // reused: reading through Reader allocates nothing
		for {
			typ, r, err := c.Reader(ctx)
			if err != nil {
				return
			}
			msg.Reset()
			if _, err := msg.ReadFrom(r); err != nil || c.Write(ctx, typ, msg.Bytes()) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/idle", accept(func(_ *http.Request, c *websocket.Conn) {
		serve(c, func(websocket.MessageType, []byte) error { return nil }, func() {})
	}))
	mux.HandleFunc("/broadcast", accept(func(r *http.Request, c *websocket.Conn) {
		if !benchsrv.IsPublisher(r) {
			hub.Add(c)
			serve(c, func(websocket.MessageType, []byte) error { return nil }, func() { hub.Remove(c) })
			return
		}
		var subs []*websocket.Conn
		serve(c, func(_ websocket.MessageType, p []byte) error {
			pm, _ := websocket.NewPreparedMessage(websocket.MessageBinary, p)
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.WritePrepared(ctx, pm)
			}
			return nil
		}, func() {})
	}))
	benchsrv.Run(flags, mux)
}
