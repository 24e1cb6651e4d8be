package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// wantAPIError checks an API error reply: its HTTP status and error code.
func wantAPIError(t *testing.T, status int, body msg, wantStatus, wantCode int) {
	t.Helper()
	if status != wantStatus || int(body.obj("error").num("code")) != wantCode {
		t.Fatalf("reply %d %v, want %d with error %d", status, body, wantStatus, wantCode)
	}
}

func TestAPIPublish(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	sub, _ := connected(t, ts.url, "")
	res := sub.ok("subscribe", msg{"channel": "chat:room"})

	st, body := apiPost(t, base, "publish", msg{"channel": "chat:room", "data": msg{"text": "from the backend"}}, nil)
	// The channel had no stream when it was subscribed to: the first
	// publication starts one.
	if st != http.StatusOK || body.num("offset") != 1 || body.str("epoch") == "" || res.str("epoch") != "" {
		t.Fatalf("publish: %d %v (subscribed at epoch %q)", st, body, res.str("epoch"))
	}
	m := sub.nextPush("pub")
	if m.str("channel") != "chat:room" || m.obj("data").str("text") != "from the backend" || m.num("offset") != 1 || m.str("epoch") != body.str("epoch") {
		t.Fatalf("push %v", m)
	}
	if _, ok := m["info"]; ok {
		t.Fatalf("publication from the API carries info: %v", m)
	}

	// Whitespace in data is compacted away, so that it fits on one line.
	req, _ := http.NewRequest("POST", base+"/api/publish", strings.NewReader("{\"channel\":\"chat:room\",\"data\":{\n  \"a\" : [1, 2]\n}}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}
	m = sub.nextPush("pub")
	if m.num("offset") != 2 {
		t.Fatalf("push %v", m)
	}
	sub.mu.Lock()
	raw := bytes.Join(sub.raw, []byte("\n"))
	sub.mu.Unlock()
	if !bytes.Contains(raw, []byte(`"data":{"a":[1,2]}`)) {
		t.Fatalf("publication not compacted: %s", raw)
	}

	// A namespace without history: no position.
	sub.ok("subscribe", msg{"channel": "plain"})
	st, body = apiPost(t, base, "publish", msg{"channel": "plain", "data": 1}, nil)
	if st != http.StatusOK || len(body) != 0 {
		t.Fatalf("publish without history: %d %v, want {}", st, body)
	}
	if m := sub.nextPush("pub"); m.str("channel") != "plain" || m["offset"] != nil || m["epoch"] != nil || m["data"] != float64(1) {
		t.Fatalf("push %v", m)
	}

	for _, tc := range []struct {
		name string
		body any
		code int
	}{
		{"unknown namespace", msg{"channel": "nope:x", "data": 1}, 102},
		{"invalid channel", msg{"channel": "chat:a b", "data": 1}, 102},
		{"no channel", msg{"data": 1}, 102},
		{"no data", msg{"channel": "chat:room"}, 107},
		{"not an object", []int{1}, 107},
	} {
		st, body := apiPost(t, base, "publish", tc.body, nil)
		if st != http.StatusBadRequest || int(body.obj("error").num("code")) != tc.code {
			t.Errorf("publish %s: %d %v, want 400 with error %d", tc.name, st, body, tc.code)
		}
	}
	if v := metricValue(t, base, "duplex_api_requests_total", `method="publish"`); v != 3 {
		t.Fatalf("api requests{publish} = %v, want 3", v)
	}
}

func TestAPIBroadcast(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	sub, _ := connected(t, ts.url, "")
	sub.ok("subscribe", msg{"channel": "chat:a"})
	sub.ok("subscribe", msg{"channel": "feed:b"})

	st, body := apiPost(t, base, "broadcast", msg{"channels": []string{"chat:a", "nope:x", "feed:b", "bad channel"}, "data": msg{"v": 7}}, nil)
	if st != http.StatusOK {
		t.Fatalf("broadcast: %d %v", st, body)
	}
	results, _ := body["results"].([]any)
	if len(results) != 4 {
		t.Fatalf("broadcast results %v", body)
	}
	item := func(i int) msg { m, _ := results[i].(map[string]any); return msg(m) }
	if r := item(0); r.num("offset") != 1 || r.str("epoch") == "" || r["error"] != nil {
		t.Fatalf("result for chat:a: %v", r)
	}
	if r := item(1); r.obj("error").num("code") != 102 || r["offset"] != nil {
		t.Fatalf("result for nope:x: %v", r)
	}
	if r := item(2); r.num("offset") != 1 || r.str("epoch") == "" || r["error"] != nil {
		t.Fatalf("result for feed:b: %v", r)
	}
	if r := item(3); r.obj("error").num("code") != 102 {
		t.Fatalf("result for an invalid channel: %v", r)
	}
	got := map[string]bool{}
	for range 2 {
		m := sub.nextPush("pub")
		if m.obj("data").num("v") != 7 || m["info"] != nil {
			t.Fatalf("push %v", m)
		}
		got[m.str("channel")] = true
	}
	if !got["chat:a"] || !got["feed:b"] {
		t.Fatalf("publications on %v", got)
	}

	st, body = apiPost(t, base, "broadcast", msg{"channels": []string{}, "data": 1}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 107)
	st, body = apiPost(t, base, "broadcast", msg{"channels": []string{"chat:a"}}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 107)
}

func TestAPIPresence(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	a, ares := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "info": msg{"name": "Alice"}}))
	b, bres := connected(t, ts.url, token(t, map[string]any{"sub": "bob"}))
	a.ok("subscribe", msg{"channel": "chat:p"})
	b.ok("subscribe", msg{"channel": "chat:p"})

	st, body := apiPost(t, base, "presence", msg{"channel": "chat:p"}, nil)
	clients := body.obj("clients")
	if st != http.StatusOK || len(clients) != 2 {
		t.Fatalf("presence: %d %v", st, body)
	}
	if ca := clients.obj(ares.str("client")); ca.str("user") != "alice" || ca.str("client") != ares.str("client") || ca.obj("info").str("name") != "Alice" {
		t.Fatalf("presence of alice: %v", ca)
	}
	if cb := clients.obj(bres.str("client")); cb.str("user") != "bob" || cb["info"] != nil {
		t.Fatalf("presence of bob: %v", cb)
	}
	st, body = apiPost(t, base, "presence_stats", msg{"channel": "chat:p"}, nil)
	if st != http.StatusOK || body.num("clients") != 2 || body.num("users") != 2 {
		t.Fatalf("presence_stats: %d %v", st, body)
	}
	// A second connection of alice: three clients, two users.
	a2, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	a2.ok("subscribe", msg{"channel": "chat:p"})
	if _, body = apiPost(t, base, "presence_stats", msg{"channel": "chat:p"}, nil); body.num("clients") != 3 || body.num("users") != 2 {
		t.Fatalf("presence_stats: %v", body)
	}

	// b leaves by closing; a2 by unsubscribing.
	b.conn.Close(websocket.StatusNormalClosure, "")
	a2.ok("unsubscribe", msg{"channel": "chat:p"})
	waitFor(t, "presence to drop to alice", func() bool {
		_, body := apiPost(t, base, "presence_stats", msg{"channel": "chat:p"}, nil)
		return body.num("clients") == 1 && body.num("users") == 1
	})
	_, body = apiPost(t, base, "presence", msg{"channel": "chat:p"}, nil)
	if clients := body.obj("clients"); len(clients) != 1 || clients.obj(ares.str("client")).str("user") != "alice" {
		t.Fatalf("presence: %v", body)
	}
	// A channel nobody is in.
	if st, body := apiPost(t, base, "presence", msg{"channel": "chat:empty"}, nil); st != http.StatusOK || body["clients"] == nil || len(body.obj("clients")) != 0 {
		t.Fatalf("presence of an empty channel: %d %v", st, body)
	}

	st, body = apiPost(t, base, "presence", msg{"channel": "plain"}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 108)
	st, body = apiPost(t, base, "presence_stats", msg{"channel": "feed:x"}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 108)
	st, body = apiPost(t, base, "presence", msg{"channel": "nope:x"}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 102)
}

