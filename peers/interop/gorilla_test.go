package interop

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

const gorillaModule = "github.com/gorilla/websocket"

const pingData = "duplex-interop-ping"

// TestGorilla runs gorilla/websocket against our server and our client.
// gorilla compresses only without context takeover.
func TestGorilla(t *testing.T) {
	recordVersion(t, "gorilla/websocket", moduleVersion(t, gorillaModule))
	certs := newTestCerts(t)

	t.Run("gorilla-client-to-our-server", func(t *testing.T) {
		srv := startOurServer(t, certs)
		testGoClient(t, srv, "gorilla", clientCaps{fragments: true, ping: true, noContextOnly: true}, dialGorilla(certs))
	})

	t.Run("our-client-to-gorilla-server", func(t *testing.T) {
		testOurClient(t, startGoPeerServer(t, certs, true, gorillaHandler))
	})
}

func gorillaType(kind string) int {
	if kind == kindBinary {
		return gorilla.BinaryMessage
	}
	return gorilla.TextMessage
}

func gorillaKind(typ int) string {
	if typ == gorilla.BinaryMessage {
		return kindBinary
	}
	return kindText
}

func gorillaClose(err error) (int, string, bool) {
	var ce *gorilla.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}

// writeGorilla writes a message, through NextWriter in pieces when
// fragments > 1: gorilla sends a frame each time its write buffer fills.
func writeGorilla(c *gorilla.Conn, kind string, b []byte, fragments int) error {
	if fragments <= 1 {
		return c.WriteMessage(gorillaType(kind), b)
	}
	w, err := c.NextWriter(gorillaType(kind))
	if err != nil {
		return err
	}
	return writePieces(w, b, fragments)
}

func dialGorilla(certs *testCerts) func(ctx context.Context, s session) (*goClient, error) {
	return func(ctx context.Context, s session) (*goClient, error) {
		d := gorilla.Dialer{
			Subprotocols:      s.Protocols,
			EnableCompression: s.Compress,
			TLSClientConfig:   certs.clientConfig(),
			HandshakeTimeout:  10 * time.Second,
		}
		c, resp, err := d.DialContext(ctx, s.URL, nil)
		if err != nil {
			return nil, err
		}
		c.SetReadLimit(readLimit)
		g := newGoClient()
		g.protocol, g.extensions = c.Subprotocol(), resp.Header.Get("Sec-WebSocket-Extensions")
		pongs := make(chan string, 1)
		c.SetPongHandler(func(data string) error {
			select {
			case pongs <- data:
			default:
			}
			return nil
		})
		g.send = func(ctx context.Context, kind string, b []byte, fragments int) error {
			deadline, _ := ctx.Deadline()
			c.SetWriteDeadline(deadline)
			return writeGorilla(c, kind, b, fragments)
		}
		g.ping = func(ctx context.Context) error {
			if err := c.WriteControl(gorilla.PingMessage, []byte(pingData), time.Now().Add(5*time.Second)); err != nil {
				return err
			}
			select {
			case data := <-pongs:
				if data != pingData {
					return errors.New("the pong carried " + data)
				}
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// gorilla has no closing handshake of its own: send the frame; the
		// reader sees the answer.
		g.startClose = func(code int, reason string) error {
			return c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(code, reason), time.Now().Add(5*time.Second))
		}
		g.closeNow = func() { c.Close() }
		go g.readLoop(func() (string, []byte, error) {
			typ, b, err := c.ReadMessage()
			return gorillaKind(typ), b, err
		}, gorillaClose)
		return g, nil
	}
}

// gorillaHandler serves the paths of js/ws_server.mjs with gorilla.
func gorillaHandler(deflate bool, gs *goPeerServer, closes *mailbox[closeEvent]) http.Handler {
	up := &gorilla.Upgrader{
		Subprotocols:      []string{"duplex.test"},
		EnableCompression: deflate,
		CheckOrigin:       func(*http.Request) bool { return true },
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !gs.enter() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer gs.leave()
		id := r.URL.Query().Get("id")
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer gs.track(func() { c.Close() })()
		defer c.Close()
		c.SetReadLimit(readLimit)
		var writeMu sync.Mutex // gorilla takes one writer at a time
		write := func(kind string, b []byte, fragments int) error {
			writeMu.Lock()
			defer writeMu.Unlock()
			return writeGorilla(c, kind, b, fragments)
		}
		readEnded := make(chan struct{})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(readEnded)

		switch r.URL.Path {
		case "/close":
			c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(4001, "bye"), time.Now().Add(5*time.Second))
		case "/ping":
			pongs := make(chan struct{}, 1)
			c.SetPongHandler(func(string) error {
				select {
				case pongs <- struct{}{}:
				default:
				}
				return nil
			})
			wg.Go(func() {
				for range 3 {
					c.WriteControl(gorilla.PingMessage, []byte(pingData), time.Now().Add(5*time.Second))
					select {
					case <-pongs:
					case <-readEnded:
						return
					case <-time.After(10 * time.Second):
						write(kindText, []byte("ping failed: no pong within 10s"), 1)
						return
					}
				}
				write(kindText, []byte("pings answered: 3"), 1)
			})
		case "/fragments":
			for _, kind := range kinds {
				if write(kind, payload(kind, fragmentedSize), fragmentCount) != nil {
					return
				}
			}
		}
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				code, reason, ok := gorillaClose(err)
				if !ok {
					code = -1
				}
				closes.put(id, closeEvent{code, reason})
				return
			}
			if write(gorillaKind(typ), b, 1) != nil {
				return
			}
		}
	})
}
