package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The Pusher protocol against raw WebSocket clients: what pusher-js hides
// (close codes, the exact events). peers/interop/pusher_test.go runs the
// real pusher-js and the pusher server SDK against it.

var testPusherApps = []PusherApp{
	{ID: "app1", Key: "key1", Secret: "secret1", ClientEvents: true, ClientEventRate: 5, MaxPresenceMembers: 2},
	{ID: "app2", Key: "key2", Secret: "secret2"},
}

func newPusherServer(t *testing.T, mutate func(*Config)) *testServer {
	return newTestServer(t, func(cfg *Config) {
		cfg.Pusher.Apps = testPusherApps
		cfg.PresenceInterval = 20 * time.Millisecond
		if mutate != nil {
			mutate(cfg)
		}
	})
}

func pusherURL(ts *testServer, key, query string) string {
	return strings.TrimSuffix(ts.url, "/ws") + "/app/" + key + query
}

// dialPusher connects a Pusher client of key and returns it with its
// socket id.
func dialPusher(t *testing.T, ts *testServer, key string) (*client, string) {
	t.Helper()
	c := dialClient(t, pusherURL(ts, key, "?protocol=7&client=js&version=8.6.0"), &websocket.DialOptions{})
	m := c.next()
	if m.str("event") != "pusher:connection_established" {
		t.Fatalf("first event %v, want pusher:connection_established", m)
	}
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	if err := json.Unmarshal([]byte(m.str("data")), &d); err != nil {
		t.Fatalf("connection_established data %q: %v", m.str("data"), err)
	}
	if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(d.SocketID) || d.ActivityTimeout != 120 {
		t.Fatalf("connection_established data %+v", d)
	}
	return c, d.SocketID
}

// privateRoomPair connects two clients of app1 to ts, both subscribed to
// private-room.
func privateRoomPair(t *testing.T, ts *testServer) (a, b *client) {
	t.Helper()
	a, sa := dialPusher(t, ts, "key1")
	b, sb := dialPusher(t, ts, "key1")
	for _, p := range []struct {
		c      *client
		socket string
	}{{a, sa}, {b, sb}} {
		p.c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "private-room", "auth": channelAuth("key1", "secret1", p.socket+":private-room")})
		p.c.nextEvent("pusher_internal:subscription_succeeded")
	}
	return a, b
}

func (c *client) pusherSend(event, channel string, data any) {
	c.t.Helper()
	m := msg{"event": event, "data": data}
	if channel != "" {
		m["channel"] = channel
	}
	b, _ := json.Marshal(m)
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatalf("send %s: %v", event, err)
	}
}

// nextEvent returns the next event named event, failing on another.
func (c *client) nextEvent(event string) msg {
	c.t.Helper()
	m := c.next()
	if m.str("event") != event {
		c.t.Fatalf("got %v, want the event %s", m, event)
	}
	return m
}

// quiet fails if an event arrives within d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.lines:
		c.t.Fatalf("unexpected event %v", m)
	case <-time.After(d):
	}
}

func channelAuth(key, secret, signed string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signed))
	return key + ":" + hex.EncodeToString(m.Sum(nil))
}

// TestPusherRefusals: an unknown key or a missing or unsupported protocol
// version gets pusher:error and the close code Pusher uses, which tells
// pusher-js not to reconnect.
func TestPusherRefusals(t *testing.T) {
	ts := newPusherServer(t, nil)
	for _, tc := range []struct {
		key, query string
		code       websocket.StatusCode
	}{
		{"nokey", "?protocol=7", 4001},
		{"key1", "", 4008},
		{"key1", "?protocol=6", 4007},
		{"key1", "?protocol=7a", 4006},
	} {
		c := dialClient(t, pusherURL(ts, tc.key, tc.query), &websocket.DialOptions{})
		m := c.nextEvent("pusher:error")
		if got := int(m.obj("data").num("code")); got != int(tc.code) {
			t.Errorf("%s%s: pusher:error code %d, want %d", tc.key, tc.query, got, tc.code)
		}
		if code, _ := c.closed(); code != tc.code {
			t.Errorf("%s%s: closed with %d, want %d", tc.key, tc.query, code, tc.code)
		}
	}
}

