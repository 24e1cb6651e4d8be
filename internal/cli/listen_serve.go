package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// This file holds what duplex listen and duplex exec share as servers:
// listening with or without TLS, and serving handlers that own hijacked
// connections until the command stops.

// openListener listens on addr, with TLS when tlsFlags ask for it, and
// returns the listener and the URL scheme clients use, ws or wss. Lines
// about the certificate (the fingerprint of a self-signed one) are
// written to notes, for the caller to print after its own first line.
func openListener(ctx context.Context, addr string, tlsFlags *tlsServerFlags, notes io.Writer) (net.Listener, string, error) {
	cfg, err := tlsFlags.config(notes)
	if err != nil {
		return nil, "", err
	}
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	if cfg == nil {
		return ln, "ws", nil
	}
	// A WebSocket handshake over HTTP/2 (RFC 8441) is not served here.
	cfg.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, cfg), "wss", nil
}

// printListening prints the command's first line, which scripts and tests
// read the address from, and then the notes openListener wrote.
func printListening(w io.Writer, command, scheme string, ln net.Listener, notes *bytes.Buffer) {
	io.WriteString(w, "duplex "+command+" listening on "+scheme+"://"+ln.Addr().String()+"\n")
	w.Write(notes.Bytes())
}

// connHandler serves one request. stop ends when the server stops: the
// handler then closes its connection with StatusGoingAway and returns.
type connHandler func(stop context.Context, w http.ResponseWriter, r *http.Request)

// serveConns serves HTTP on ln with handler until ctx ends or ln fails;
// it closes ln. Then it refuses new requests with 503, ends the stop
// context of every handler, and returns once every handler has returned:
// net/http's Shutdown does not wait for hijacked connections, so the
// handlers are counted here. It returns the listener's error, or nil when
// ctx ended.
func serveConns(ctx context.Context, ln net.Listener, handler connHandler, logger *slog.Logger) error {
	stop, stopHandlers := context.WithCancel(context.Background())
	defer stopHandlers()
	var (
		mu       sync.Mutex
		closing  bool
		handlers sync.WaitGroup
	)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if closing {
				mu.Unlock()
				w.Header().Set("Connection", "close")
				http.Error(w, "server shutting down", http.StatusServiceUnavailable)
				return
			}
			handlers.Add(1)
			mu.Unlock()
			defer handlers.Done()
			handler(stop, w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second, // bounds slow handshakes (slowloris)
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-serveDone:
	}

	mu.Lock()
	closing = true
	mu.Unlock()
	stopHandlers()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if srv.Shutdown(shutdownCtx) != nil {
		srv.Close()
	}
	cancel()
	if err == nil {
		<-serveDone // http.ErrServerClosed, now that Shutdown has run
	}
	handlers.Wait()
	return err
}

// closeOnStop closes c with StatusGoingAway when stop ends. The returned
// release ends the watch, and waits for the close if it has begun; it
// reports whether the close happened.
func closeOnStop(stop context.Context, c *websocket.Conn) (release func() bool) {
	closed := make(chan struct{})
	unwatch := context.AfterFunc(stop, func() {
		defer close(closed)
		c.Close(websocket.StatusGoingAway, goingAway)
	})
	return func() bool {
		if unwatch() {
			return false
		}
		<-closed
		return true
	}
}
