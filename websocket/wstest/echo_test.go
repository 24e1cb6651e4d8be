package wstest

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// echoRoundTrip writes msg as typ with a Writer in chunks of chunk bytes
// while reading the echo, and checks it.
func echoRoundTrip(t *testing.T, ctx context.Context, c *websocket.Conn, typ websocket.MessageType, msg []byte, chunk int) {
	t.Helper()
	var writeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		w, err := c.Writer(ctx, typ)
		if err != nil {
			writeErr = err
			return
		}
		for p := msg; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				writeErr = err
				return
			}
			p = p[n:]
		}
		writeErr = w.Close()
	})
	gotType, r, err := c.Reader(ctx)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(r)
	}
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("%d bytes: write: %v", len(msg), writeErr)
	}
	if err != nil || gotType != typ || !bytes.Equal(got, msg) {
		t.Fatalf("%d bytes of %v: echo is %d bytes of %v, %v", len(msg), typ, len(got), gotType, err)
	}
}

func TestEchoServer(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "ws", true: "wss"}[tls]
		t.Run(name, func(t *testing.T) {
			var srv *EchoServer
			var opts *websocket.DialOptions
			if tls {
				srv = NewTLSEchoServer(nil)
				opts = &websocket.DialOptions{HTTPClient: srv.HTTP.Client()}
			} else {
				srv = NewEchoServer(nil)
			}
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, srv.URL, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(-1)
			// Sizes around the frame length encodings, and one far beyond
			// the default read limit, which the echo server lifts.
			for _, size := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
				msg := bytes.Repeat([]byte("é"), size/2)
				echoRoundTrip(t, ctx, c, websocket.MessageText, msg, 10000)
				echoRoundTrip(t, ctx, c, websocket.MessageBinary, msg, 70000)
			}
			if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// Close ends open connections with StatusGoingAway, and returns promptly.
func TestEchoServerClose(t *testing.T) {
	srv := NewEchoServer(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conns []*websocket.Conn
	for range 3 {
		c, _, err := websocket.Dial(ctx, srv.URL, nil)
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns = append(conns, c)
	}
	// A reader per client answers the server's close frame.
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, c := range conns {
		wg.Go(func() { _, _, errs[i] = c.Read(ctx) })
	}
	within(t, 2*time.Second, "EchoServer.Close", srv.Close)
	wg.Wait()
	for i, err := range errs {
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("client %d: Read = %v, want a close with StatusGoingAway", i, err)
		}
	}
}

// Echo works on any Conn, here over Pipe, and reports a normal close as nil.
func TestEchoOverPipe(t *testing.T) {
	client, server := pipeForTest(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	echoed := make(chan error, 1)
	go func() { echoed <- Echo(ctx, server) }()
	client.SetReadLimit(-1)
	echoRoundTrip(t, ctx, client, websocket.MessageBinary, bytes.Repeat([]byte{7}, 3<<20), 1<<16)
	if err := client.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("Echo = %v after a normal close", err)
	}
}