// TestPusherPublicChannels: ping, subscribe, events from the node, one per
// message; unsubscribe; apps isolated from each other and from duplex
// clients.
func TestPusherPublicChannels(t *testing.T) {
	ts := newPusherServer(t, nil)
	a, _ := dialPusher(t, ts, "key1")
	other, _ := dialPusher(t, ts, "key2")

	a.pusherSend("pusher:ping", "", map[string]any{})
	a.nextEvent("pusher:pong")

	for _, c := range []*client{a, other} {
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "news"})
		if m := c.nextEvent("pusher_internal:subscription_succeeded"); m.str("channel") != "news" {
			t.Fatalf("subscription_succeeded for %v", m)
		}
	}
	// A duplex client cannot reach the apps' channels.
	d, _ := connected(t, ts.url, "")
	if code := d.errCode("subscribe", msg{"channel": "$pusher.app1:news"}); code != ErrPermissionDenied.Code {
		t.Fatalf("duplex subscribe to a Pusher channel: error %d", code)
	}

	ctx := context.Background()
	for i := range 3 {
		if err := ts.PusherTrigger(ctx, "app1", "update", []string{"news"}, json.RawMessage(strconv.Quote(fmt.Sprintf(`{"n":%d}`, i)))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		m := a.nextEvent("update")
		if m.str("channel") != "news" || m.str("data") != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("event %v", m)
		}
	}
	other.quiet(100 * time.Millisecond)
	// The backend API of PROTOCOL.md reaches the app's channel too: data
	// that is no Pusher event comes as the event "message".
	if st, res := apiPost(t, ts.http.URL, "publish", msg{"channel": "$pusher.app1:news", "data": msg{"x": 1}}, nil); st != 200 {
		t.Fatalf("api publish: %d %v", st, res)
	}
	if m := a.nextEvent("message"); m.str("channel") != "news" || m.obj("data")["x"] != float64(1) {
		t.Fatalf("api publication: %v", m)
	}
	other.quiet(50 * time.Millisecond)
	a.mu.Lock()
	for _, raw := range a.raw {
		if strings.Contains(string(raw), "\n") {
			t.Errorf("several events in one message: %q", raw)
		}
	}
	a.mu.Unlock()

	a.pusherSend("pusher:unsubscribe", "", map[string]any{"channel": "news"})
	a.pusherSend("pusher:ping", "", map[string]any{})
	a.nextEvent("pusher:pong") // the unsubscribe is done
	if err := ts.PusherTrigger(ctx, "app1", "update", []string{"news"}, json.RawMessage(`"{}"`)); err != nil {
		t.Fatal(err)
	}
	a.quiet(100 * time.Millisecond)

	a.pusherSend("pusher:bogus", "", map[string]any{})
	if m := a.nextEvent("pusher:error"); m.obj("data")["code"] != nil {
		t.Fatalf("unknown event: %v", m)
	}
}

// TestPusherPrivateChannels: the channel signature is checked, on
// private-encrypted- and private-cache- channels too, and a bad one
// refused with pusher:subscription_error.
func TestPusherPrivateChannels(t *testing.T) {
	ts := newPusherServer(t, nil)
	c, socket := dialPusher(t, ts, "key1")
	for _, tc := range []struct{ channel, auth string }{
		{"private-a", channelAuth("key1", "wrong", socket+":private-a")},
		{"private-a", channelAuth("key2", "secret1", socket+":private-a")},
		{"private-a", channelAuth("key1", "secret1", "1.2:private-a")},
		{"private-a", ""},
		{"private-encrypted-a", channelAuth("key1", "secret1", socket+":private-a")},
		{"private-cache-a", ""},
	} {
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": tc.channel, "auth": tc.auth})
		m := c.nextEvent("pusher:subscription_error")
		if m.str("channel") != tc.channel || m.obj("data").num("status") == 0 {
			t.Fatalf("%s with %q: %v", tc.channel, tc.auth, m)
		}
	}
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "private-a", "auth": channelAuth("key1", "secret1", socket+":private-a")})
	c.nextEvent("pusher_internal:subscription_succeeded")
}

