// Command coder is the benchmark server for github.com/coder/websocket
// (peers/bench/README.md). The library has no prepared messages, so a
// broadcast writes each subscriber in turn.
package main

import (
	"net/http"

	"github.com/coder/websocket"
	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
)

func main() {
	flags := benchsrv.ParseFlags()
	opts := &websocket.AcceptOptions{}
	if flags.Compress {
		opts.CompressionMode = websocket.CompressionContextTakeover
	}
	var hub benchsrv.Hub[*websocket.Conn]
	serve := func(handle func(r *http.Request, c *websocket.Conn)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			defer c.CloseNow()
			handle(r, c)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", serve(func(r *http.Request, c *websocket.Conn) {
		c.SetReadLimit(benchsrv.MaxMessage)
		for {
			typ, p, err := c.Read(r.Context())
			if err != nil || c.Write(r.Context(), typ, p) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/idle", serve(func(r *http.Request, c *websocket.Conn) {
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/broadcast", serve(func(r *http.Request, c *websocket.Conn) {
		if !benchsrv.IsPublisher(r) {
			hub.Add(c)
			defer hub.Remove(c)
			c.Read(r.Context()) // until the subscriber leaves
			return
		}
		var subs []*websocket.Conn
		for {
			_, p, err := c.Read(r.Context())
			if err != nil {
				return
			}
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.Write(r.Context(), websocket.MessageBinary, p)
			}
		}
	}))
	benchsrv.Run(flags, mux)
}
