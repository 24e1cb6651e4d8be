// Command gorilla is the benchmark server for github.com/gorilla/websocket
// (peers/bench/README.md). Gorilla compresses only without context
// takeover, so -compress gets that.
package main

import (
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/gorilla/websocket"
)

func main() {
	flags := benchsrv.ParseFlags()
	upgrader := &websocket.Upgrader{EnableCompression: flags.Compress}
	var hub benchsrv.Hub[*websocket.Conn]
	serve := func(handle func(r *http.Request, c *websocket.Conn)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			handle(r, c)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", serve(func(r *http.Request, c *websocket.Conn) {
		for {
			typ, p, err := c.ReadMessage()
			if err != nil || c.WriteMessage(typ, p) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/idle", serve(func(r *http.Request, c *websocket.Conn) {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/broadcast", serve(func(r *http.Request, c *websocket.Conn) {
		if !benchsrv.IsPublisher(r) {
			hub.Add(c)
			defer hub.Remove(c)
			c.ReadMessage() // until the subscriber leaves
			return
		}
		var subs []*websocket.Conn
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			pm, _ := websocket.NewPreparedMessage(websocket.BinaryMessage, p)
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.WritePreparedMessage(pm) // only this goroutine writes to subscribers
			}
		}
	}))
	benchsrv.Run(flags, mux)
}
