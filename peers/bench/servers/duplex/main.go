// Command duplex is the benchmark server for Duplex (peers/bench/README.md).
package main

import (
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/duplexws/duplex/websocket"
)

func main() {
	flags := benchsrv.ParseFlags()
	opts := &websocket.AcceptOptions{}
	if flags.Compress {
		opts.Compression.Mode = websocket.CompressionContextTakeover
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
			pm, _ := websocket.NewPreparedMessage(websocket.MessageBinary, p)
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.WritePrepared(r.Context(), pm)
			}
		}
	}))
	benchsrv.Run(flags, mux)
}
