package wstest_test

import (
	"context"
	"fmt"

	"github.com/duplexws/duplex/websocket"
	"github.com/duplexws/duplex/websocket/wstest"
)

func ExamplePipe() {
	client, server, err := wstest.Pipe(nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	echoed := make(chan error, 1)
	go func() {
		echoed <- wstest.Echo(ctx, server)
		server.CloseNow()
	}()

	if err := client.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		fmt.Println(err)
	}
	typ, msg, err := client.Read(ctx)
	fmt.Println(typ, string(msg), err)
	fmt.Println(client.Close(websocket.StatusNormalClosure, "done"))
	fmt.Println(<-echoed)
	// Output:
	// text hello <nil>
	// <nil>
	// <nil>
}

func ExampleNewEchoServer() {
	srv := wstest.NewEchoServer(nil)
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, srv.URL, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3})
	typ, msg, err := c.Read(ctx)
	fmt.Println(typ, msg, err)
	fmt.Println(c.Close(websocket.StatusNormalClosure, ""))
	// Output:
	// binary [1 2 3] <nil>
	// <nil>
}