// TestPusherClientEvents: client events reach the other subscribers, not
// the sender, within the rate (4301 over it), only on private and
// presence channels, only in apps that allow them.
func TestPusherClientEvents(t *testing.T) {
	ts := newPusherServer(t, nil)
	a, b := privateRoomPair(t, ts)
	a.pusherSend("client-typing", "private-room", map[string]any{"who": "a"})
	m := b.nextEvent("client-typing")
	if m.str("channel") != "private-room" || m.obj("data").str("who") != "a" {
		t.Fatalf("client event %v", m)
	}
	a.quiet(100 * time.Millisecond)

	// The rate: 5 a second, a burst of 5, of which one is spent.
	for range 4 {
		a.pusherSend("client-typing", "private-room", map[string]any{})
	}
	a.pusherSend("client-typing", "private-room", map[string]any{})
	if m := a.nextEvent("pusher:error"); int(m.obj("data").num("code")) != 4301 {
		t.Fatalf("over the rate: %v", m)
	}
	for range 4 {
		b.nextEvent("client-typing")
	}
	b.quiet(100 * time.Millisecond)

	a.pusherSend("pusher:subscribe", "", map[string]any{"channel": "open"})
	a.nextEvent("pusher_internal:subscription_succeeded")
	time.Sleep(250 * time.Millisecond) // a token back
	a.pusherSend("client-x", "open", map[string]any{})
	a.nextEvent("pusher:error") // public channel

	c, sc := dialPusher(t, ts, "key2")
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "private-room", "auth": channelAuth("key2", "secret2", sc+":private-room")})
	c.nextEvent("pusher_internal:subscription_succeeded")
	c.pusherSend("client-x", "private-room", map[string]any{})
	c.nextEvent("pusher:error") // app2 does not allow them
}

// TestPusherPresence: channel_data signed with the channel; the member
// list on subscribe; member_added and member_removed once per user, not
// per connection, and not to the user's own connections; the member cap.
func TestPusherPresence(t *testing.T) {
	ts := newPusherServer(t, nil)
	join := func(user string) (*client, msg) {
		c, socket := dialPusher(t, ts, "key1")
		data := fmt.Sprintf(`{"user_id":%q,"user_info":{"name":"%s!"}}`, user, user)
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "presence-room", "channel_data": data,
			"auth": channelAuth("key1", "secret1", socket+":presence-room:"+data)})
		m := c.next()
		if m.str("event") != "pusher_internal:subscription_succeeded" {
			return c, m
		}
		var d struct {
			Presence struct {
				Count int                        `json:"count"`
				IDs   []string                   `json:"ids"`
				Hash  map[string]json.RawMessage `json:"hash"`
			} `json:"presence"`
		}
		if err := json.Unmarshal([]byte(m.str("data")), &d); err != nil {
			t.Fatalf("presence data %q: %v", m.str("data"), err)
		}
		return c, msg{"count": float64(d.Presence.Count), "hash": d.Presence.Hash}
	}
	alice, m := join("alice")
	if m.num("count") != 1 {
		t.Fatalf("alice alone: %v", m)
	}
	bob, m := join("bob")
	if m.num("count") != 2 || string(m["hash"].(map[string]json.RawMessage)["alice"]) != `{"name":"alice!"}` {
		t.Fatalf("bob sees %v", m)
	}
	added := alice.nextEvent("pusher_internal:member_added")
	if added.str("channel") != "presence-room" || added.str("data") != `{"user_id":"bob","user_info":{"name":"bob!"}}` {
		t.Fatalf("member_added %v", added)
	}
	// A client event on a presence channel carries its sender's user id.
	bob.pusherSend("client-wave", "presence-room", map[string]any{"hi": 1})
	if m := alice.nextEvent("client-wave"); m.str("user_id") != "bob" || m.obj("data")["hi"] != float64(1) {
		t.Fatalf("client event on presence: %v", m)
	}
	// Bob's second connection is no new member, for alice nor for bob; a
	// third user is over the cap of 2.
	bob2, _ := join("bob")
	bob.quiet(100 * time.Millisecond)
	carol, m := join("carol")
	if m.str("event") != "pusher:subscription_error" || m.obj("data").num("status") != 429 {
		t.Fatalf("carol over the cap: %v", m)
	}
	carol.quiet(10 * time.Millisecond)
	bob2.conn.CloseNow()
	alice.quiet(200 * time.Millisecond)
	bob.conn.CloseNow()
	removed := alice.nextEvent("pusher_internal:member_removed")
	if removed.str("data") != `{"user_id":"bob"}` {
		t.Fatalf("member_removed %v", removed)
	}

	// A bad signature of channel_data.
	c, socket := dialPusher(t, ts, "key1")
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "presence-room", "channel_data": `{"user_id":"mallory"}`,
		"auth": channelAuth("key1", "secret1", socket+":presence-room:"+`{"user_id":"alice"}`)})
	c.nextEvent("pusher:subscription_error")
}

