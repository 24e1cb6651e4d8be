package websocket_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/duplexws/duplex/websocket"
)

// A server for many connections: its handler returns at once, and each
// connection's messages are delivered by the loops Serve shares.
func ExampleConn_Serve() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		err = c.Serve(func(typ websocket.MessageType, p []byte) {
			// On the loop's goroutine: answer at once, hand slow work on.
			if c.Write(context.Background(), typ, p) != nil {
				c.CloseNow()
			}
		}, func(err error) {
			// c is closed; err says why (here the client's Close).
		})
		if err != nil {
			c.CloseNow()
		}
	}))
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for _, msg := range []string{"one", "two"} {
		c.Write(ctx, websocket.MessageText, []byte(msg))
		_, reply, err := c.Read(ctx)
		fmt.Println(string(reply), err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	// Output:
	// one <nil>
	// two <nil>
}
