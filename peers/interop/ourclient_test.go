package interop

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// peerServer is a peer's server for our client. Every peer server has the
// paths of js/ws_server.mjs (/echo, /close, /ping, /fragments), picks the
// subprotocol "duplex.test" when offered, and listens three times: plain,
// with permessage-deflate, and with TLS under the test's certificate.
type peerServer struct {
	plain, deflate, tls string // base URLs, ws://127.0.0.1:port
	// closes receives, under the connection's id, the close code and
	// reason the peer saw.
	closes *mailbox[closeEvent]
	// noContextOnly: the server compresses only without context takeover
	// and makes the client do the same (gorilla).
	noContextOnly bool
	certs         *testCerts
}

// connIDs numbers our client's connections, so that a peer server's
// report can be matched to one.
var connIDs atomic.Int64

func newConnID(name string) string {
	return name + "-" + strconv.FormatInt(connIDs.Add(1), 10)
}

// dialPeer dials a peer server with our client, counting the bytes on the
// wire, and closes the connection when the test ends.
func dialPeer(t *testing.T, ctx context.Context, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, *wireConn) {
	t.Helper()
	var wire atomic.Pointer[wireConn]
	o := *opts
	o.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc := &wireConn{Conn: c}
		wire.Store(wc)
		return wc, nil
	}
	c, resp, err := websocket.Dial(ctx, url, &o)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(readLimit)
	return c, resp, wire.Load()
}

// testOurClient runs our client against a peer server, one subtest per
// session and one per step.
func testOurClient(t *testing.T, ps *peerServer) {
	t.Run("plain", func(t *testing.T) {
		ctx := testContext(t, 2*stepTimeout)
		id := newConnID("plain")
		c, resp, _ := dialPeer(t, ctx, ps.plain+"/echo?id="+id, &websocket.DialOptions{})
		checkExtensions(t, resp.Header.Get("Sec-WebSocket-Extensions"), nil, nil)
		echoAll(t, ctx, c, maxEchoSize)
		echoFragmented(t, ctx, c)
		t.Run("ping", func(t *testing.T) { pingWhileReading(t, ctx, c) })
		t.Run("close-4001", func(t *testing.T) { closeAndCheck(t, ctx, c, ps, id, 4001, "bye") })
	})

	t.Run("subprotocol", func(t *testing.T) {
		ctx := testContext(t, stepTimeout)
		id := newConnID("subprotocol")
		c, _, _ := dialPeer(t, ctx, ps.plain+"/echo?id="+id, &websocket.DialOptions{Subprotocols: []string{"duplex.other", "duplex.test"}})
		if got := c.Subprotocol(); got != "duplex.test" {
			t.Errorf("Subprotocol() = %q, want duplex.test", got)
		}
		echoOne(t, ctx, c, kindText, 125)
		closeAndCheck(t, ctx, c, ps, id, websocket.StatusNormalClosure, "")
	})

	t.Run("server-ping", func(t *testing.T) {
		ctx := testContext(t, stepTimeout)
		id := newConnID("server-ping")
		c, _, _ := dialPeer(t, ctx, ps.plain+"/ping?id="+id, &websocket.DialOptions{})
		// Reading answers the pings; the server then says so.
		expectMessage(t, ctx, c, receivedOf(kindText, []byte("pings answered: 3")))
		closeAndCheck(t, ctx, c, ps, id, websocket.StatusNormalClosure, "")
	})

	t.Run("server-close", func(t *testing.T) {
		ctx := testContext(t, stepTimeout)
		c, _, _ := dialPeer(t, ctx, ps.plain+"/close?id="+newConnID("server-close"), &websocket.DialOptions{})
		_, _, err := c.Read(ctx)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
			t.Errorf("Read returned %v, want the peer's close 4001 \"bye\"", err)
		}
		if code := websocket.CloseStatus(err); code != 4001 {
			t.Errorf("CloseStatus(err) = %d, want 4001", code)
		}
	})

	t.Run("server-fragments", func(t *testing.T) {
		ctx := testContext(t, stepTimeout)
		id := newConnID("server-fragments")
		c, _, _ := dialPeer(t, ctx, ps.plain+"/fragments?id="+id, &websocket.DialOptions{})
		for _, kind := range kinds {
			expectMessage(t, ctx, c, expectedPayload(kind, fragmentedSize))
		}
		closeAndCheck(t, ctx, c, ps, id, websocket.StatusNormalClosure, "")
	})

	t.Run("wss", func(t *testing.T) {
		ctx := testContext(t, 2*stepTimeout)
		id := newConnID("wss")
		c, _, _ := dialPeer(t, ctx, ps.tls+"/echo?id="+id, &websocket.DialOptions{TLSConfig: ps.certs.clientConfig()})
		echoAll(t, ctx, c, sessionEchoSize)
		closeAndCheck(t, ctx, c, ps, id, websocket.StatusNormalClosure, "")
	})

	for _, mode := range []websocket.CompressionMode{websocket.CompressionNoContextTakeover, websocket.CompressionContextTakeover} {
		name := "deflate-no-context-takeover"
		want := []string{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover"}
		var notWant []string
		if mode == websocket.CompressionContextTakeover {
			name = "deflate-context-takeover"
			want = []string{"permessage-deflate"}
			if !ps.noContextOnly {
				notWant = []string{"server_no_context_takeover", "client_no_context_takeover"}
			}
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t, 2*stepTimeout)
			id := newConnID(name)
			c, resp, wire := dialPeer(t, ctx, ps.deflate+"/echo?id="+id, &websocket.DialOptions{
				Compression: websocket.CompressionOptions{Mode: mode, Threshold: -1},
			})
			t.Run("handshake", func(t *testing.T) {
				checkExtensions(t, resp.Header.Get("Sec-WebSocket-Extensions"), want, notWant)
			})
			total := echoAll(t, ctx, c, sessionEchoSize) + echoFragmented(t, ctx, c)
			if mode == websocket.CompressionContextTakeover {
				t.Run("echo-binary-"+sizeName(maxEchoSize), func(t *testing.T) { echoOne(t, ctx, c, kindBinary, maxEchoSize) })
				total += maxEchoSize
			}
			t.Run("compressed-on-the-wire", func(t *testing.T) {
				checkCompressed(t, total, wire.read.Load(), wire.written.Load())
			})
			closeAndCheck(t, ctx, c, ps, id, websocket.StatusNormalClosure, "")
		})
	}
}