// TestPusherPresenceMember: channel_data's user_id may be a string or a
// number; anything else is refused.
func TestPusherPresenceMember(t *testing.T) {
	for data, want := range map[string]string{
		`{"user_id":"u1","user_info":{"a":1}}`: "u1",
		`{"user_id":42}`:                       "42",
		`{"user_id":4.5e1}`:                    "4.5e1",
		`{"user_id":""}`:                       "",
		`{"user_id":null}`:                     "",
		`{"user_id":{}}`:                       "",
		`{}`:                                   "",
		`[1]`:                                  "",
		``:                                     "",
	} {
		m, err := presenceMember("1.2", data)
		switch {
		case want == "" && err == nil:
			t.Errorf("%s: accepted as %+v", data, m)
		case want != "" && (err != nil || m.User != want || m.Client != "1.2"):
			t.Errorf("%s: %+v, %v; want user %q", data, m, err, want)
		}
	}
}

// TestPusherLimitsClose: the gateway's limits apply to Pusher clients,
// closing with Pusher's codes and a pusher:error first.
func TestPusherLimitsClose(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) { cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 1, 2 })
	c, _ := dialPusher(t, ts, "key1")
	for range 3 {
		c.pusherSend("pusher:ping", "", map[string]any{})
	}
	c.nextEvent("pusher:pong")
	c.nextEvent("pusher:pong")
	if m := c.nextEvent("pusher:error"); int(m.obj("data").num("code")) != 4100 {
		t.Fatalf("over the command rate: %v", m)
	}
	if code, _ := c.closed(); code != 4100 {
		t.Fatalf("closed with %d, want 4100", code)
	}
	waitMetric(t, ts.http.URL, "duplex_disconnects_total", `reason="message_rate"`, func(v float64) bool { return v == 1 })

	// A binary message is no Pusher event: 4000, which pusher-js does not
	// retry.
	c, _ = dialPusher(t, ts, "key1")
	if err := c.conn.Write(context.Background(), websocket.MessageBinary, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	c.nextEvent("pusher:error")
	if code, _ := c.closed(); code != 4000 {
		t.Fatalf("binary message: closed with %d, want 4000", code)
	}
}

