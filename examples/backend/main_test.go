package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/duplexws/duplex/gateway/proxy"
)

// TestBackend drives the example backend through the gateway's proxy
// client, as the gateway does: a user logs in, connects with the cookie,
// subscribes where the rules allow, publishes through the backend's
// transform and calls whoami; a forged cookie and an unsigned request are
// refused.
func TestBackend(t *testing.T) {
	const secret = "s"
	srv := httptest.NewServer(newBackend(secret))
	defer srv.Close()

	resp, err := http.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}

	ctx := context.Background()
	newProxy := func(kind string) *proxy.Proxy {
		p, err := proxy.New(proxy.Options{URL: srv.URL + "/duplex/" + kind, Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	c := &proxy.Client{ID: "c1", Transport: "websocket", Protocol: "json", Header: http.Header{"Cookie": {cookie}}}
	res, err := newProxy("connect").Connect(ctx, c, nil)
	if err != nil || res.User != "ann" || strings.Join(res.Channels, ",") != "user:ann" {
		t.Fatalf("connect: %+v, %v", res, err)
	}
	c.User = res.User

	sub := newProxy("subscribe")
	for ch, ok := range map[string]bool{"chat:lobby": true, "user:ann": true, "user:bob": false, "admin": false} {
		_, err := sub.Subscribe(ctx, c, &proxy.SubscribeRequest{Channel: ch})
		var refused *proxy.Error
		if ok && err != nil || !ok && !(errors.As(err, &refused) && refused.Code == 403) {
			t.Errorf("subscribe %s: %v, want allowed %v", ch, err, ok)
		}
	}
	pub, err := newProxy("publish").Publish(ctx, c, &proxy.PublishRequest{Channel: "chat:lobby", Data: json.RawMessage(`"hi"`)})
	if err != nil || string(pub.Data) != `{"from":"ann","text":"hi"}` {
		t.Errorf("publish: %s, %v", pub.Data, err)
	}
	rpc, err := newProxy("rpc").RPC(ctx, c, &proxy.RPCRequest{Method: "whoami"})
	if err != nil || string(rpc.Data) != `{"user":"ann"}` {
		t.Errorf("rpc: %s, %v", rpc.Data, err)
	}

	forged := &proxy.Client{ID: "c2", Header: http.Header{"Cookie": {"session=bob.00"}}}
	var refused *proxy.Error
	if _, err := newProxy("connect").Connect(ctx, forged, nil); !errors.As(err, &refused) || refused.Code != 4401 {
		t.Errorf("connect with a forged cookie: %v, want 4401", err)
	}
	unsigned, err := proxy.New(proxy.Options{URL: srv.URL + "/duplex/connect"})
	if err != nil {
		t.Fatal(err)
	}
	defer unsigned.Close()
	if _, err := unsigned.Connect(ctx, c, nil); !errors.Is(err, proxy.ErrBadReply) || !strings.Contains(err.Error(), "403") {
		t.Errorf("an unsigned request: %v, want refused with 403", err)
	}
}
