package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/proxy"
	"github.com/duplexws/duplex/websocket"
)

const backendSecret = "backend-test-secret"

// testBackend is an app's backend on httptest: it checks every request's
// signature, records what it was sent, and answers by the session cookie,
// channel or method, as a real backend would.
type testBackend struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	requests map[string][]backendRequest // by path
	calls    atomic.Int64
	refresh  func() string // the refresh endpoint's reply
}

type backendRequest struct {
	header http.Header
	body   map[string]any
}

func newTestBackend(t *testing.T) *testBackend {
	b := &testBackend{t: t, requests: map[string][]backendRequest{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	if err := proxy.Verify(backendSecret, r.Header.Get(proxy.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "not JSON", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.requests[r.URL.Path] = append(b.requests[r.URL.Path], backendRequest{r.Header.Clone(), req})
	refresh := b.refresh
	b.mu.Unlock()
	reply := func(s string) { w.Header().Set("Content-Type", "application/json"); io.WriteString(w, s) }
	wait := func() {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}
	str := func(k string) string { s, _ := req[k].(string); return s }
	switch r.URL.Path {
	case "/connect":
		session := ""
		if c, err := r.Cookie("session"); err == nil {
			session = c.Value
		}
		switch session {
		case "ann":
			reply(`{"result":{"user":"ann","info":{"name": "Ann"},"data":{"welcome":true},"meta":{"tier":"gold"},"channels":["secret:ann"]}}`)
		case "expiring":
			// Expiry is in whole seconds: between 1 and 2 s from now (now+1s
			// truncated could leave a millisecond).
			reply(`{"result":{"user":"eve","expire_at":` + itoa(time.Now().Unix()+2) + `}}`)
		case "sam":
			reply(`{"result":{"user":"sam","channels":["room:news","room:slow","secret:sam","nons:sam"]}}`)
		case "kick":
			reply(`{"disconnect":{"code":4601,"reason":"banned"}}`)
		case "busy":
			reply(`{"error":{"code":1503,"message":"try again","temporary":true}}`)
		case "slow":
			wait()
			reply(`{"result":{"user":"late"}}`)
		case "garbage":
			reply(`{"result":"not an object"`)
		case "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		default:
			reply(`{"error":{"code":1001,"message":"log in first"}}`)
		}
	case "/refresh":
		reply(refresh())
	case "/subscribe":
		switch str("channel") {
		case "room:closed":
			reply(`{"error":{"code":1403,"message":"this room is closed"}}`)
		case "room:renewed", "room:gone", "room:reinfo":
			reply(`{"result":{"expire_at":` + itoa(time.Now().Unix()+2) + `}}`)
		default:
			reply(`{"result":{"info":{"seat": 7},"data":{"topic":"hello"}}}`)
		}
	case "/sub_refresh":
		switch str("channel") {
		case "room:gone":
			reply(`{"result":{"expired":true}}`)
			return
		case "room:reinfo":
			reply(`{"result":{"expire_at":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"info":{ "seat": 8 }}}`)
			return
		}
		reply(`{"result":{"expire_at":` + itoa(time.Now().Add(time.Hour).Unix()) + `}}`)
	case "/publish":
		var data struct {
			Text string `json:"text"`
		}
		json.Unmarshal([]byte(mustJSON(req["data"])), &data)
		if data.Text == "forbidden" {
			reply(`{"error":{"code":1400,"message":"not that word"}}`)
			return
		}
		skip := str("channel") == "room:ephemeral"
		reply(`{"result":{"data":{"text":` + mustJSON(strings.ToUpper(data.Text)) + `,"by":` + mustJSON(str("user")) + `},"skip_history":` + mustJSON(skip) + `}}`)
	case "/rpc":
		switch str("method") {
		case "whoami":
			reply(`{"result":{"data":{"user":` + mustJSON(str("user")) + `,"meta":` + mustJSON(req["meta"]) + `,"args":` + mustJSON(req["data"]) + `}}}`)
		case "slow":
			wait()
			reply(`{"result":{}}`)
		case "broken":
			reply(`{"result":{"data":1},"error":{"code":1,"message":"both"}}`)
		case "kick":
			reply(`{"disconnect":{"code":4602,"reason":"kicked by rpc"}}`)
		default:
			reply(`{"error":{"code":1404,"message":"no such method"}}`)
		}
	default:
		http.NotFound(w, r)
	}
}

func (b *testBackend) last(path string) backendRequest {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	reqs := b.requests[path]
	if len(reqs) == 0 {
		b.t.Fatalf("the backend got no request at %s", path)
	}
	return reqs[len(reqs)-1]
}

func (b *testBackend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests[path])
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func itoa(n int64) string { return mustJSON(n) }

// proxyServer is a gateway whose connect, refresh, rpc and namespace
// "room" ask the backend b.
func proxyServer(t *testing.T, b *testBackend, mutate func(*Config)) *testServer {
	endpoint := func(path string) proxy.Options {
		return proxy.Options{URL: b.srv.URL + path, Timeout: 300 * time.Millisecond, Secret: backendSecret}
	}
	return newTestServer(t, func(c *Config) {
		c.Proxy = ProxyConfig{
			Endpoints: map[string]proxy.Options{
				"connect": endpoint("/connect"), "refresh": endpoint("/refresh"),
				"subscribe": endpoint("/subscribe"), "publish": endpoint("/publish"), "rpc": endpoint("/rpc"),
				"sub_refresh": endpoint("/sub_refresh"),
			},
			Connect: "connect", Refresh: "refresh", RPC: "rpc",
		}
		c.Namespaces = append(c.Namespaces,
			Namespace{Name: "room", Subscribe: PermissionServer, Publish: PermissionServer, HistorySize: 10,
				Presence: true, SubscribeProxy: "subscribe", PublishProxy: "publish", SubRefreshProxy: "sub_refresh"},
			Namespace{Name: "secret", Subscribe: PermissionToken})
		if mutate != nil {
			mutate(c)
		}
	})
}

// dialWithCookie dials ts as a browser whose session cookie is session.
func dialWithCookie(t *testing.T, ts *testServer, session string) *client {
	h := http.Header{}
	h.Set("Cookie", "session="+session+"; theme=dark")
	h.Set("X-Not-Allowed", "private")
	return dialClient(t, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPHeader: h})
}

func TestProxyConnectAllowed(t *testing.T) {
	b := newTestBackend(t)
	ts := proxyServer(t, b, nil)
	c := dialWithCookie(t, ts, "ann")
	res := c.ok("connect", msg{"name": "test-client", "version": "1.2", "data": msg{"hello": "there"}})
	if res.str("user") != "ann" || !res.obj("data")["welcome"].(bool) {
		t.Fatalf("connect result %v: want user ann and the backend's data", res)
	}
	req := b.last("/connect")
	if got := req.header.Get("Cookie"); got != "session=ann; theme=dark" {
		t.Errorf("Cookie sent to the backend %q", got)
	}
	if req.header.Get("X-Not-Allowed") != "" {
		t.Errorf("a header outside the allow-list reached the backend")
	}
	if ip := req.header.Get("X-Real-IP"); ip != "127.0.0.1" {
		t.Errorf("X-Real-IP %q", ip)
	}
	if req.body["transport"] != "websocket" || req.body["name"] != "test-client" || req.body["version"] != "1.2" ||
		mustJSON(req.body["data"]) != `{"hello":"there"}` || req.body["client"] != res.str("client") {
		t.Errorf("connect request body %v", req.body)
	}
	// The backend's channels are subscribed server-side, and granted: the
	// client's subscribe takes the subscription over, and a token-only
	// namespace opens again after an unsubscribe.
	if res.obj("subs").obj("secret:ann") == nil {
		t.Errorf("connect result %v: want secret:ann subscribed server-side", res)
	}
	c.ok("subscribe", msg{"channel": "secret:ann"})
	c.ok("unsubscribe", msg{"channel": "secret:ann"})
	c.ok("subscribe", msg{"channel": "secret:ann"})
	if code := c.errCode("subscribe", msg{"channel": "secret:bob"}); code != ErrPermissionDenied.Code {
		t.Errorf("subscribe to a channel not granted: code %d, want %d", code, ErrPermissionDenied.Code)
	}
	// Meta goes with later requests, never to the client; info into
	// presence, compacted to one line.
	r := c.ok("rpc", msg{"params": msg{"method": "whoami", "data": msg{"n": 1}}})
	if got := mustJSON(r["data"]); got != `{"args":{"n":1},"meta":{"tier":"gold"},"user":"ann"}` {
		t.Errorf("rpc result data %s", got)
	}
	if strings.Contains(mustJSON(res), "gold") {
		t.Errorf("meta reached the client: %v", res)
	}
	c.ok("subscribe", msg{"channel": "room:open"})
	pres := c.ok("presence", msg{"channel": "room:open"})
	if got := mustJSON(pres.obj("clients").obj(res.str("client"))); !strings.Contains(got, `"info":{"seat":7}`) {
		t.Errorf("presence entry %s: want the subscribe proxy's info", got)
	}
	wantMetric(t, ts.http.URL, "duplex_proxy_requests_total", `proxy="connect",result="ok"`, 1)
}

func TestProxyConnectRefusedAndDisconnect(t *testing.T) {
	b := newTestBackend(t)
	ts := proxyServer(t, b, nil)

	c := dialWithCookie(t, ts, "nobody")
	r := c.call("connect", nil)
	if e := r.obj("error"); e.num("code") != 1001 || e.str("message") != "log in first" {
		t.Fatalf("refused connect: reply %v, want the backend's error 1001", r)
	}
	expectClose(t, c, CloseUnauthorized, "unauthorized: log in first")

	c = dialWithCookie(t, ts, "kick")
	c.send("connect", nil)
	expectClose(t, c, 4601, "banned")

	// A temporary refusal leaves the connection open: connect may come again.
	c = dialWithCookie(t, ts, "busy")
	if r := c.call("connect", nil); r.obj("error").num("code") != 1503 {
		t.Fatalf("temporary refusal: %v", r)
	}
	if code := c.errCode("ping", nil); code != ErrNotConnected.Code {
		t.Fatalf("after a temporary refusal: %d, want %d (open, not connected)", code, ErrNotConnected.Code)
	}

	// A disconnect in answer to a later request closes too.
	c = dialWithCookie(t, ts, "ann")
	c.ok("connect", nil)
	c.send("rpc", msg{"params": msg{"method": "kick"}})
	expectClose(t, c, 4602, "kicked by rpc")
	wantMetric(t, ts.http.URL, "duplex_proxy_requests_total", `proxy="connect",result="disconnect"`, 1)
	wantMetric(t, ts.http.URL, "duplex_proxy_requests_total", `proxy="connect",result="refused"`, 2)
	wantMetric(t, ts.http.URL, "duplex_proxy_requests_total", `proxy="rpc",result="disconnect"`, 1)
}

func TestProxyBackendFailures(t *testing.T) {
	b := newTestBackend(t)
	// An address where nothing listens, for a backend that is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + l.Addr().String() + "/connect"
	l.Close()
	ts := proxyServer(t, b, nil)
	for _, tc := range []struct {
		session string
		code    int
		metric  string
	}{
		{"slow", ErrBackendUnavailable.Code, "unavailable"}, // the timeout
		{"down", ErrBackendUnavailable.Code, "unavailable"}, // 503
		{"garbage", ErrInternal.Code, "bad_reply"},          // a malformed reply
	} {
		c := dialWithCookie(t, ts, tc.session)
		start := time.Now()
		if code := c.errCode("connect", nil); code != tc.code {
			t.Errorf("%s: connect error %d, want %d", tc.session, code, tc.code)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: the reply took %v, past the endpoint's timeout", tc.session, d)
		}
		// The session stays, not connected: the client may try again.
		if code := c.errCode("ping", nil); code != ErrNotConnected.Code {
			t.Errorf("%s: after the failed connect: %d, want %d", tc.session, code, ErrNotConnected.Code)
		}
		if v := metricValue(t, ts.http.URL, "duplex_proxy_requests_total", `proxy="connect",result="`+tc.metric+`"`); v < 1 {
			t.Errorf("%s: duplex_proxy_requests_total{result=%q} = %v", tc.session, tc.metric, v)
		}
	}

	down := proxyServer(t, b, func(c *Config) {
		c.Proxy.Endpoints["connect"] = proxy.Options{URL: deadURL, Timeout: 300 * time.Millisecond}
	})
	c := dialWithCookie(t, down, "ann")
	if code := c.errCode("connect", nil); code != ErrBackendUnavailable.Code {
		t.Errorf("backend down: connect error %d, want %d", code, ErrBackendUnavailable.Code)
	}

	// A gateway that signs with another secret: the backend refuses the
	// request (401), which the gateway reports as an internal error.
	wrong := proxyServer(t, b, func(c *Config) {
		o := c.Proxy.Endpoints["connect"]
		o.Secret = "another secret"
		c.Proxy.Endpoints["connect"] = o
	})
	before := b.count("/connect")
	c = dialWithCookie(t, wrong, "ann")
	if code := c.errCode("connect", nil); code != ErrInternal.Code {
		t.Errorf("wrong signature: connect error %d, want %d", code, ErrInternal.Code)
	}
	if b.count("/connect") != before {
		t.Errorf("the backend accepted a request with a wrong signature")
	}
}

func TestProxySubscribePublishRPC(t *testing.T) {
	b := newTestBackend(t)
	ts := proxyServer(t, b, nil)
	c := dialWithCookie(t, ts, "ann")
	c.ok("connect", nil)

	res := c.ok("subscribe", msg{"channel": "room:open", "data": msg{"why": "curious"}})
	if mustJSON(res["data"]) != `{"topic":"hello"}` {
		t.Errorf("subscribe result %v: want the backend's data", res)
	}
	if got := b.last("/subscribe").body; got["user"] != "ann" || mustJSON(got["data"]) != `{"why":"curious"}` {
		t.Errorf("subscribe request %v", got)
	}
	r := c.call("subscribe", msg{"channel": "room:closed"})
	if e := r.obj("error"); e.num("code") != 1403 || e.str("message") != "this room is closed" {
		t.Errorf("refused subscribe: %v", r)
	}

	// Publish: the backend's data replaces the client's.
	pub, push := publishAndSee(c, "room:open", "hi")
	if got := mustJSON(push["data"]); got != `{"by":"ann","text":"HI"}` {
		t.Errorf("publication %s: want the backend's transform", got)
	}
	if pub.num("offset") != 1 {
		t.Errorf("publish result %v", pub)
	}
	r = c.call("publish", msg{"channel": "room:open", "data": msg{"text": "forbidden"}})
	if r.obj("error").num("code") != 1400 {
		t.Errorf("refused publish: %v", r)
	}
	// skip_history: published, but not kept.
	c.ok("subscribe", msg{"channel": "room:ephemeral"})
	if _, push := publishAndSee(c, "room:ephemeral", "gone"); mustJSON(push["data"]) != `{"by":"ann","text":"GONE"}` {
		got := mustJSON(push["data"])
		t.Errorf("ephemeral publication %s", got)
	}
	h := c.ok("history", msg{"channel": "room:ephemeral"})
	if pubs, _ := h["publications"].([]any); len(pubs) != 0 {
		t.Errorf("skip_history publication kept: %v", h)
	}

	// rpc: errors carry the backend's code; broken replies are 100.
	if r := c.call("rpc", msg{"params": msg{"method": "nope"}}); r.obj("error").num("code") != 1404 {
		t.Errorf("rpc of an unknown method: %v", r)
	}
	if code := c.errCode("rpc", msg{"params": msg{"method": "broken"}}); code != ErrInternal.Code {
		t.Errorf("rpc with a malformed reply: %d", code)
	}
	if code := c.errCode("rpc", msg{"params": msg{"method": "slow"}}); code != ErrBackendUnavailable.Code {
		t.Errorf("rpc past the timeout: %d", code)
	}
	if code := c.errCode("rpc", msg{}); code != ErrBadRequest.Code {
		t.Errorf("rpc without params: %d", code)
	}
	// After all of it, the session works.
	c.ok("ping", nil)
}

// publishAndSee publishes text to channel, which c is subscribed to, and
// returns the reply's result and the publication c receives.
func publishAndSee(c *client, channel, text string) (result, push msg) {
	c.t.Helper()
	reply, pushes := c.callKeep("publish", msg{"channel": channel, "data": msg{"text": text}})
	if e := reply.obj("error"); e != nil {
		c.t.Fatalf("publish: %v", e)
	}
	for _, p := range pushes {
		if p.str("push") == "pub" {
			return reply.obj("result"), p
		}
	}
	return reply.obj("result"), c.nextPush("pub")
}

func TestProxyBesideJWT(t *testing.T) {
	b := newTestBackend(t)
	ts := proxyServer(t, b, func(c *Config) { c.Proxy.SkipConnectWithToken = true })
	_, res := connected(t, ts.url, token(t, map[string]any{"sub": "jwt-user"}))
	if res.str("user") != "jwt-user" || b.count("/connect") != 0 {
		t.Errorf("connect with a token: user %q, %d connect proxy requests; want the token's user and none", res.str("user"), b.count("/connect"))
	}
	c := dialWithCookie(t, ts, "ann")
	if c.ok("connect", nil).str("user") != "ann" || b.count("/connect") != 1 {
		t.Errorf("connect without a token did not ask the backend")
	}
	// Without SkipConnectWithToken, the backend decides even with a token.
	ts2 := proxyServer(t, b, nil)
	c = dialWithCookie(t, ts2, "ann")
	if got := c.ok("connect", msg{"token": token(t, map[string]any{"sub": "jwt-user"})}).str("user"); got != "ann" {
		t.Errorf("user %q, want the backend's", got)
	}
}

func TestProxyRefresh(t *testing.T) {
	b := newTestBackend(t)
	var asked atomic.Int64
	b.refresh = func() string {
		asked.Add(1)
		return `{"result":{"expire_at":` + itoa(time.Now().Add(time.Hour).Unix()) + `}}`
	}
	ts := proxyServer(t, b, func(c *Config) { c.Limits.ConnectTimeout = 200 * time.Millisecond })
	c := dialWithCookie(t, ts, "expiring")
	c.ok("connect", nil)
	waitFor(t, "a refresh request", func() bool { return asked.Load() > 0 })
	time.Sleep(500 * time.Millisecond)
	c.ok("ping", nil) // still open past its first expiry
	if got := b.last("/refresh").body["user"]; got != "eve" {
		t.Errorf("refresh request for user %v", got)
	}

	b.mu.Lock()
	b.refresh = func() string { return `{"result":{"expired":true}}` }
	b.mu.Unlock()
	c = dialWithCookie(t, ts, "expiring")
	c.ok("connect", nil)
	expectClose(t, c, CloseTokenExpired, "token expired")
}

func TestProxySubRefresh(t *testing.T) {
	b := newTestBackend(t)
	ts := proxyServer(t, b, func(c *Config) { c.Limits.ConnectTimeout = 200 * time.Millisecond })
	c := dialWithCookie(t, ts, "ann")
	c.ok("connect", nil)
	c.ok("subscribe", msg{"channel": "room:renewed"})
	c.ok("subscribe", msg{"channel": "room:gone"})
	// room:gone's expiry passes, and the backend says it expired.
	push := c.nextPush("unsubscribe")
	if push.str("channel") != "room:gone" || push.num("code") != UnsubscribeServer || push.str("reason") != "subscription expired" {
		t.Fatalf("push %v: want room:gone unsubscribed", push)
	}
	// room:renewed was renewed: it still gets publications.
	if _, p := publishAndSee(c, "room:renewed", "still here"); p.str("channel") != "room:renewed" {
		t.Fatalf("publication %v", p)
	}
	// Each subscription's expiry is checked on its own: room:renewed's
	// request may come after room:gone's push.
	waitFor(t, "a sub_refresh request per channel", func() bool { return b.count("/sub_refresh") >= 2 })
	if got := b.last("/sub_refresh").body["user"]; got != "ann" {
		t.Errorf("sub_refresh for user %v", got)
	}
	// Without a sub_refresh proxy, an expired subscription ends.
	ts2 := proxyServer(t, b, func(c *Config) {
		for i := range c.Namespaces {
			c.Namespaces[i].SubRefreshProxy = ""
		}
	})
	c = dialWithCookie(t, ts2, "ann")
	c.ok("connect", nil)
	c.ok("subscribe", msg{"channel": "room:renewed"})
	if push := c.nextPush("unsubscribe"); push.str("channel") != "room:renewed" {
		t.Fatalf("push %v: want room:renewed unsubscribed at its expiry", push)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown connect", Config{Proxy: ProxyConfig{Connect: "nope"}}, `proxy connect names the proxy endpoint "nope"`},
		{"unknown namespace proxy", Config{Namespaces: []Namespace{{Name: "a", PublishProxy: "x"}}}, `namespace "a" publish_proxy`},
		{"bad URL", Config{Proxy: ProxyConfig{Endpoints: map[string]proxy.Options{"e": {URL: "ftp://x"}}}}, `proxy endpoint "e"`},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestProxyRefreshInfo checks that the info of a refresh result becomes the
// connection's info (in the publications it makes and, at once, in the
// presence of its channels), and that of a sub_refresh result the
// client's info in that channel's presence, compacted, as connect's and
// subscribe's would be.
func TestProxyRefreshInfo(t *testing.T) {
	b := newTestBackend(t)
	b.refresh = func() string {
		return `{"result":{"expire_at":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"info":{ "name": "Eve", "v": 2 }}}`
	}
	ts := proxyServer(t, b, func(c *Config) { c.Limits.ConnectTimeout = 200 * time.Millisecond })
	c := dialWithCookie(t, ts, "expiring")
	id := c.ok("connect", nil).str("client")
	// room:reinfo's grant has no info, so the client appears there by its
	// connection's info; secret namespaces are not involved.
	c.ok("subscribe", msg{"channel": "room:plain"})
	entry := func(channel string) string {
		return mustJSON(c.ok("presence", msg{"channel": channel}).obj("clients").obj(id))
	}
	if got := entry("room:plain"); !strings.Contains(got, `"info":{"seat":7}`) {
		t.Fatalf("presence entry %s: want the subscribe proxy's info", got)
	}
	waitFor(t, "a refresh request", func() bool { return b.count("/refresh") > 0 })
	// The publication's info is the refreshed connection info.
	waitFor(t, "the refreshed info in publications", func() bool {
		_, p := publishAndSee(c, "room:plain", "hi")
		return mustJSON(p.obj("info")["info"]) == `{"name":"Eve","v":2}`
	})

	// A second connection whose subscription appears by its connection
	// info: the refresh changes its presence entry without waiting for the
	// periodic presence refresh (PresenceTTL is a minute).
	ts2 := proxyServer(t, b, func(c *Config) {
		c.Limits.ConnectTimeout = 200 * time.Millisecond
		c.Namespaces = append(c.Namespaces, Namespace{Name: "lobby", Subscribe: PermissionAuthenticated, Presence: true})
	})
	var refreshes atomic.Int64
	b.mu.Lock()
	b.refresh = func() string {
		n := refreshes.Add(1)
		return `{"result":{"expire_at":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"info":{"n":` + itoa(n) + `}}}`
	}
	b.mu.Unlock()
	c2 := dialWithCookie(t, ts2, "expiring")
	id2 := c2.ok("connect", nil).str("client")
	c2.ok("subscribe", msg{"channel": "lobby:main"})
	waitFor(t, "the refreshed info in presence", func() bool {
		got := mustJSON(c2.ok("presence", msg{"channel": "lobby:main"}).obj("clients").obj(id2))
		return strings.Contains(got, `"info":{"n":1}`)
	})

	// sub_refresh: the channel's entry takes the new channel info.
	c3 := dialWithCookie(t, ts, "ann")
	id3 := c3.ok("connect", nil).str("client")
	c3.ok("subscribe", msg{"channel": "room:reinfo"})
	waitFor(t, "a sub_refresh of room:reinfo", func() bool { return b.count("/sub_refresh") > 0 })
	waitFor(t, "the sub_refresh info in presence", func() bool {
		got := mustJSON(c3.ok("presence", msg{"channel": "room:reinfo"}).obj("clients").obj(id3))
		return strings.Contains(got, `"info":{"seat":8}`) && strings.Contains(got, `"user":"ann"`)
	})
	c3.ok("ping", nil) // and the subscription goes on
	if _, p := publishAndSee(c3, "room:reinfo", "x"); p.str("channel") != "room:reinfo" {
		t.Fatalf("publication %v", p)
	}
}

// TestProxyServerSideSubscriptions: the connect proxy's channels are
// subscribed by the server at connect: the connect reply lists them with
// their stream positions, before any of their publications, which come as
// pushes with no gap or repeat even while publications flow during the
// connect; a client that reconnects with its last positions in connect's
// "subs" gets what it missed in the reply, or recovered false when its
// epoch is not the stream's.
func TestProxyServerSideSubscriptions(t *testing.T) {
	b := newTestBackend(t)
	// room:slow's history takes a while to read: room:news's publications
	// keep arriving while the connect reply waits for it.
	ts := proxyServer(t, b, func(c *Config) { c.Broker = slowHistoryBroker{broker.NewMemory(nil)} })
	publish := func(n int) {
		body := strings.NewReader(mustJSON(msg{"channel": "room:news", "data": msg{"n": n}}))
		resp, err := http.Post(ts.http.URL+"/api/publish", "application/json", body)
		if err != nil {
			t.Errorf("API publish: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("API publish: %s", resp.Status)
		}
	}
	// Publications flow while the client connects.
	stop := make(chan struct{})
	flowing := make(chan struct{})
	var published atomic.Int64
	go func() {
		defer close(flowing)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			publish(i)
			published.Add(1)
		}
	}()
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); <-flowing }
	defer halt() // before the test ends, however it ends
	waitFor(t, "publications flowing", func() bool { return published.Load() >= 3 })
	// Connections while they flow: never a publication before the reply,
	// and the first after it follows the reply's position.
	for range 20 {
		c := dialWithCookie(t, ts, "sam")
		reply, early := c.callKeep("connect", nil)
		if len(early) > 0 {
			t.Fatalf("%d pushes before the connect reply, the first %v", len(early), early[0])
		}
		at := uint64(reply.obj("result").obj("subs").obj("room:news").num("offset"))
		if p := c.nextPush("pub"); uint64(p.num("offset")) != at+1 {
			t.Fatalf("first publication %v after a connect reply at offset %d", p, at)
		}
		c.conn.CloseNow()
	}
	c := dialWithCookie(t, ts, "sam")
	reply, early := c.callKeep("connect", nil)
	if len(early) > 0 {
		t.Fatalf("%d pushes before the connect reply, the first %v", len(early), early[0])
	}
	res := reply.obj("result")
	sub := res.obj("subs").obj("room:news")
	if res.str("user") != "sam" || sub == nil || res.obj("subs").obj("secret:sam") == nil {
		t.Fatalf("connect result %v: want room:news and secret:sam subscribed", res)
	}
	// A channel of no namespace is left out, and the connection goes on.
	if _, ok := res.obj("subs")["nons:sam"]; ok || len(res.obj("subs")) != 3 {
		t.Errorf("connect result's subs %v: want room:news, room:slow and secret:sam only", res.obj("subs"))
	}
	if sub["recoverable"] != true || sub.str("epoch") == "" || sub.num("offset") < 3 {
		t.Fatalf("room:news in the connect result %v: want recoverable, its epoch and offset", sub)
	}
	epoch := sub.str("epoch")
	last := uint64(sub.num("offset"))
	time.Sleep(50 * time.Millisecond)
	halt()
	total := uint64(published.Load())
	for last < total {
		p := c.nextPush("pub")
		if p.str("channel") != "room:news" || uint64(p.num("offset")) != last+1 || p.str("epoch") != epoch {
			t.Fatalf("publication %v after offset %d: want the next one", p, last)
		}
		last++
	}
	// The client's own subscribe takes the server-side subscription over,
	// recovering from its position: one subscription, so each publication
	// comes once.
	if r := c.ok("subscribe", msg{"channel": "room:news", "since": msg{"epoch": epoch, "offset": last}}); r["recovered"] != true || uint64(r.num("offset")) != last {
		t.Fatalf("subscribe taking over room:news: %v", r)
	}
	publish(99)
	if p := c.nextPush("pub"); uint64(p.num("offset")) != last+1 {
		t.Fatalf("publication %v after the take-over, want offset %d", p, last+1)
	}
	last++
	if r, pushes := c.callKeep("ping", nil); r.obj("error") != nil || len(pushes) != 0 {
		t.Fatalf("ping %v after %v: the publication came twice", r, pushes)
	}
	c.conn.CloseNow()

	// Missed while away: two publications, recovered in the connect reply.
	publish(100)
	publish(101)
	c = dialWithCookie(t, ts, "sam")
	res = c.ok("connect", msg{"subs": msg{"room:news": msg{"epoch": epoch, "offset": last}}})
	sub = res.obj("subs").obj("room:news")
	pubs, _ := sub["publications"].([]any)
	if sub["recovered"] != true || len(pubs) != 2 || uint64(sub.num("offset")) != last+2 {
		t.Fatalf("recovery after offset %d: %v", last, sub)
	}
	for i, p := range pubs {
		pm := msg(p.(map[string]any))
		if uint64(pm.num("offset")) != last+1+uint64(i) || pm.obj("data").num("n") != float64(100+i) {
			t.Errorf("recovered publication %d: %v", i, pm)
		}
	}
	// Live ones follow.
	publish(102)
	if p := c.nextPush("pub"); uint64(p.num("offset")) != last+3 {
		t.Errorf("live publication %v, want offset %d", p, last+3)
	}
	c.conn.CloseNow()

	// A position of another epoch cannot be recovered: recovered false,
	// as a subscribe's reply says.
	c = dialWithCookie(t, ts, "sam")
	res = c.ok("connect", msg{"subs": msg{"room:news": msg{"epoch": "not-" + epoch, "offset": 1}}})
	if sub = res.obj("subs").obj("room:news"); sub["recovered"] != false || uint64(sub.num("offset")) != last+3 {
		t.Errorf("recovery from another epoch: %v, want recovered false at offset %d", sub, last+3)
	}
	// Without the connect proxy's channels, nothing is subscribed.
	c2 := dialWithCookie(t, ts, "expiring")
	if res := c2.ok("connect", nil); res["subs"] != nil {
		t.Errorf("connect result %v: no server-side subscriptions expected", res)
	}
}

// slowHistoryBroker is the memory broker whose history of room:slow takes
// 20 ms to read.
type slowHistoryBroker struct{ *broker.Memory }

func (b slowHistoryBroker) History(ctx context.Context, channel string, opts broker.HistoryOptions) (broker.HistoryResult, error) {
	if channel == "room:slow" {
		time.Sleep(20 * time.Millisecond)
	}
	return b.Memory.History(ctx, channel, opts)
}