// TestPusherChannelLimitAndDrain: the channel limit answers 429; a drain
// closes Pusher clients with 4200, which pusher-js retries at once.
func TestPusherChannelLimitAndDrain(t *testing.T) {
	srv, err := New(Config{
		Pusher: Pusher{Apps: testPusherApps},
		Limits: Limits{MaxChannels: 1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ts := &testServer{Server: srv, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	c, _ := dialPusher(t, ts, "key1")
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "one"})
	c.nextEvent("pusher_internal:subscription_succeeded")
	c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "two"})
	if m := c.nextEvent("pusher:subscription_error"); m.obj("data").num("status") != 429 {
		t.Fatalf("over max_channels: %v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m := c.nextEvent("pusher:error"); int(m.obj("data").num("code")) != 4200 {
		t.Fatalf("drain: %v", m)
	}
	if code, _ := c.closed(); code != 4200 {
		t.Fatalf("drain: closed with %d, want 4200", code)
	}
}

// signedPusherRequest signs a request of the HTTP API as Pusher's SDKs do.
func signedPusherRequest(t *testing.T, base, method, path, key, secret string, body []byte, ts int64) *http.Request {
	t.Helper()
	q := url.Values{"auth_key": {key}, "auth_timestamp": {strconv.FormatInt(ts, 10)}, "auth_version": {"1.0"}}
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(pusherStringToSign(method, path, q)))
	q.Set("auth_signature", hex.EncodeToString(m.Sum(nil)))
	req, err := http.NewRequest(method, base+path+"?"+q.Encode(), strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestPusherHTTPEvents: POST /apps/{id}/events with Pusher's signature;
// socket_id keeps the event from that connection; bad signatures,
// timestamps and bodies refused with 401.
func TestPusherHTTPEvents(t *testing.T) {
	ts := newPusherServer(t, nil)
	a, sa := dialPusher(t, ts, "key1")
	b, _ := dialPusher(t, ts, "key1")
	for _, c := range []*client{a, b} {
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": "news"})
		c.nextEvent("pusher_internal:subscription_succeeded")
	}
	do := func(req *http.Request) int {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now().Unix()
	body := []byte(`{"name":"hello","channels":["news"],"data":"{\"x\":1}"}`)
	if st := do(signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", body, now)); st != 200 {
		t.Fatalf("status %d", st)
	}
	for _, c := range []*client{a, b} {
		if m := c.nextEvent("hello"); m.str("data") != `{"x":1}` {
			t.Fatalf("event %v", m)
		}
	}
	excl := []byte(`{"name":"hello","channel":"news","data":"2","socket_id":"` + sa + `"}`)
	if st := do(signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", excl, now)); st != 200 {
		t.Fatalf("status %d", st)
	}
	b.nextEvent("hello")
	a.quiet(100 * time.Millisecond)
	// Within the window, either way.
	if st := do(signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", body, time.Now().Unix()-590)); st != 200 {
		t.Fatalf("590 s old: status %d", st)
	}
	a.nextEvent("hello")
	b.nextEvent("hello")

	for name, req := range map[string]*http.Request{
		"wrong secret": signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "nope", body, now),
		"other key":    signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key2", "secret2", body, now),
		"old":          signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", body, time.Now().Unix()-610),
		"future":       signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", body, time.Now().Unix()+610),
	} {
		if st := do(req); st != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, st)
		}
	}
	tampered := signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", body, now)
	tampered.Body = ioNopCloser(`{"name":"evil","channels":["news"],"data":"1"}`)
	tampered.ContentLength = -1
	if st := do(tampered); st != http.StatusUnauthorized {
		t.Errorf("tampered body: status %d, want 401", st)
	}
	if st := do(signedPusherRequest(t, ts.http.URL, "POST", "/apps/nope/events", "key1", "secret1", body, now)); st != http.StatusNotFound {
		t.Errorf("unknown app: status %d", st)
	}
	// Pusher's bounds: 100 channels and 10 KB of data per event.
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for name, tc := range map[string]struct {
		body   any
		status int
	}{
		"101 channels": {msg{"name": "e", "channels": many, "data": "1"}, http.StatusBadRequest},
		"100 channels": {msg{"name": "e", "channels": many[:100], "data": "1"}, http.StatusOK},
		"10 KB + 1":    {msg{"name": "e", "channel": "x", "data": strings.Repeat("x", 10<<10-1)}, http.StatusRequestEntityTooLarge},
		"no name":      {msg{"channel": "x", "data": "1"}, http.StatusBadRequest},
		"no data":      {msg{"name": "e", "channel": "x"}, http.StatusBadRequest},
	} {
		b, _ := json.Marshal(tc.body)
		if st := do(signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/events", "key1", "secret1", b, time.Now().Unix())); st != tc.status {
			t.Errorf("%s: status %d, want %d", name, st, tc.status)
		}
	}
	a.quiet(50 * time.Millisecond)
	b.quiet(50 * time.Millisecond)
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// TestPusherClientEventHook: Hooks.ValidatePublish sees client events, as
// any client's publication, and can refuse them.
func TestPusherClientEventHook(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) {
		cfg.Hooks.ValidatePublish = func(ctx context.Context, p PublishRequest) error {
			if strings.Contains(string(p.Data), "forbidden") {
				return fmt.Errorf("no forbidden words")
			}
			return nil
		}
	})
	a, b := privateRoomPair(t, ts)
	a.pusherSend("client-say", "private-room", map[string]any{"text": "forbidden"})
	if m := a.nextEvent("pusher:error"); !strings.Contains(m.obj("data").str("message"), "no forbidden words") {
		t.Fatalf("refused client event: %v", m)
	}
	a.pusherSend("client-say", "private-room", map[string]any{"text": "fine"})
	if m := b.nextEvent("client-say"); m.obj("data").str("text") != "fine" {
		t.Fatalf("client event: %v", m)
	}
	b.quiet(50 * time.Millisecond)
}

