package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

const (
	limitHits   = "duplex_limit_hits_total"
	disconnects = "duplex_disconnects_total"
	connGauge   = "duplex_connections"
	dropsTotal  = "duplex_drops_total"
	queuedGauge = "duplex_outbound_queue_messages"
)

func TestLimitMaxConnections(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxConnections = 2 })
	base := ts.http.URL
	a, _ := connected(t, ts.url, "")
	connected(t, ts.url, "")

	third := dialClient(t, ts.url, nil)
	expectClose(t, third, CloseConnectionLimit, "connection limit: connections")
	wantMetric(t, base, limitHits, `limit="connections"`, 1)
	wantMetric(t, base, disconnects, `reason="connection_limit"`, 1)
	wantMetric(t, base, connGauge, "", 2)

	// Closing one connection releases its slot.
	a.conn.Close(websocket.StatusNormalClosure, "")
	wantMetric(t, base, connGauge, "", 1)
	d, _ := connected(t, ts.url, "")
	d.ok("ping", nil)
	if v := metricValue(t, base, limitHits, `limit="connections"`); v != 1 {
		t.Fatalf("limit hits %v after a slot was released, want 1", v)
	}
}

func TestLimitMaxConnectionsPerIP(t *testing.T) {
	t.Run("peer address", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxConnectionsPerIP = 2 })
		base := ts.http.URL
		a, _ := connected(t, ts.url, "")
		connected(t, ts.url, "")
		third := dialClient(t, ts.url, nil)
		expectClose(t, third, CloseConnectionLimit, "connection limit: connections_per_ip")
		wantMetric(t, base, limitHits, `limit="connections_per_ip"`, 1)
		wantMetric(t, base, disconnects, `reason="connection_limit"`, 1)

		a.conn.Close(websocket.StatusNormalClosure, "")
		wantMetric(t, base, connGauge, "", 1)
		c, _ := connected(t, ts.url, "")
		c.ok("ping", nil)
	})
	t.Run("client IP header", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) {
			cfg.Limits.MaxConnectionsPerIP = 1
			cfg.Limits.ClientIPHeader = "X-Real-IP"
			cfg.Limits.TrustedProxies = loopbackProxies // httptest's clients
		})
		base := ts.http.URL
		from := func(ip string) *client {
			return dialClient(t, ts.url, &websocket.DialOptions{
				Subprotocols: []string{Subprotocol},
				HTTPHeader:   http.Header{"X-Real-Ip": {ip}},
			})
		}
		a := from("10.0.0.1")
		a.ok("connect", nil)
		// The rightmost address of a list that is not a trusted proxy
		// counts: the others the client may have written itself.
		b := from("192.168.1.1, 10.0.0.2")
		b.ok("connect", nil)
		expectClose(t, from("10.0.0.1"), CloseConnectionLimit, "connection limit: connections_per_ip")
		expectClose(t, from("10.0.0.2"), CloseConnectionLimit, "connection limit: connections_per_ip")
		wantMetric(t, base, limitHits, `limit="connections_per_ip"`, 2)

		a.conn.Close(websocket.StatusNormalClosure, "")
		wantMetric(t, base, connGauge, "", 1)
		from("10.0.0.1").ok("connect", nil)
	})
}

func TestLimitMaxConnectionsPerUser(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxConnectionsPerUser = 1 })
	base := ts.http.URL
	alice := token(t, map[string]any{"sub": "alice"})

	a, res := connected(t, ts.url, alice)
	if res.str("user") != "alice" {
		t.Fatalf("connect result %v", res)
	}
	// Anonymous connections are not counted, other users have their own.
	connected(t, ts.url, "")
	connected(t, ts.url, "")
	connected(t, ts.url, token(t, map[string]any{"sub": "bob"}))

	second := dialClient(t, ts.url, nil)
	if code := second.errCode("ping", nil); code != 101 { // admitted, not connected yet
		t.Fatalf("ping before connect: error %d, want 101", code)
	}
	second.sendConnect(alice)
	expectClose(t, second, CloseConnectionLimit, "connection limit: connections_per_user")
	wantMetric(t, base, limitHits, `limit="connections_per_user"`, 1)
	wantMetric(t, base, disconnects, `reason="connection_limit"`, 1)
	wantMetric(t, base, connGauge, "", 4)

	// The refused connection did not take the slot; closing alice's
	// first connection frees it.
	a.conn.Close(websocket.StatusNormalClosure, "")
	wantMetric(t, base, connGauge, "", 3)
	again, res := connected(t, ts.url, alice)
	if res.str("user") != "alice" {
		t.Fatalf("connect result %v", res)
	}
	again.ok("ping", nil)
	if v := metricValue(t, base, limitHits, `limit="connections_per_user"`); v != 1 {
		t.Fatalf("limit hits %v, want 1", v)
	}
}