func TestAPIHistory(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	var epoch string
	for i := 1; i <= 5; i++ {
		st, body := apiPost(t, base, "publish", msg{"channel": "chat:h", "data": msg{"n": i}}, nil)
		if st != http.StatusOK || body.num("offset") != float64(i) {
			t.Fatalf("publish %d: %d %v", i, st, body)
		}
		epoch = body.str("epoch")
	}
	offsets := func(body msg) []int {
		var out []int
		pubs, ok := body["publications"].([]any)
		if !ok {
			t.Fatalf("history without publications: %v", body)
		}
		for _, p := range pubs {
			m := msg(p.(map[string]any))
			if m.str("push") != "pub" || m.str("channel") != "chat:h" || m.str("epoch") != epoch || m.obj("data").num("n") != m.num("offset") {
				t.Fatalf("publication %v", m)
			}
			out = append(out, int(m.num("offset")))
		}
		return out
	}
	check := func(name string, req msg, want ...int) {
		t.Helper()
		req["channel"] = "chat:h"
		st, body := apiPost(t, base, "history", req, nil)
		if st != http.StatusOK || body.num("offset") != 5 || body.str("epoch") != epoch {
			t.Fatalf("history %s: %d %v", name, st, body)
		}
		got := offsets(body)
		if len(got) != len(want) || (len(want) > 0 && !equalInts(got, want)) {
			t.Fatalf("history %s: offsets %v, want %v", name, got, want)
		}
	}
	check("all", msg{}, 1, 2, 3, 4, 5)
	check("limit", msg{"limit": 2}, 1, 2)
	check("limit 0", msg{"limit": 0})
	check("reverse", msg{"reverse": true}, 5, 4, 3, 2, 1)
	check("reverse limit", msg{"reverse": true, "limit": 2}, 5, 4)
	check("since", msg{"since": msg{"offset": 3, "epoch": epoch}}, 4, 5)
	check("since limit", msg{"since": msg{"offset": 1, "epoch": epoch}, "limit": 2}, 2, 3)
	check("since the top", msg{"since": msg{"offset": 5, "epoch": epoch}})

	st, body := apiPost(t, base, "history", msg{"channel": "chat:h", "since": msg{"offset": 3, "epoch": "other"}}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 111)
	st, body = apiPost(t, base, "history", msg{"channel": "chat:h", "limit": -1}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 107)
	st, body = apiPost(t, base, "history", msg{"channel": "plain"}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 108)
	st, body = apiPost(t, base, "history", msg{"channel": "nope:x"}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 102)

	// A channel never published to has no stream, and reading it makes
	// none.
	st, body = apiPost(t, base, "history", msg{"channel": "chat:new"}, nil)
	if st != http.StatusOK || body.str("epoch") != "" || body.num("offset") != 0 || body["publications"] == nil {
		t.Fatalf("history of a new channel: %d %v", st, body)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAPIDisconnect(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	alice := token(t, map[string]any{"sub": "alice"})
	a1, _ := connected(t, ts.url, alice)
	a2, _ := connected(t, ts.url, alice)
	bob, _ := connected(t, ts.url, token(t, map[string]any{"sub": "bob"}))
	anon, _ := connected(t, ts.url, "")

	st, body := apiPost(t, base, "disconnect", msg{"user": "alice", "reason": "account closed"}, nil)
	if st != http.StatusOK || body.num("disconnected") != 2 {
		t.Fatalf("disconnect: %d %v", st, body)
	}
	expectClose(t, a1, CloseDisconnected, "account closed")
	expectClose(t, a2, CloseDisconnected, "account closed")
	bob.ok("ping", nil)
	anon.ok("ping", nil)
	wantMetric(t, base, disconnects, `reason="server_disconnect"`, 2)

	// Gone users, anonymous "users": nothing to disconnect.
	if st, body := apiPost(t, base, "disconnect", msg{"user": "alice"}, nil); st != http.StatusOK || body.num("disconnected") != 0 {
		t.Fatalf("disconnect again: %d %v", st, body)
	}
	st, body = apiPost(t, base, "disconnect", msg{"user": ""}, nil)
	wantAPIError(t, st, body, http.StatusBadRequest, 107)
	anon.ok("ping", nil)

	// Codes outside 4000–4999 are refused, and nobody is disconnected.
	for _, code := range []int{1000, 1001, 3999, 5000, -1} {
		st, body := apiPost(t, base, "disconnect", msg{"user": "bob", "code": code}, nil)
		wantAPIError(t, st, body, http.StatusBadRequest, 107)
	}
	bob.ok("ping", nil)

	// Another code, and the default reason.
	st, body = apiPost(t, base, "disconnect", msg{"user": "bob", "code": 4004}, nil)
	if st != http.StatusOK || body.num("disconnected") != 1 {
		t.Fatalf("disconnect bob: %d %v", st, body)
	}
	expectClose(t, bob, CloseReconnect, "disconnected") // the default reason
	wantMetric(t, base, disconnects, `reason="server_disconnect"`, 3)

	// The user's slots are free again.
	waitMetric(t, base, connGauge, "", func(v float64) bool { return v == 1 })
	_, res := connected(t, ts.url, alice)
	if res.str("user") != "alice" {
		t.Fatalf("connect result %v", res)
	}
}

func TestAPIDisconnectLongReason(t *testing.T) {
	ts := newServer(t, nil)
	c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	long := strings.Repeat("é", 100) // 200 bytes
	st, body := apiPost(t, ts.http.URL, "disconnect", msg{"user": "alice", "reason": long}, nil)
	if st != http.StatusOK || body.num("disconnected") != 1 {
		t.Fatalf("disconnect: %d %v", st, body)
	}
	_, reason := expectClose(t, c, CloseDisconnected, "")
	if len(reason) > 123 || !strings.HasPrefix(long, reason) || len(reason) < 120 {
		t.Fatalf("reason of %d bytes %q", len(reason), reason)
	}
}

func TestAPIChannels(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	a, _ := connected(t, ts.url, "")
	b, _ := connected(t, ts.url, "")
	a.ok("subscribe", msg{"channel": "chat:a"})
	b.ok("subscribe", msg{"channel": "chat:a"})
	a.ok("subscribe", msg{"channel": "chat:b"})
	a.ok("subscribe", msg{"channel": "feed:x"})

	channels := func(prefix any) msg {
		t.Helper()
		req := msg{}
		if prefix != nil {
			req["prefix"] = prefix
		}
		st, body := apiPost(t, base, "channels", req, nil)
		if st != http.StatusOK || body["channels"] == nil {
			t.Fatalf("channels: %d %v", st, body)
		}
		return body.obj("channels")
	}
	got := channels("chat:")
	if len(got) != 2 || got.obj("chat:a").num("subscribers") != 2 || got.obj("chat:b").num("subscribers") != 1 {
		t.Fatalf("channels chat: %v", got)
	}
	if got := channels(nil); len(got) != 3 || got.obj("feed:x").num("subscribers") != 1 {
		t.Fatalf("channels: %v", got)
	}
	if got := channels("none:"); len(got) != 0 {
		t.Fatalf("channels none: %v", got)
	}

	b.ok("unsubscribe", msg{"channel": "chat:a"})
	a.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the channels to empty", func() bool { return len(channels("")) == 0 })
}

func TestAPIRequests(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL

	st, body := apiPost(t, base, "frobnicate", msg{}, nil)
	wantAPIError(t, st, body, http.StatusNotFound, 104)
	st, body = apiPost(t, base, "", msg{}, nil)
	wantAPIError(t, st, body, http.StatusNotFound, 104)

	resp, err := http.Get(base + "/api/publish")
	if err != nil {
		t.Fatal(err)
	}
	var m msg
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || m.obj("error") == nil {
		t.Fatalf("GET: %s Allow %q %v", resp.Status, resp.Header.Get("Allow"), m)
	}

	for _, raw := range []string{"", "not json", `"a string"`} {
		resp, err := http.Post(base+"/api/publish", "application/json", strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var m msg
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || m.obj("error").num("code") != 107 {
			t.Errorf("body %q: %s %v", raw, resp.Status, m)
		}
	}
	// A body over 1 MiB.
	big := `{"channel":"chat:x","data":"` + strings.Repeat("x", 1<<20) + `"}`
	resp, err = http.Post(base+"/api/publish", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversized body: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
}

func TestAPIKey(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.APIKey = "k3y-k3y" })
	base := ts.http.URL
	req := msg{"channel": "chat:k", "data": 1}
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong", http.Header{"Authorization": {"apikey nope"}}, http.StatusUnauthorized},
		{"prefix of the key", http.Header{"Authorization": {"apikey k3y"}}, http.StatusUnauthorized},
		{"other scheme", http.Header{"Authorization": {"Bearer k3y-k3y"}}, http.StatusUnauthorized},
		{"bare key", http.Header{"Authorization": {"k3y-k3y"}}, http.StatusUnauthorized},
		{"right", http.Header{"Authorization": {"apikey k3y-k3y"}}, http.StatusOK},
	} {
		st, body := apiPost(t, base, "publish", req, tc.header)
		if st != tc.status {
			t.Errorf("%s key: %d %v, want %d", tc.name, st, body, tc.status)
		}
		if st == http.StatusUnauthorized && body.obj("error") == nil {
			t.Errorf("%s key: %v, want an error object", tc.name, body)
		}
	}
	// Only the right key published.
	st, body := apiPost(t, base, "history", msg{"channel": "chat:k"}, http.Header{"Authorization": {"apikey k3y-k3y"}})
	if st != http.StatusOK || body.num("offset") != 1 {
		t.Fatalf("history: %d %v", st, body)
	}

	// Without a key, loopback clients (httptest's) are served.
	open := newServer(t, nil)
	if st, body := apiPost(t, open.http.URL, "publish", req, nil); st != http.StatusOK {
		t.Fatalf("loopback without a key: %d %v", st, body)
	}
}

func TestClientCommandErrors(t *testing.T) {
	ts := newServer(t, nil)
	c, _ := connected(t, ts.url, "")
	c.ok("subscribe", msg{"channel": "chat:a"})
	epoch := c.ok("history", msg{"channel": "chat:a"}).str("epoch")
	for _, tc := range []struct {
		name   string
		method string
		fields msg
		code   int
	}{
		{"presence without presence", "presence", msg{"channel": "plain"}, 108},
		{"presence_stats without presence", "presence_stats", msg{"channel": "feed:x"}, 108},
		{"history without history", "history", msg{"channel": "plain"}, 108},
		{"history, unknown namespace", "history", msg{"channel": "nope:x"}, 102},
		{"history from another epoch", "history", msg{"channel": "chat:a", "since": msg{"offset": 1, "epoch": epoch + "x"}}, 111},
		{"history with a negative limit", "history", msg{"channel": "chat:a", "limit": -1}, 107},
		{"subscribe, unknown namespace", "subscribe", msg{"channel": "nope:x"}, 102},
		{"subscribe, invalid channel", "subscribe", msg{"channel": "chat:a b"}, 102},
		{"subscribe, no channel", "subscribe", msg{}, 102},
		{"subscribe, channel too long", "subscribe", msg{"channel": "chat:" + strings.Repeat("x", 251)}, 102},
		{"presence, unknown namespace", "presence", msg{"channel": "nope:x"}, 102},
		{"unknown method", "frobnicate", nil, 104},
		{"no method", "", nil, 104},
		{"unsubscribe when not subscribed", "unsubscribe", msg{"channel": "chat:zz"}, 110},
		{"subscribe twice", "subscribe", msg{"channel": "chat:a"}, 105},
		{"publish in a server-only namespace", "publish", msg{"channel": "feed:x", "data": 1}, 103},
		{"publish without data", "publish", msg{"channel": "plain"}, 107},
		{"publish, unknown namespace", "publish", msg{"channel": "nope:x", "data": 1}, 102},
		{"publish anonymously in a users-only namespace", "publish", msg{"channel": "users:x", "data": 1}, 103},
		{"subscribe anonymously in a users-only namespace", "subscribe", msg{"channel": "users:x"}, 103},
		{"presence anonymously in a users-only namespace", "presence", msg{"channel": "users:x"}, 103},
		{"connect again", "connect", nil, 112},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := c.errCode(tc.method, tc.fields); code != tc.code {
				t.Fatalf("%s %v: error %d, want %d", tc.method, tc.fields, code, tc.code)
			}
		})
	}
	// After all that the connection works.
	c.ok("ping", nil)
	if code := c.errCode("unsubscribe", msg{"channel": "chat:a"}); code != 0 {
		t.Fatalf("unsubscribe: error %d", code)
	}
	if code := c.errCode("unsubscribe", msg{"channel": "chat:a"}); code != 110 {
		t.Fatalf("second unsubscribe: error %d, want 110", code)
	}
}

