// Command duplex is the benchmark server for Duplex (peers/bench/README.md),
// written in the serving mode for scale: every connection is served with
// Conn.Serve, which holds no goroutine per connection (the epoll sets the
// process shares deliver each message), and its handler returns, so
// net/http frees its state too.
package main

import (
	"context"
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/duplexws/duplex/websocket"
)

// serve delivers c's messages to handle; end runs once reading has ended
// and c is closed.
func serve(c *websocket.Conn, handle func(websocket.MessageType, []byte), end func()) {
	if c.Serve(handle, func(error) { end() }) != nil {
		c.CloseNow()
		end()
	}
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
		c.SetReadLimit(benchsrv.MaxMessage)
		serve(c, func(typ websocket.MessageType, p []byte) {
			if c.Write(ctx, typ, p) != nil {
				c.CloseNow()
			}
		}, func() {})
	}))
	mux.HandleFunc("/idle", accept(func(_ *http.Request, c *websocket.Conn) {
		serve(c, func(websocket.MessageType, []byte) {}, func() {})
	}))
	mux.HandleFunc("/broadcast", accept(func(r *http.Request, c *websocket.Conn) {
		if !benchsrv.IsPublisher(r) {
			hub.Add(c)
			serve(c, func(websocket.MessageType, []byte) {}, func() { hub.Remove(c) })
			return
		}
		var subs []*websocket.Conn
		serve(c, func(_ websocket.MessageType, p []byte) {
			pm, _ := websocket.NewPreparedMessage(websocket.MessageBinary, p)
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.WritePrepared(ctx, pm)
			}
		}, func() {})
	}))
	benchsrv.Run(flags, mux)
}