func TestLimitHandshakeRate(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.HandshakeRate = 1
		cfg.Limits.HandshakeBurst = 2
		cfg.Limits.ClientIPHeader = "X-Real-IP"
		cfg.Limits.TrustedProxies = loopbackProxies
	})
	base := ts.http.URL
	dial := func(ip string) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		opts := &websocket.DialOptions{Subprotocols: []string{Subprotocol}}
		if ip != "" {
			opts.HTTPHeader = http.Header{"X-Real-Ip": {ip}}
		}
		conn, resp, err := websocket.Dial(ctx, ts.url, opts)
		if conn != nil {
			t.Cleanup(func() { conn.CloseNow() })
		}
		return conn, resp, err
	}
	for i := range 2 {
		if _, _, err := dial(""); err != nil {
			t.Fatalf("dial %d: %v", i+1, err)
		}
	}
	start := time.Now()
	_, resp, err := dial("")
	if err == nil {
		t.Fatal("third dial within the burst succeeded")
	}
	if resp == nil {
		t.Fatalf("third dial: no HTTP response: %v", err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third dial: %s, Retry-After %q, want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	wantMetric(t, base, limitHits, `limit="handshake_rate"`, 1)

	// The rate is per client address.
	if _, _, err := dial("10.1.1.1"); err != nil {
		t.Fatalf("dial from another address: %v", err)
	}
	// Waiting as long as Retry-After says lets the same address in again.
	wait, _ := time.ParseDuration(resp.Header.Get("Retry-After") + "s")
	time.Sleep(time.Until(start.Add(wait + 50*time.Millisecond)))
	if _, _, err := dial(""); err != nil {
		t.Fatalf("dial after Retry-After: %v", err)
	}
	if v := metricValue(t, base, limitHits, `limit="handshake_rate"`); v != 1 {
		t.Fatalf("limit hits %v, want 1", v)
	}
}

func TestLimitMaxMessageSize(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxMessageSize = 1024 })
	base := ts.http.URL
	c, _ := connected(t, ts.url, "")

	// A command of exactly the limit is fine.
	line := fmt.Sprintf(`{"id":2,"method":"ping","pad":"%s"}`, strings.Repeat("x", 1024-len(`{"id":2,"method":"ping","pad":""}`)))
	if len(line) != 1024 {
		t.Fatalf("line is %d bytes", len(line))
	}
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(line)); err != nil {
		t.Fatal(err)
	}
	if r := c.next(); r.num("id") != 2 || r.obj("result") == nil {
		t.Fatalf("reply %v", r)
	}

	big := fmt.Sprintf(`{"id":3,"method":"ping","pad":"%s"}`, strings.Repeat("x", 2048))
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, websocket.StatusMessageTooBig, "read limit of 1024 bytes exceeded")
	wantMetric(t, base, limitHits, `limit="message_size"`, 1)
	wantMetric(t, base, disconnects, `reason="message_size"`, 1)
}

func TestLimitMessageRate(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MessageRate = 5
		cfg.Limits.MessageBurst = 5
	})
	base := ts.http.URL
	c, _ := connected(t, ts.url, "")
	for range 20 {
		c.nextID++
		b, _ := json.Marshal(msg{"id": c.nextID, "method": "ping"})
		if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
			break // closed already
		}
	}
	expectClose(t, c, CloseTooManyRequests, "too many requests")
	wantMetric(t, base, limitHits, `limit="message_rate"`, 1)
	wantMetric(t, base, disconnects, `reason="message_rate"`, 1)

	// A connection within the rate is not affected.
	ok, _ := connected(t, ts.url, "")
	for range 3 {
		ok.ok("ping", nil)
	}
}

