package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duplexws/duplex/gateway"
	"github.com/duplexws/duplex/websocket"
)

// startExampleBackend builds examples/backend and runs it on a free port
// with the proxy secret; it returns its base URL.
func startExampleBackend(t *testing.T, ctx context.Context, secret string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backend")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/duplexws/duplex/examples/backend").CombinedOutput()
	if err != nil {
		t.Fatalf("go build examples/backend: %v\n%s", err, out)
	}
	p := startDuplex(t, ctx, bin, `^backend on (http://127\.0\.0\.1:\d+)$`, "-listen", "127.0.0.1:0", "-secret", secret)
	return p.addr
}

// login logs user in at the example backend and returns the Cookie
// header its session cookie makes.
func login(t *testing.T, backend, user string) string {
	t.Helper()
	resp, err := http.PostForm(backend+"/login", url.Values{"user": {user}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("login as %s: no session cookie (%s)", user, resp.Status)
	return ""
}

// gatewayLine is one client of a gateway: it sends commands and reads
// lines, replies and pushes alike.
type gatewayLine struct {
	t    *testing.T
	ctx  context.Context
	conn *websocket.Conn
	id   int
}

func dialGateway(t *testing.T, ctx context.Context, base, cookie string) *gatewayLine {
	t.Helper()
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{Subprotocols: []string{gateway.Subprotocol}, HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &gatewayLine{t: t, ctx: ctx, conn: conn}
}

// call sends a command and returns its reply, skipping pushes.
func (g *gatewayLine) call(method string, fields map[string]any) map[string]any {
	g.t.Helper()
	g.id++
	cmd := map[string]any{"id": g.id, "method": method}
	for k, v := range fields {
		cmd[k] = v
	}
	b, _ := json.Marshal(cmd)
	if err := g.conn.Write(g.ctx, websocket.MessageText, b); err != nil {
		g.t.Fatalf("%s: %v", method, err)
	}
	for {
		_, data, err := g.conn.Read(g.ctx)
		if err != nil {
			g.t.Fatalf("%s: reading the reply: %v", method, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				g.t.Fatalf("%s: not JSON: %q", method, line)
			}
			if id, ok := m["id"].(float64); ok && int(id) == g.id {
				return m
			}
		}
	}
}

// TestServeConnectProxy: duplex serve --connect-proxy asks the example
// backend, a real process, who each client is from its session cookie;
// with proxy: in a file, the backend also decides and stamps
// publications and answers rpc, over signed requests.
func TestServeConnectProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex and backend binaries")
	}
	ctx := testContext(t)
	const secret = "proxy-test-secret"
	backend := startExampleBackend(t, ctx, secret)
	bin := buildDuplex(t, ctx)
	t.Setenv("DUPLEX_PROXY_SECRET", secret)

	t.Run("flag", func(t *testing.T) {
		p := startDuplex(t, ctx, bin, `^duplex serve listening on (http://127\.0\.0\.1:\d+)/$`,
			"serve", "--listen", "127.0.0.1:0", "--connect-proxy", backend+"/duplex/connect")
		ann := dialGateway(t, ctx, p.addr, login(t, backend, "ann"))
		if r := ann.call("connect", nil); r["result"].(map[string]any)["user"] != "ann" {
			t.Fatalf("connect with ann's cookie: %v", r)
		}
		// The demo namespace works as before, with the backend's user.
		if r := ann.call("subscribe", map[string]any{"channel": "demo:chat"}); r["error"] != nil {
			t.Fatalf("subscribe: %v", r)
		}
		if got := metricOf(t, p.addr, `duplex_proxy_requests_total{proxy="connect",result="ok"}`); got != 1 {
			t.Errorf("connect proxy requests ok: %v", got)
		}

		anon := dialGateway(t, ctx, p.addr, "")
		r := anon.call("connect", nil)
		if e, _ := r["error"].(map[string]any); e == nil || e["code"] != float64(4401) || e["message"] != "log in first" {
			t.Fatalf("connect without a cookie: %v, want the backend's error 4401", r)
		}
		_, _, err := anon.conn.Read(ctx)
		if code := websocket.CloseStatus(err); code != gateway.CloseUnauthorized {
			t.Fatalf("after the refusal: %v, want close %d", err, gateway.CloseUnauthorized)
		}
	})

	t.Run("file", func(t *testing.T) {
		config := filepath.Join(t.TempDir(), "duplex.yaml")
		yaml := `
listen: 127.0.0.1:0
auth:
  anonymous: false
proxy:
  endpoints:
    - {name: connect, url: ` + backend + `/duplex/connect, headers: [Cookie]}
    - {name: subscribe, url: ` + backend + `/duplex/subscribe, timeout: 2s}
    - {name: publish, url: ` + backend + `/duplex/publish}
    - {name: rpc, url: ` + backend + `/duplex/rpc, max_in_flight: 10}
  connect: connect
  rpc: rpc
namespaces:
  - {name: chat, subscribe: server, publish: server, history_size: 10, subscribe_proxy: subscribe, publish_proxy: publish}
  - {name: user, subscribe: token}
`
		if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startDuplex(t, ctx, bin, `^duplex serve listening on (http://127\.0\.0\.1:\d+)/$`, "serve", "--config", config)
		bob := dialGateway(t, ctx, p.addr, login(t, backend, "bob"))
		bob.call("connect", nil)
		for _, ch := range []string{"chat:lobby", "user:bob"} {
			if r := bob.call("subscribe", map[string]any{"channel": ch}); r["error"] != nil {
				t.Fatalf("subscribe %s: %v", ch, r)
			}
		}
		if r := bob.call("subscribe", map[string]any{"channel": "user:ann"}); r["error"] == nil {
			t.Fatalf("subscribe to another user's channel: %v", r)
		}
		if r := bob.call("publish", map[string]any{"channel": "chat:lobby", "data": "hello"}); r["error"] != nil {
			t.Fatalf("publish: %v", r)
		}
		h := bob.call("history", map[string]any{"channel": "chat:lobby"})
		pubs, _ := h["result"].(map[string]any)["publications"].([]any)
		if len(pubs) != 1 || !strings.Contains(mustMarshal(pubs[0]), `"data":{"from":"bob","text":"hello"}`) {
			t.Fatalf("history %v: want the publication stamped by the backend", h)
		}
		r := bob.call("rpc", map[string]any{"params": map[string]any{"method": "whoami"}})
		if got := mustMarshal(r["result"]); got != `{"data":{"user":"bob"}}` {
			t.Fatalf("rpc whoami: %s", got)
		}
		if r := bob.call("rpc", map[string]any{"params": map[string]any{"method": "nope"}}); mustMarshal(r["error"]) != `{"code":404,"message":"no method nope"}` {
			t.Fatalf("rpc of an unknown method: %v", r)
		}
	})
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