// echoAll echoes every kind and size up to maxSize, each in a subtest, and
// returns the payload bytes sent.
func echoAll(t *testing.T, ctx context.Context, c *websocket.Conn, maxSize int) int64 {
	var total int64
	for _, kind := range kinds {
		for _, size := range echoSizes {
			if size > maxSize {
				continue
			}
			t.Run("echo-"+kind+"-"+sizeName(size), func(t *testing.T) { echoOne(t, ctx, c, kind, size) })
			total += int64(size)
		}
	}
	return total
}

func echoOne(t *testing.T, ctx context.Context, c *websocket.Conn, kind string, size int) {
	t.Helper()
	if err := c.Write(ctx, messageType(kind), payload(kind, size)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	expectMessage(t, ctx, c, expectedPayload(kind, size))
}

// echoFragmented sends a message of each kind through a Writer in several
// writes, which go out as several frames, and checks the echo.
func echoFragmented(t *testing.T, ctx context.Context, c *websocket.Conn) int64 {
	for _, kind := range kinds {
		name := "echo-" + kind + "-" + sizeName(fragmentedSize) + "-in-" + strconv.Itoa(fragmentCount) + "-writes"
		t.Run(name, func(t *testing.T) {
			if err := writeInPieces(ctx, c, kind, payload(kind, fragmentedSize), fragmentCount); err != nil {
				t.Fatalf("writing through a Writer: %v", err)
			}
			expectMessage(t, ctx, c, expectedPayload(kind, fragmentedSize))
		})
	}
	return 2 * fragmentedSize
}

func expectMessage(t *testing.T, ctx context.Context, c *websocket.Conn, want *received) {
	t.Helper()
	typ, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v (want %v)", err, want)
	}
	checkReceived(t, receivedOf(kindOf(typ), got), want)
}

// pingWhileReading pings the peer: a Read, cancelled once the pong has
// come, reads the pong. The connection stays usable after the cancelled
// Read.
func pingWhileReading(t *testing.T, ctx context.Context, c *websocket.Conn) {
	readCtx, cancelRead := context.WithCancel(ctx)
	readDone := make(chan error, 1)
	go func() {
		_, _, err := c.Read(readCtx)
		readDone <- err
	}()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.Ping(pingCtx)
	cancel()
	cancelRead()
	if rerr := <-readDone; !errors.Is(rerr, context.Canceled) {
		t.Errorf("the Read that read the pong returned %v, want context.Canceled", rerr)
	}
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	echoOne(t, ctx, c, kindText, 125) // still usable
}

// closeAndCheck closes with code and reason and checks that the peer
// answered and saw them.
func closeAndCheck(t *testing.T, ctx context.Context, c *websocket.Conn, ps *peerServer, id string, code websocket.StatusCode, reason string) {
	t.Helper()
	if err := c.Close(code, reason); err != nil {
		t.Errorf("Close(%d, %q): %v", code, reason, err)
	}
	got, err := ps.closes.take(ctx, id)
	if err != nil {
		t.Fatalf("the peer server: %v", err)
	}
	if want := (closeEvent{int(code), reason}); got != want {
		t.Errorf("the peer server saw close %v, want %v", got, want)
	}
}

// startScriptServer starts a peer server written in Node or Python, which
// prints {"event": "listening", "ports": ...} and then one {"event":
// "closed", "id": ..., "code": ..., "reason": ...} per connection.
func startScriptServer(t *testing.T, certs *testCerts, name string, args ...string) *peerServer {
	t.Helper()
	ps := &peerServer{closes: &mailbox[closeEvent]{}, certs: certs}
	listening := make(chan map[string]int, 1)
	onLine := func(line string) {
		var ev struct {
			Event string
			ID    string
			Code  *int
			// websockets reports None for a close without a reason
			Reason *string
			Ports  map[string]int
			Error  string
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return // not an event; the test logs standard error on failure
		}
		switch ev.Event {
		case "listening":
			listening <- ev.Ports
		case "closed":
			e := closeEvent{Code: -1}
			if ev.Code != nil {
				e.Code = *ev.Code
			}
			if ev.Reason != nil {
				e.Reason = *ev.Reason
			}
			ps.closes.put(ev.ID, e)
		}
	}
	proc := startPeer(t, 5*time.Minute, onLine, name, append(args, certs.certFile, certs.keyFile)...)
	select {
	case ports := <-listening:
		base := func(scheme, key string) string { return scheme + "://127.0.0.1:" + strconv.Itoa(ports[key]) }
		ps.plain, ps.deflate, ps.tls = base("ws", "plain"), base("ws", "deflate"), base("wss", "tls")
	case <-proc.exited:
		t.Fatalf("%s exited before listening: %v; standard error:\n%s", proc.name, proc.err, proc.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start listening within 20s; standard error:\n%s", proc.name, proc.stderr.String())
	}
	return ps
}