func TestLimitMessageRateBatched(t *testing.T) {
	// Commands batched in one message count one by one.
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MessageRate = 5
		cfg.Limits.MessageBurst = 5
	})
	c, _ := connected(t, ts.url, "")
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, "{\"id\":%d,\"method\":\"ping\"}\n", i+2)
	}
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseTooManyRequests, "too many requests")
	wantMetric(t, ts.http.URL, limitHits, `limit="message_rate"`, 1)
}

func TestLimitMaxChannels(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxChannels = 2 })
	base := ts.http.URL
	c, _ := connected(t, ts.url, "")
	c.ok("subscribe", msg{"channel": "chat:a"})
	c.ok("subscribe", msg{"channel": "chat:b"})
	r := c.call("subscribe", msg{"channel": "chat:c"})
	if e := r.obj("error"); e.num("code") != 106 {
		t.Fatalf("third subscribe: %v, want error 106", r)
	}
	c.ok("ping", nil) // still open
	wantMetric(t, base, limitHits, `limit="channels"`, 1)

	// The refused subscription holds nothing: publications do not reach it.
	if code := c.errCode("unsubscribe", msg{"channel": "chat:c"}); code != 110 {
		t.Fatalf("unsubscribe of the refused channel: error %d, want 110", code)
	}
	// Unsubscribing makes room.
	c.ok("unsubscribe", msg{"channel": "chat:a"})
	c.ok("subscribe", msg{"channel": "chat:c"})
	if _, err := ts.Publish(context.Background(), "chat:c", json.RawMessage(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	for {
		m := c.next()
		if m.str("push") == "pub" {
			if m.str("channel") != "chat:c" {
				t.Fatalf("push %v", m)
			}
			break
		}
	}
	if v := metricValue(t, base, limitHits, `limit="channels"`); v != 1 {
		t.Fatalf("limit hits %v, want 1", v)
	}
}

func TestLimitConnectTimeout(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.ConnectTimeout = 200 * time.Millisecond })
	base := ts.http.URL
	start := time.Now()
	idle := dialClient(t, ts.url, nil)
	on, _ := connected(t, ts.url, "")
	expectClose(t, idle, CloseConnectTimeout, "connect timeout")
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
	wantMetric(t, base, disconnects, `reason="connect_timeout"`, 1)

	// Commands other than connect do not count.
	busy := dialClient(t, ts.url, nil)
	deadline := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(deadline) {
		if code := busy.errCode("ping", nil); code != 101 {
			t.Fatalf("ping before connect: error %d, want 101", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expectClose(t, busy, CloseConnectTimeout, "connect timeout")

	// A connected client outlives the timeout.
	time.Sleep(time.Until(start.Add(500 * time.Millisecond)))
	on.ok("ping", nil)
	wantMetric(t, base, disconnects, `reason="connect_timeout"`, 2)
}

func TestBadMessages(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	cases := []struct {
		name    string
		typ     websocket.MessageType
		data    string
		connect bool
		reason  string
	}{
		{"binary", websocket.MessageBinary, `{"id":2,"method":"ping"}`, true, "binary messages are not part of the protocol"},
		{"binary before connect", websocket.MessageBinary, `{"id":1,"method":"connect"}`, false, "binary messages are not part of the protocol"},
		{"invalid JSON", websocket.MessageText, `{"id":2,"method":`, true, "bad request: invalid JSON"},
		{"not an object", websocket.MessageText, `[1,2]`, true, "bad request: invalid JSON"},
		{"id of the wrong type", websocket.MessageText, `{"id":"2","method":"ping"}`, true, "bad request: invalid JSON"},
		{"invalid JSON before connect", websocket.MessageText, `nope`, false, "bad request: invalid JSON"},
		{"no id", websocket.MessageText, `{"method":"ping"}`, true, "bad request: command without id"},
		{"id 0", websocket.MessageText, `{"id":0,"method":"ping"}`, true, "bad request: command without id"},
		{"bad line in a batch", websocket.MessageText, "{\"id\":2,\"method\":\"ping\"}\n{oops}", true, "bad request: invalid JSON"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialClient(t, ts.url, nil)
			if tc.connect {
				c.ok("connect", nil)
			}
			if err := c.conn.Write(context.Background(), tc.typ, []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, CloseBadRequest, tc.reason)
			wantMetric(t, base, disconnects, `reason="bad_request"`, float64(i+1))
		})
	}
}

func TestNoSubprotocol(t *testing.T) {
	ts := newServer(t, nil)
	c := dialClient(t, ts.url, &websocket.DialOptions{})
	if p := c.conn.Subprotocol(); p != "" {
		t.Fatalf("subprotocol %q", p)
	}
	expectClose(t, c, CloseSubprotocolRequired, "subprotocol "+Subprotocol+" required")
	wantMetric(t, ts.http.URL, disconnects, `reason="subprotocol"`, 1)

	other := dialClient(t, ts.url, &websocket.DialOptions{Subprotocols: []string{"duplex.v2.json"}})
	expectClose(t, other, CloseSubprotocolRequired, "")
	wantMetric(t, ts.http.URL, disconnects, `reason="subprotocol"`, 2)
	wantMetric(t, ts.http.URL, connGauge, "", 0)
}

// slowNamespaces adds one namespace per slow-consumer policy and a small
// outbound queue.
func slowNamespaces(cfg *Config) {
	for _, ns := range []struct {
		name   string
		policy SlowConsumerPolicy
	}{{"slowd", SlowDisconnect}, {"slowo", SlowDropOldest}, {"slowl", SlowLatest}} {
		cfg.Namespaces = append(cfg.Namespaces, Namespace{
			Name: ns.name, Anonymous: true, Publish: PermissionAuthenticated,
			HistorySize: 1000, SlowConsumer: ns.policy,
		})
	}
	cfg.Limits.MaxQueueBytes = 64 << 10
	// Long enough for the janitor to leave stuck writes alone meanwhile.
	cfg.Limits.WriteTimeout = time.Minute
}

// slowSubscriber returns a connection that has connected and subscribed
// to channel, and from now on does not read.
func slowSubscriber(t *testing.T, ts *testServer, channel string) (*rawConn, msg) {
	t.Helper()
	r := dialRaw(t, ts.url)
	r.call(1, "connect", nil)
	res := r.call(2, "subscribe", msg{"channel": channel})
	return r, res
}

// publishUntil publishes ~1 KiB publications to channel until done
// reports true (checked every 50), and returns the last position
// published. It fails the test after 20000 publications or 30 s. A
// never-reading client is a slow consumer after about 3,600 (the kernel's
// buffers, then the queue); under -race on 2 loaded cores that took up
// to 10 s, the old deadline.
func publishUntil(t *testing.T, ts *testServer, channel string, done func() bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last uint64
	for i := 1; i <= 20000; i++ {
		pos, err := ts.Publish(context.Background(), channel, payload(i, 1024))
		if err != nil {
			t.Fatal(err)
		}
		if pos.Offset != uint64(i) {
			t.Fatalf("publication %d got offset %d", i, pos.Offset)
		}
		last = pos.Offset
		if i%50 == 0 && (done() || time.Now().After(deadline)) {
			break
		}
	}
	if !done() {
		t.Fatalf("slow-consumer policy did not trigger after %d publications", last)
	}
	return last
}

func TestSlowConsumerDisconnect(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	base := ts.http.URL
	slow, _ := slowSubscriber(t, ts, "slowd:x")
	publishUntil(t, ts, "slowd:x", func() bool {
		return metricValue(t, base, disconnects, `reason="slow_consumer"`) >= 1
	})
	wantMetric(t, base, disconnects, `reason="slow_consumer"`, 1)
	if v := metricValue(t, base, dropsTotal, `policy="disconnect"`); v != 0 {
		t.Fatalf("drops{policy=disconnect} = %v", v)
	}
	// The server lets the connection go even though its writes are stuck
	// (the close frame cannot be written: that takes the close timeout).
	waitMetric(t, base, connGauge, "", func(v float64) bool { return v == 0 })

	// The slow client finds its connection ended when it reads at last.
	err := slow.readToEnd(t)
	if code := websocket.CloseStatus(err); code != -1 && code != CloseSlowConsumer {
		t.Fatalf("closed with %d, want 4002 or no close frame: %v", code, err)
	}

	// Others are served as before.
	fresh, _ := connected(t, ts.url, "")
	fresh.ok("subscribe", msg{"channel": "slowd:x"})
	pos, err := ts.Publish(context.Background(), "slowd:x", json.RawMessage(`"after"`))
	if err != nil {
		t.Fatal(err)
	}
	m := fresh.next()
	if m.str("push") != "pub" || m.num("offset") != float64(pos.Offset) || m["data"] != "after" {
		t.Fatalf("push %v, want the publication at %d", m, pos.Offset)
	}
	if v := metricValue(t, base, disconnects, `reason="slow_consumer"`); v != 1 {
		t.Fatalf("slow_consumer disconnects %v, want 1", v)
	}
}

func TestSlowConsumerDropOldest(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	base := ts.http.URL
	// Two channels on one connection: gaps are per channel.
	slow, res := slowSubscriber(t, ts, "slowo:a")
	if res["latest"] != nil {
		t.Fatalf("subscribe result %v: latest set in a drop_oldest namespace", res)
	}
	resB := slow.call(3, "subscribe", msg{"channel": "slowo:b"})
	epochs := map[string]string{"slowo:a": res.str("epoch"), "slowo:b": resB.str("epoch")}
	next := map[string]uint64{"slowo:a": 1, "slowo:b": 1} // the first offset not yet accounted for
	last := map[string]uint64{}
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; ; i++ {
		ch := "slowo:a"
		if i%3 == 0 {
			ch = "slowo:b"
		}
		pos, err := ts.Publish(context.Background(), ch, payload(int(last[ch]+1), 1024))
		if err != nil {
			t.Fatal(err)
		}
		last[ch] = pos.Offset
		if i%50 == 0 && metricValue(t, base, dropsTotal, `policy="drop_oldest"`) >= 100 {
			break
		}
		if i == 20000 || time.Now().After(deadline) {
			t.Fatalf("no drops after %d publications", i)
		}
	}
	if v := metricValue(t, base, disconnects, `reason="slow_consumer"`); v != 0 {
		t.Fatalf("slow_consumer disconnects %v in a drop_oldest namespace", v)
	}

	// Now read: publications in order, and a gap push for whatever is
	// missing, before the next publication of the channel.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	received := map[string]int{}
	gaps := map[string]int{}
	var missing uint64
	for next["slowo:a"] <= last["slowo:a"] || next["slowo:b"] <= last["slowo:b"] {
		m, err := slow.readLine(ctx)
		if err != nil {
			t.Fatalf("reading at offsets %v of %v: %v", next, last, err)
		}
		ch := m.str("channel")
		if e, ok := epochs[ch]; ok && e == "" {
			epochs[ch] = m.str("epoch") // subscribed before the stream began
		}
		if _, ok := epochs[ch]; !ok || m.str("epoch") != epochs[ch] {
			t.Fatalf("push %v, want channel slowo:a or b with its epoch %v", m, epochs)
		}
		switch m.str("push") {
		case "gap":
			from, to := uint64(m.num("from")), uint64(m.num("to"))
			if from != next[ch] || to < from || to > last[ch] {
				t.Fatalf("gap %v, want one from %d (up to at most %d)", m, next[ch], last[ch])
			}
			gaps[ch]++
			missing += to - from + 1
			next[ch] = to + 1
		case "pub":
			off := uint64(m.num("offset"))
			if off != next[ch] {
				t.Fatalf("%s: publication %d, want %d: offsets %d–%d missing without a gap push before", ch, off, next[ch], next[ch], off-1)
			}
			if n := m.obj("data").num("n"); uint64(n) != off {
				t.Fatalf("%s: publication %d holds data %v", ch, off, m["data"])
			}
			received[ch]++
			next[ch] = off + 1
		default:
			t.Fatalf("unexpected line %v", m)
		}
	}
	if gaps["slowo:a"] == 0 || gaps["slowo:b"] == 0 {
		t.Fatalf("gap pushes %v, want some on both channels (published %v, received %v)", gaps, last, received)
	}
	drops := metricValue(t, base, dropsTotal, `policy="drop_oldest"`)
	if float64(missing) != drops {
		t.Fatalf("gaps cover %d publications, drops{policy=drop_oldest} = %v", missing, drops)
	}
	t.Logf("published %v, received %v, %d dropped, gap pushes %v", last, received, missing, gaps)

	// The connection is healthy afterwards, and the backlog is gone:
	// a further publication arrives at once.
	slow.call(4, "ping", nil)
	pos, err := ts.Publish(context.Background(), "slowo:a", payload(int(last["slowo:a"])+1, 10))
	if err != nil {
		t.Fatal(err)
	}
	m, err := slow.readLine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.str("push") != "pub" || uint64(m.num("offset")) != pos.Offset {
		t.Fatalf("push %v, want the publication at %d", m, pos.Offset)
	}
}

// TestQueueGaugeAfterDrops checks duplex_outbound_queue_messages once a
// drop_oldest client has caught up: nothing is queued, so it must read 0.
func TestQueueGaugeAfterDrops(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	base := ts.http.URL
	slow, _ := slowSubscriber(t, ts, "slowo:x")
	last := publishUntil(t, ts, "slowo:x", func() bool {
		return metricValue(t, base, dropsTotal, `policy="drop_oldest"`) > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		m, err := slow.readLine(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.str("push") == "pub" && uint64(m.num("offset")) == last {
			break
		}
	}
	slow.call(3, "ping", nil) // everything before the reply is written
	drops := metricValue(t, base, dropsTotal, `policy="drop_oldest"`)
	if v := metricValue(t, base, queuedGauge, ""); v != 0 {
		t.Fatalf("%s = %v after %v drops and an empty queue, want 0", queuedGauge, v, drops)
	}
}

func TestSlowConsumerLatest(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	base := ts.http.URL
	slow, res := slowSubscriber(t, ts, "slowl:x")
	if res["latest"] != true {
		t.Fatalf("subscribe result %v, want latest true", res)
	}
	last := publishUntil(t, ts, "slowl:x", func() bool {
		return metricValue(t, base, dropsTotal, `policy="latest"`) > 100
	})
	if v := metricValue(t, base, disconnects, `reason="slow_consumer"`); v != 0 {
		t.Fatalf("slow_consumer disconnects %v in a latest namespace", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var prev uint64
	var received int
	for prev < last {
		m, err := slow.readLine(ctx)
		if err != nil {
			t.Fatalf("reading after offset %d of %d: %v", prev, last, err)
		}
		if m.str("push") != "pub" || m.str("channel") != "slowl:x" {
			t.Fatalf("unexpected line %v", m)
		}
		off := uint64(m.num("offset"))
		if off <= prev {
			t.Fatalf("offset %d after %d", off, prev)
		}
		if uint64(m.obj("data").num("n")) != off {
			t.Fatalf("publication %d holds data %v", off, m["data"])
		}
		prev = off
		received++
	}
	if prev != last {
		t.Fatalf("last offset received %d, want %d", prev, last)
	}
	if received >= int(last) {
		t.Fatalf("received all %d publications: nothing was skipped", last)
	}
	t.Logf("%d publications, %d received", last, received)
	slow.call(3, "ping", nil)
	wantMetric(t, base, queuedGauge, "", 0)
}

func TestWriteTimeout(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		slowNamespaces(cfg)
		cfg.Limits.WriteTimeout = 300 * time.Millisecond
	})
	base := ts.http.URL
	// In a drop_oldest namespace a full queue never disconnects: only the
	// janitor can, once a write has been stuck for the write timeout.
	slow, _ := slowSubscriber(t, ts, "slowo:x")
	publishUntil(t, ts, "slowo:x", func() bool {
		return metricValue(t, base, disconnects, `reason="slow_consumer"`) >= 1
	})
	wantMetric(t, base, disconnects, `reason="slow_consumer"`, 1)
	waitMetric(t, base, connGauge, "", func(v float64) bool { return v == 0 })

	// The janitor cut the connection without a close frame: it could not
	// be written.
	var ce *websocket.CloseError
	if err := slow.readToEnd(t); errors.As(err, &ce) {
		t.Fatalf("close frame %d %q from a connection whose writes were stuck", ce.Code, ce.Reason)
	}
}

func TestHandshakeRetryAfterSlowRate(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.HandshakeRate = 0.5 // one handshake per 2 s
		cfg.Limits.HandshakeBurst = 1
	})
	dial := func() (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if conn != nil {
			t.Cleanup(func() { conn.CloseNow() })
		}
		return resp, err
	}
	if _, err := dial(); err != nil {
		t.Fatal(err)
	}
	resp, err := dial()
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second dial: %v %v, want 429", resp, err)
	}
	wait, err := time.ParseDuration(resp.Header.Get("Retry-After") + "s")
	if err != nil {
		t.Fatalf("Retry-After %q: %v", resp.Header.Get("Retry-After"), err)
	}
	time.Sleep(wait + 50*time.Millisecond)
	if resp, err := dial(); err != nil {
		t.Fatalf("dial after waiting Retry-After (%v): %v %v", wait, resp.Status, err)
	}
}

