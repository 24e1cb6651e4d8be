// Command duplex-handler is the benchmark server for Duplex written the way
// the README shows users (peers/bench/README.md): a handler that calls
// Accept, then Read and Write in a loop, in the handler's goroutine, for
// every endpoint. Its row beside "duplex" (which serves idle connections
// and subscribers with Await) shows what the serving mode is worth.
package main

import (
	"context"
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/duplexws/duplex/websocket"
)

func main() {
	flags := benchsrv.ParseFlags()
	opts := &websocket.AcceptOptions{ReadLimit: benchsrv.MaxMessage}
	if flags.Compress {
		opts.Compression.Mode = websocket.CompressionContextTakeover
	}
	var hub benchsrv.Hub[*websocket.Conn]
	ctx := context.Background()
	// loop reads every message of c and hands it to handle.
	loop := func(w http.ResponseWriter, r *http.Request, handle func(c *websocket.Conn, typ websocket.MessageType, msg []byte) error) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil || handle(c, typ, msg) != nil {
				return
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		loop(w, r, func(c *websocket.Conn, typ websocket.MessageType, msg []byte) error { return c.Write(ctx, typ, msg) })
	})
	mux.HandleFunc("/idle", func(w http.ResponseWriter, r *http.Request) {
		loop(w, r, func(*websocket.Conn, websocket.MessageType, []byte) error { return nil })
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		if !benchsrv.IsPublisher(r) {
			var self *websocket.Conn
			defer func() {
				if self != nil {
					hub.Remove(self)
				}
			}()
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			defer c.CloseNow()
			self = c
			hub.Add(c)
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}
		var subs []*websocket.Conn
		loop(w, r, func(_ *websocket.Conn, typ websocket.MessageType, msg []byte) error {
			pm, _ := websocket.NewPreparedMessage(typ, msg)
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.WritePrepared(ctx, pm)
			}
			return nil
		})
	})
	benchsrv.Run(flags, mux)
}
