package websocket

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hidingListener wraps every connection in a type that embeds net.Conn, as
// metrics and PROXY-protocol listeners do, which hides CloseWrite.
type hidingListener struct{ net.Listener }

type hidingConn struct{ net.Conn }

func (l hidingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return hidingConn{c}, nil
}

// A server whose connection cannot half-close must still end the closing
// handshake at once, not after both sides wait out the close timeout: the
// client waits for the server to close TCP.
func TestCloseWithoutHalfClose(t *testing.T) {
	for _, initiator := range []string{"client", "server"} {
		t.Run(initiator, func(t *testing.T) {
			serverDone := make(chan time.Duration, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Accept(w, r, &AcceptOptions{CloseTimeout: 3 * time.Second})
				if err != nil {
					return
				}
				defer c.CloseNow()
				start := time.Now()
				if initiator == "server" {
					c.Close(StatusNormalClosure, "")
				} else {
					c.Read(context.Background())
				}
				serverDone <- time.Since(start)
			}))
			srv.Listener = hidingListener{srv.Listener}
			srv.Start()
			defer srv.Close()

			ctx := context.Background()
			c, _, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &DialOptions{CloseTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			start := time.Now()
			if initiator == "client" {
				err = c.Close(StatusNormalClosure, "")
			} else {
				_, _, err = c.Read(ctx)
				if CloseStatus(err) == StatusNormalClosure {
					err = nil
				}
			}
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("the client's side of the close took %v", took)
			}
			if took := <-serverDone; took > time.Second {
				t.Fatalf("the server's side of the close took %v", took)
			}
		})
	}
}