func TestInvalidUTF8(t *testing.T) {
	ts := newServer(t, nil)
	c, _ := connected(t, ts.url, "")
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte("{\"id\":2,\"method\":\"ping\",\"x\":\"\xff\xfe\"}")); err != nil {
		t.Fatal(err)
	}
	code, reason := c.closed()
	if code != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("closed with %d %q, want 1007", code, reason)
	}
	wantMetric(t, ts.http.URL, disconnects, `reason="protocol_error"`, 1)
}

func TestNoPong(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.PingInterval = 100 * time.Millisecond
		cfg.PongTimeout = 200 * time.Millisecond
	})
	base := ts.http.URL
	// A client that reads answers pings; one that does not read cannot.
	live, res := connected(t, ts.url, "")
	if res.num("ping") != 0 {
		t.Fatalf("connect result %v: ping %v for an interval under a second", res, res["ping"])
	}
	mute := dialRaw(t, ts.url)
	mute.call(1, "connect", nil)
	wantMetric(t, base, disconnects, `reason="no_pong"`, 1)
	live.ok("ping", nil)
	time.Sleep(400 * time.Millisecond) // a few more ping rounds
	live.ok("ping", nil)
	if v := metricValue(t, base, disconnects, `reason="no_pong"`); v != 1 {
		t.Fatalf("no_pong disconnects %v, want 1", v)
	}
	// When the mute client reads at last, it finds the connection closed
	// with 1008.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := mute.readLine(ctx)
		if err == nil {
			continue
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
			t.Fatalf("mute client: %v, want a close with 1008", err)
		}
		break
	}
}