func TestClientPresenceAndHistory(t *testing.T) {
	ts := newServer(t, nil)
	a, ares := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	b, bres := connected(t, ts.url, "")
	a.ok("subscribe", msg{"channel": "chat:p"})
	b.ok("subscribe", msg{"channel": "chat:p"})
	// a sees b join.
	if j := a.nextPush("join"); j.str("channel") != "chat:p" || j.obj("info").str("client") != bres.str("client") {
		t.Fatalf("join %v", j)
	}

	res := a.ok("presence", msg{"channel": "chat:p"})
	clients := res.obj("clients")
	if len(clients) != 2 || clients.obj(ares.str("client")).str("user") != "alice" || clients.obj(bres.str("client")).str("user") != "" {
		t.Fatalf("presence %v", res)
	}
	if st := a.ok("presence_stats", msg{"channel": "chat:p"}); st.num("clients") != 2 || st.num("users") != 2 {
		t.Fatalf("presence_stats %v", st)
	}
	// A client may read what it could subscribe to without subscribing.
	c, _ := connected(t, ts.url, "")
	if st := c.ok("presence_stats", msg{"channel": "chat:p"}); st.num("clients") != 2 {
		t.Fatalf("presence_stats of a non-subscriber %v", st)
	}

	b.ok("unsubscribe", msg{"channel": "chat:p"})
	if l := a.nextPush("leave"); l.obj("info").str("client") != bres.str("client") {
		t.Fatalf("leave %v", l)
	}
	if st := a.ok("presence_stats", msg{"channel": "chat:p"}); st.num("clients") != 1 || st.num("users") != 1 {
		t.Fatalf("presence_stats after b left %v", st)
	}

	for i := 1; i <= 3; i++ {
		b.ok("publish", msg{"channel": "chat:p", "data": i})
	}
	h := c.ok("history", msg{"channel": "chat:p", "reverse": true, "limit": 2})
	pubs, _ := h["publications"].([]any)
	if len(pubs) != 2 || h.num("offset") != 3 {
		t.Fatalf("history %v", h)
	}
	if first := msg(pubs[0].(map[string]any)); first.num("offset") != 3 || first["data"] != float64(3) || first.obj("info").str("client") != bres.str("client") {
		t.Fatalf("newest publication %v", first)
	}
	h = c.ok("history", msg{"channel": "chat:p", "since": msg{"offset": 2, "epoch": h.str("epoch")}})
	if pubs, _ := h["publications"].([]any); len(pubs) != 1 {
		t.Fatalf("history since 2: %v", h)
	}
}

