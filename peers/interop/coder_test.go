package interop

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
)

const coderModule = "github.com/coder/websocket"

// TestCoder runs coder/websocket against our server and our client, with
// both of its compression modes.
func TestCoder(t *testing.T) {
	recordVersion(t, "coder/websocket", moduleVersion(t, coderModule))
	certs := newTestCerts(t)

	t.Run("coder-client-to-our-server", func(t *testing.T) {
		srv := startOurServer(t, certs)
		testGoClient(t, srv, "coder", clientCaps{fragments: true, ping: true}, dialCoder(certs))
	})

	t.Run("our-client-to-coder-server", func(t *testing.T) {
		testOurClient(t, startGoPeerServer(t, certs, false, coderHandler))
	})
}

func coderType(kind string) coder.MessageType {
	if kind == kindBinary {
		return coder.MessageBinary
	}
	return coder.MessageText
}

func coderKind(typ coder.MessageType) string {
	if typ == coder.MessageBinary {
		return kindBinary
	}
	return kindText
}

func coderClose(err error) (int, string, bool) {
	var ce coder.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason, true
	}
	return 0, "", false
}

// writeCoder writes a message, through a Writer in pieces when fragments
// > 1: coder sends each write as a frame.
func writeCoder(ctx context.Context, c *coder.Conn, kind string, b []byte, fragments int) error {
	if fragments <= 1 {
		return c.Write(ctx, coderType(kind), b)
	}
	w, err := c.Writer(ctx, coderType(kind))
	if err != nil {
		return err
	}
	return writePieces(w, b, fragments)
}

func dialCoder(certs *testCerts) func(ctx context.Context, s session) (*goClient, error) {
	return func(ctx context.Context, s session) (*goClient, error) {
		transport := &http.Transport{TLSClientConfig: certs.clientConfig()}
		opts := &coder.DialOptions{
			Subprotocols: s.Protocols,
			HTTPClient:   &http.Client{Transport: transport},
		}
		if s.Compress {
			opts.CompressionMode = coder.CompressionNoContextTakeover
			if s.contextMode {
				opts.CompressionMode = coder.CompressionContextTakeover
			}
			opts.CompressionThreshold = 1 // 0 means its default, 128 or 512 bytes
		}
		c, resp, err := coder.Dial(ctx, s.URL, opts)
		transport.CloseIdleConnections()
		if err != nil {
			return nil, err
		}
		c.SetReadLimit(readLimit)
		g := newGoClient()
		g.protocol, g.extensions = c.Subprotocol(), resp.Header.Get("Sec-WebSocket-Extensions")
		g.send = func(ctx context.Context, kind string, b []byte, fragments int) error {
			return writeCoder(ctx, c, kind, b, fragments)
		}
		g.ping = c.Ping // the reading goroutine reads the pong
		// coder's Close waits for the answer, and reads it itself when it
		// gets to the connection before the reading goroutine does: the
		// answer's code is then not to be seen, only that it came.
		g.startClose = func(code int, reason string) error {
			err := c.Close(coder.StatusCode(code), reason)
			g.closeAnswered = err == nil
			return err
		}
		g.closeNow = func() { c.CloseNow() }
		go g.readLoop(func() (string, []byte, error) {
			typ, b, err := c.Read(context.Background())
			return coderKind(typ), b, err
		}, coderClose)
		return g, nil
	}
}

// coderHandler serves the paths of js/ws_server.mjs with coder. With
// compression it is willing to take over context; our client's offer
// decides.
func coderHandler(deflate bool, gs *goPeerServer, closes *mailbox[closeEvent]) http.Handler {
	opts := &coder.AcceptOptions{Subprotocols: []string{"duplex.test"}, InsecureSkipVerify: true}
	if deflate {
		opts.CompressionMode = coder.CompressionContextTakeover
		opts.CompressionThreshold = 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !gs.enter() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer gs.leave()
		id := r.URL.Query().Get("id")
		c, err := coder.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer gs.track(func() { c.CloseNow() })()
		defer c.CloseNow()
		c.SetReadLimit(readLimit)
		ctx := context.Background()
		var wg sync.WaitGroup
		defer wg.Wait()

		switch r.URL.Path {
		case "/close":
			c.Close(4001, "bye")
			return
		case "/ping":
			wg.Go(func() {
				msg := "pings answered: 3"
				for range 3 {
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					err := c.Ping(pctx)
					cancel()
					if err != nil {
						msg = "ping failed: " + err.Error()
						break
					}
				}
				c.Write(ctx, coder.MessageText, []byte(msg))
			})
		case "/fragments":
			for _, kind := range kinds {
				if writeCoder(ctx, c, kind, payload(kind, fragmentedSize), fragmentCount) != nil {
					return
				}
			}
		}
		// Whole messages, as the other peer servers echo: streaming a
		// message back while our client is still sending it would fill
		// both directions' buffers, since our test client reads only once
		// it has written.
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				code, reason, ok := coderClose(err)
				if !ok {
					code = -1
				}
				closes.put(id, closeEvent{code, reason})
				return
			}
			if c.Write(ctx, typ, b) != nil {
				return
			}
		}
	})
}