// TestNegativeLimits checks the Limits contract: "a negative value removes
// a limit that has a default".
func TestNegativeLimits(t *testing.T) {
	t.Run("MaxMessageSize", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxMessageSize = -1 })
		c := dialClient(t, ts.url, nil)
		c.okOpen("connect", nil)
		c.okOpen("ping", msg{"pad": strings.Repeat("x", 100<<10)}) // over the default of 64 KiB
	})
	t.Run("MessageRate", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.MessageRate = -1 })
		c := dialClient(t, ts.url, nil)
		c.okOpen("connect", nil)
		var b strings.Builder
		for i := range 300 { // over the default burst of 200
			fmt.Fprintf(&b, "{\"id\":%d,\"method\":\"ping\"}\n", i+2)
		}
		if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(b.String())); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			if r := c.next(); r.num("id") != float64(i+2) {
				t.Fatalf("reply %v, want one to %d", r, i+2)
			}
		}
	})
	t.Run("MaxChannels", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxChannels = -1 })
		c := dialClient(t, ts.url, nil)
		c.okOpen("connect", nil)
		for i := range 130 { // over the default of 128
			c.okOpen("subscribe", msg{"channel": fmt.Sprintf("chat:%d", i)})
		}
	})
	t.Run("MaxQueueBytes", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxQueueBytes = -1 })
		c := dialClient(t, ts.url, nil)
		c.okOpen("connect", nil)
		c.okOpen("subscribe", msg{"channel": "feed:q"})
		for i := range 2000 { // 2 MB, over the default of 1 MiB
			if _, err := ts.Publish(context.Background(), "feed:q", payload(i, 1024)); err != nil {
				t.Fatal(err)
			}
		}
		for range 2000 {
			c.nextPush("pub")
		}
	})
	t.Run("ConnectTimeout", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.Limits.ConnectTimeout = -1 })
		c := dialClient(t, ts.url, nil)
		time.Sleep(300 * time.Millisecond)
		c.okOpen("connect", nil)
	})
	t.Run("WriteTimeout", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) {
			slowNamespaces(cfg)
			cfg.Limits.WriteTimeout = -1
		})
		base := ts.http.URL
		slowSubscriber(t, ts, "slowo:x")
		// Drops mean the writer is stuck on the connection.
		publishUntil(t, ts, "slowo:x", func() bool {
			return metricValue(t, base, dropsTotal, `policy="drop_oldest"`) >= 100 ||
				metricValue(t, base, disconnects, `reason="slow_consumer"`) > 0
		})
		time.Sleep(100 * time.Millisecond)
		if v := metricValue(t, base, disconnects, `reason="slow_consumer"`); v != 0 {
			t.Fatalf("slow_consumer disconnects %v without a write timeout", v)
		}
	})
}