// TestAPIUnsubscribe: the backend ends a user's subscription; the client
// gets an unsubscribe push and no more publications of the channel.
func TestAPIUnsubscribe(t *testing.T) {
	ts := newTestServer(t, nil)
	c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "bob"}))
	c.ok("subscribe", msg{"channel": "chat:room"})
	status, res := apiPost(t, ts.http.URL, "unsubscribe", msg{"user": "bob", "channel": "chat:room", "reason": "moved"}, nil)
	if status != 200 || res.num("unsubscribed") != 1 {
		t.Fatalf("unsubscribe: %d %v", status, res)
	}
	m := c.next()
	if m.str("push") != "unsubscribe" || m.str("channel") != "chat:room" || m.num("code") != UnsubscribeServer || m.str("reason") != "moved" {
		t.Fatalf("push %v", m)
	}
	// The subscription is gone: publishing reaches nobody, and the client
	// may subscribe again.
	if _, err := ts.Publish(t.Context(), "chat:room", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if r := c.ok("subscribe", msg{"channel": "chat:room"}); r.str("epoch") == "" {
		t.Fatalf("resubscribe %v", r)
	}
	if status, _ := apiPost(t, ts.http.URL, "unsubscribe", msg{"user": "bob"}, nil); status != 400 {
		t.Fatalf("unsubscribe without channel: %d", status)
	}
}

// Publish refuses data that is not UTF-8, from the API and from a program
// that embeds the gateway alike: it would reach subscribers in text
// frames, which every client must fail (RFC 6455 section 8.1), and again
// on each recovery.
func TestPublishRefusesInvalidUTF8(t *testing.T) {
	ts := newTestServer(t, nil)
	bad := json.RawMessage("\"\xff\xfe\"")
	if _, err := ts.Publish(t.Context(), "chat:room", bad); asError(err).Code != ErrBadRequest.Code {
		t.Fatalf("Publish of invalid UTF-8: %v, want bad request", err)
	}
	body := []byte(`{"channel":"chat:room","data":"` + "\xff" + `"}`)
	req, _ := http.NewRequest("POST", ts.http.URL+"/api/publish", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("API publish of invalid UTF-8: %d, want 400", resp.StatusCode)
	}
}
