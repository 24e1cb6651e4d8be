package websocket_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// An echo server, and a client that sends it a message.
func Example_echo() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return // Accept has answered the request
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return // the client closed, or the connection failed
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()

	if err := c.Write(ctx, websocket.MessageText, []byte("hello, echo")); err != nil {
		log.Fatal(err)
	}
	typ, msg, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v: %s\n", typ, msg)
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		log.Fatal(err)
	}
	// Output: text: hello, echo
}

// Streaming a message too large to hold: the client writes it through a
// Writer, the server reads it through a Reader and answers with its size.
func ExampleConn_Writer() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1) // this server takes messages of any size
		_, msg, err := c.Reader(r.Context())
		if err != nil {
			return
		}
		n, err := io.Copy(io.Discard, msg)
		if err != nil {
			return
		}
		c.Write(r.Context(), websocket.MessageText, []byte(strconv.FormatInt(n, 10)))
		c.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()

	w, err := c.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		log.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for range 64 { // 4 MiB, sent as it is written
		if _, err := w.Write(chunk); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	_, reply, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("the server read %s bytes\n", reply)
	// Output: the server read 4194304 bytes
}

// Closing: the server ends the connection with a code and a reason, which
// the client's Read reports.
func ExampleConn_Close() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		// Close sends the close frame, waits for the client's answer and
		// closes the connection.
		c.Close(websocket.StatusNormalClosure, "bye")
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()

	_, _, err = c.Read(ctx)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		fmt.Printf("closed with %v: %s\n", websocket.CloseStatus(err), ce.Reason)
	}
	// Output: closed with NormalClosure: bye
}

// A server for many mostly silent connections: each waits for its next
// message with Await, holding no goroutine, and its handler returns.
func ExampleConn_Await() {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		// serve reads while messages keep coming, then awaits the next
		// one, which calls serve again.
		var serve func()
		serve = func() {
			for {
				ready, err := c.Await(serve)
				if err != nil || !ready {
					return // serve runs again when a message comes
				}
				typ, msg, err := c.Read(context.Background())
				if err != nil {
					c.CloseNow() // the client closed, or the connection failed
					close(done)
					return
				}
				c.Write(context.Background(), typ, append([]byte("echo: "), msg...))
			}
		}
		serve()
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, word := range []string{"one", "two"} {
		time.Sleep(10 * time.Millisecond) // the server's connection is idle
		c.Write(ctx, websocket.MessageText, []byte(word))
		_, msg, err := c.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(msg))
	}
	c.Close(websocket.StatusNormalClosure, "")
	<-done
	// Output:
	// echo: one
	// echo: two
}