// TestMessageRateUnderOne checks the default burst of a rate under one
// command per second.
func TestMessageRateUnderOne(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MessageRate = 0.5 })
	c := dialClient(t, ts.url, nil)
	c.okOpen("connect", nil)
}

// stuckTransport is a transport whose writes wait until release is closed,
// and whose abort fails the write under way at once, as a fallback
// stream's abort does (a write deadline in the past): the writer's failed
// write marks the session closing.
type stuckTransport struct {
	inlineTransport
	sess    *session
	release chan struct{}
}

func (t *stuckTransport) write([]byte) error            { <-t.release; return nil }
func (t *stuckTransport) writeShared(*sharedLine) error { <-t.release; return nil }
func (t *stuckTransport) tryWriteShared(*sharedLine) (bool, error) {
	return false, nil // the socket is full
}
func (t *stuckTransport) abortOnClose() bool {
	t.sess.mu.Lock()
	t.sess.closing = true // writeLoop's failed write
	t.sess.mu.Unlock()
	return true
}

// TestSlowConsumerReasonBeforeAbort: a session closed as a slow consumer
// ends for that reason even when aborting its connection fails its writer
// first. It ended as "client" 1 time in 8 over HTTP streaming
// (TestFallbackSlowConsumer), since the failed write marked the session
// closing before the slow-consumer close could give it its reason.
func TestSlowConsumerReasonBeforeAbort(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	tr := &stuckTransport{release: make(chan struct{})}
	sess := newSession(ts.Server, tr, duplexProtocol{}, "192.0.2.1", nil)
	tr.sess = sess
	defer func() {
		close(tr.release)
		sess.writer.Wait()
	}()
	for i := 1; i <= 100; i++ {
		sess.mu.Lock()
		closing := sess.closing
		if !closing {
			sess.enqueuePubLocked(newOutPub(&broker.Publication{Channel: "slowd:x", Data: payload(i, 1024),
				Position: broker.Position{Offset: uint64(i), Epoch: "e"}}, SlowDisconnect))
		}
		sess.mu.Unlock()
		if closing {
			break
		}
	}
	sess.mu.Lock()
	closing, reason := sess.closing, sess.endReason
	sess.mu.Unlock()
	if !closing || reason != reasonSlowConsumer {
		t.Fatalf("after filling its queue: closing %v, end reason %q; want true, %q", closing, reason, reasonSlowConsumer)
	}
}
