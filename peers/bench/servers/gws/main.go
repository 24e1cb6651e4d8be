// Command gws is the benchmark server for github.com/lxzan/gws
// (peers/bench/README.md). As in the library's README, each connection's
// ReadLoop runs in a goroutine of its own and the handler returns.
package main

import (
	"bytes"
	"net/http"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/lxzan/gws"
)

type echo struct{ gws.BuiltinEventHandler }

func (echo) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	c.WriteMessage(m.Opcode, m.Bytes())
}

type idle struct{ gws.BuiltinEventHandler }

func (idle) OnMessage(c *gws.Conn, m *gws.Message) { m.Close() }

type subscriber struct {
	idle
	hub *benchsrv.Hub[*gws.Conn]
}

func (s subscriber) OnOpen(c *gws.Conn)             { s.hub.Add(c) }
func (s subscriber) OnClose(c *gws.Conn, err error) { s.hub.Remove(c) }

type publisher struct {
	gws.BuiltinEventHandler
	hub *benchsrv.Hub[*gws.Conn]
}

func (p publisher) OnMessage(c *gws.Conn, m *gws.Message) {
	b := gws.NewBroadcaster(m.Opcode, bytes.Clone(m.Bytes())) // it keeps the payload
	m.Close()
	for _, s := range p.hub.Snapshot(nil) {
		b.Broadcast(s)
	}
	b.Close()
}

func main() {
	flags := benchsrv.ParseFlags()
	serve := func(handler gws.Event) http.HandlerFunc {
		opts := &gws.ServerOption{ReadMaxPayloadSize: benchsrv.MaxMessage}
		opts.PermessageDeflate = gws.PermessageDeflate{Enabled: flags.Compress, ServerContextTakeover: true, ClientContextTakeover: true}
		upgrader := gws.NewUpgrader(handler, opts)
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := upgrader.Upgrade(w, r)
			if err == nil {
				go c.ReadLoop()
			}
		}
	}
	hub := &benchsrv.Hub[*gws.Conn]{}
	mux := http.NewServeMux()
	mux.Handle("/echo", serve(echo{}))
	mux.Handle("/idle", serve(idle{}))
	pub, sub := serve(publisher{hub: hub}), serve(subscriber{hub: hub})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		if benchsrv.IsPublisher(r) {
			pub(w, r)
		} else {
			sub(w, r)
		}
	})
	benchsrv.Run(flags, mux)
}
