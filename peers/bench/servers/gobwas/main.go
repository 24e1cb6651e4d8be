// Command gobwas is the benchmark server for github.com/gobwas/ws
// (peers/bench/README.md), written as the library's README does: a
// goroutine per connection with the wsutil helpers, and a frame compiled
// once for a broadcast. It does not compress: wsflate leaves the
// per-connection deflate state of context takeover to the application.
package main

import (
	"log"
	"net"
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func main() {
	flags := benchsrv.ParseFlags()
	if flags.Compress {
		log.Fatal("gobwas server: -compress is not implemented")
	}
	var hub benchsrv.Hub[net.Conn]
	serve := func(handle func(r *http.Request, c net.Conn)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// The client sends nothing before the handshake's answer, so the
			// returned buffers hold nothing and can be dropped.
			c, _, _, err := ws.UpgradeHTTP(r, w)
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(r, c)
			}()
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", serve(func(r *http.Request, c net.Conn) {
		for {
			p, op, err := wsutil.ReadClientData(c)
			if err != nil || wsutil.WriteServerMessage(c, op, p) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/idle", serve(func(r *http.Request, c net.Conn) {
		for {
			if _, _, err := wsutil.ReadClientData(c); err != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/broadcast", serve(func(r *http.Request, c net.Conn) {
		if !benchsrv.IsPublisher(r) {
			hub.Add(c)
			defer hub.Remove(c)
			wsutil.ReadClientData(c) // until the subscriber leaves
			return
		}
		var subs []net.Conn
		for {
			p, _, err := wsutil.ReadClientData(c)
			if err != nil {
				return
			}
			frame := ws.MustCompileFrame(ws.NewBinaryFrame(p))
			subs = hub.Snapshot(subs[:0])
			for _, s := range subs {
				s.Write(frame) // net.Conn writes are whole and safe for concurrent use
			}
		}
	}))
	benchsrv.Run(flags, mux)
}