// TestPusherHTTPBatch: POST /apps/{id}/batch_events triggers up to 10
// events, each on its channel, in order; larger or malformed batches are
// refused whole.
func TestPusherHTTPBatch(t *testing.T) {
	ts := newPusherServer(t, nil)
	a, _ := dialPusher(t, ts, "key1")
	for _, ch := range []string{"one", "two"} {
		a.pusherSend("pusher:subscribe", "", map[string]any{"channel": ch})
		a.nextEvent("pusher_internal:subscription_succeeded")
	}
	post := func(body string) int {
		req := signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/batch_events", "key1", "secret1", []byte(body), time.Now().Unix())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(`{"batch":[{"channel":"one","name":"e1","data":"1"},{"channel":"two","name":"e2","data":"2"},{"channel":"one","name":"e3","data":"3"}]}`); st != 200 {
		t.Fatalf("status %d", st)
	}
	for _, want := range []string{"e1:one:1", "e2:two:2", "e3:one:3"} {
		m := a.next()
		if got := m.str("event") + ":" + m.str("channel") + ":" + m.str("data"); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	eleven := `{"batch":[` + strings.Repeat(`{"channel":"one","name":"e","data":"1"},`, 10) + `{"channel":"one","name":"e","data":"1"}]}`
	for _, body := range []string{eleven, `{"batch":[]}`, `{"batch":[{"channels":["one"],"name":"e","data":"1"}]}`,
		`{"batch":[{"channel":"one","name":"ok","data":"1"},{"channel":"bad name","name":"e","data":"1"}]}`} {
		if st := post(body); st != http.StatusBadRequest {
			t.Errorf("%.60s…: status %d, want 400", body, st)
		}
	}
	a.quiet(100 * time.Millisecond)
}

// signin signs c in as user with the app's secret (or another).
func signin(c *client, socket, user, secret string) {
	data := fmt.Sprintf(`{"id":%q}`, user)
	c.pusherSend("pusher:signin", "", map[string]any{"user_data": data, "auth": channelAuth("key1", secret, socket+"::user::"+data)})
}

// TestPusherUsers: pusher:signin with its signature; the user's
// #server-to-user- channel, for its connections only; terminating a
// user's connections through the HTTP API; the per-user connection limit.
func TestPusherUsers(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) { cfg.Limits.MaxConnectionsPerUser = 2 })
	alice, sa := dialPusher(t, ts, "key1")
	signin(alice, sa, "alice", "wrong")
	alice.nextEvent("pusher:error")
	signin(alice, sa, "alice", "secret1")
	if m := alice.nextEvent("pusher:signin_success"); m.obj("data").str("user_data") != `{"id":"alice"}` {
		t.Fatalf("signin: %v", m)
	}
	signin(alice, sa, "alice", "secret1")
	alice.nextEvent("pusher:error") // once only
	alice.pusherSend("pusher:subscribe", "", map[string]any{"channel": "#server-to-user-bob"})
	if m := alice.nextEvent("pusher:subscription_error"); m.obj("data").num("status") != 403 {
		t.Fatalf("alice on bob's channel: %v", m)
	}
	var bobs []*client
	for range 2 {
		bob, sb := dialPusher(t, ts, "key1")
		signin(bob, sb, "bob", "secret1")
		bob.nextEvent("pusher:signin_success")
		bob.pusherSend("pusher:subscribe", "", map[string]any{"channel": "#server-to-user-bob"})
		bob.nextEvent("pusher_internal:subscription_succeeded")
		bobs = append(bobs, bob)
	}
	if err := ts.PusherTrigger(context.Background(), "app1", "note", []string{"#server-to-user-bob"}, json.RawMessage(`"hi"`)); err != nil {
		t.Fatal(err)
	}
	for _, bob := range bobs {
		if m := bob.nextEvent("note"); m.str("channel") != "#server-to-user-bob" || m.str("data") != "hi" {
			t.Fatalf("bob: %v", m)
		}
	}
	// A third connection of bob's is over the per-user limit of 2.
	third, s3 := dialPusher(t, ts, "key1")
	signin(third, s3, "bob", "secret1")
	third.nextEvent("pusher:error")
	if code, _ := third.closed(); code != 4100 {
		t.Fatalf("over the per-user limit: closed with %d, want 4100", code)
	}

	req := signedPusherRequest(t, ts.http.URL, "POST", "/apps/app1/users/bob/terminate_connections", "key1", "secret1", []byte("{}"), time.Now().Unix())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("terminate_connections: status %d", resp.StatusCode)
	}
	for _, bob := range bobs {
		bob.nextEvent("pusher:error")
		if code, _ := bob.closed(); code != 4009 {
			t.Fatalf("terminated: closed with %d, want 4009", code)
		}
	}
	alice.pusherSend("pusher:ping", "", map[string]any{})
	alice.nextEvent("pusher:pong")
}
