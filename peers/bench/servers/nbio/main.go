// Command nbio is the benchmark server for github.com/lesismal/nbio
// (peers/bench/README.md): its event-driven engine, as in the library's
// README, where connections wait in the engine's epoll loops with no
// goroutine of their own and messages are handled by its pool of poller
// goroutines. nbio compresses only without context takeover.
package main

import (
	"log"
	"net"
	"net/http"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
)

func main() {
	flags := benchsrv.ParseFlags()
	ln := benchsrv.Listen(flags)

	newUpgrader := func(onMessage func(*websocket.Conn, websocket.MessageType, []byte)) *websocket.Upgrader {
		u := websocket.NewUpgrader()
		u.KeepaliveTime = 0 // idle connections stay
		u.MessageLengthLimit = benchsrv.MaxMessage
		u.EnableCompression(flags.Compress)
		u.OnMessage(onMessage)
		return u
	}
	serve := func(u *websocket.Upgrader) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, err := u.Upgrade(w, r, nil); err == nil {
				benchsrv.CountUpgraded()
			}
		}
	}
	echo := newUpgrader(func(c *websocket.Conn, mt websocket.MessageType, data []byte) { c.WriteMessage(mt, data) })
	idle := newUpgrader(func(*websocket.Conn, websocket.MessageType, []byte) {})
	hub := &benchsrv.Hub[*websocket.Conn]{}
	sub := newUpgrader(func(*websocket.Conn, websocket.MessageType, []byte) {})
	sub.OnOpen(hub.Add)
	sub.OnClose(func(c *websocket.Conn, _ error) { hub.Remove(c) })
	// nbio has no prepared message: WriteMessage frames the payload for
	// each subscriber and queues it on the connection when the socket
	// would block.
	pub := newUpgrader(func(_ *websocket.Conn, mt websocket.MessageType, data []byte) {
		for _, s := range hub.Snapshot(nil) {
			s.WriteMessage(mt, data)
		}
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/stats", benchsrv.StatsHandler(flags))
	mux.Handle("/echo", serve(echo))
	mux.Handle("/idle", serve(idle))
	pubH, subH := serve(pub), serve(sub)
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		if benchsrv.IsPublisher(r) {
			pubH(w, r)
		} else {
			subH(w, r)
		}
	})
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{ln.Addr().String()},
		Listen:                  func(string, string) (net.Listener, error) { return ln, nil },
		Handler:                 mux,
		ReleaseWebsocketPayload: true,
	})
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	benchsrv.WaitForSignal(flags)
	engine.Stop()
}
