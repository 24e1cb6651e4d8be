package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/duplexws/duplex/gateway/proxy"
)

// A backend that logs users in by their session cookie, and the gateway's
// connect request to it.
func Example() {
	const secret = "shared-with-the-gateway"
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if proxy.Verify(secret, r.Header.Get(proxy.SignatureHeader), body, time.Now(), time.Minute) != nil {
			http.Error(w, "not from the gateway", http.StatusForbidden)
			return
		}
		c, err := r.Cookie("session")
		if err != nil {
			fmt.Fprint(w, `{"error":{"code":401,"message":"log in first"}}`)
			return
		}
		fmt.Fprintf(w, `{"result":{"user":%q,"channels":["news"]}}`, c.Value)
	}))
	defer backend.Close()

	p, err := proxy.New(proxy.Options{URL: backend.URL, Secret: secret})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	client := &proxy.Client{ID: "c1", Transport: "websocket", Protocol: "json", Header: http.Header{"Cookie": {"session=ann"}}}
	res, err := p.Connect(context.Background(), client, &proxy.ConnectRequest{Data: json.RawMessage(`{}`)})
	fmt.Println(res.User, res.Channels, err)

	client.Header = nil
	_, err = p.Connect(context.Background(), client, nil)
	fmt.Println(err)
	// Output:
	// ann [news] <nil>
	// proxy: the backend refused: 401 log in first
}
