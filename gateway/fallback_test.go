package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/internal/testnats"
)

// fallbackClient is a client of the fallback transports over real HTTP:
// one response that stays open for what the server sends, and a POST per
// batch of commands, to any node.
type fallbackClient struct {
	t       *testing.T
	sse     bool
	session string
	seq     uint64
	nextID  uint64
	lines   chan msg
	done    chan struct{}
	cancel  context.CancelFunc
}

// openFallback opens a stream at base (http://…) over HTTP streaming, or
// SSE, and reads its first line, the session's id.
func openFallback(t *testing.T, base string, sse bool, header http.Header) *fallbackClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	path := "/fallback/stream"
	if sse {
		path = "/fallback/sse"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	c := &fallbackClient{t: t, sse: sse, lines: make(chan msg, 10000), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if sse {
				var ok bool
				if line, ok = strings.CutPrefix(line, "data: "); !ok {
					continue // a blank line ends an event; ":" is a keepalive
				}
			}
			if line == "" {
				continue
			}
			var m msg
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				c.t.Errorf("not JSON from the stream: %q", line)
				return
			}
			c.lines <- m
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	first := c.next()
	if c.session = first.str("session"); !strings.Contains(c.session, ".") {
		t.Fatalf("first line %v: want the session id", first)
	}
	return c
}

func (c *fallbackClient) next() msg {
	c.t.Helper()
	select {
	case m := <-c.lines:
		return m
	case <-time.After(10 * time.Second):
		c.t.Fatalf("nothing from the stream within 10s")
		return nil
	}
}

// post sends lines as the POST numbered seq to base, and returns its
// status.
func (c *fallbackClient) post(base string, seq uint64, lines ...string) int {
	c.t.Helper()
	url := base + "/fallback/send?session=" + c.session + "&seq=" + strconv.FormatUint(seq, 10)
	resp, err := http.Post(url, "text/plain", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// command spells a command with a fresh id, which it returns.
func (c *fallbackClient) command(method string, fields msg) (string, uint64) {
	c.nextID++
	cmd := msg{"id": c.nextID, "method": method}
	for k, v := range fields {
		cmd[k] = v
	}
	b, _ := json.Marshal(cmd)
	return string(b), c.nextID
}

// call sends one command to base and returns its reply, skipping pushes.
func (c *fallbackClient) call(base, method string, fields msg) msg {
	c.t.Helper()
	line, id := c.command(method, fields)
	if status := c.post(base, c.seq, line); status != http.StatusNoContent && status != http.StatusAccepted {
		c.t.Fatalf("POST %s: %d", method, status)
	}
	c.seq++
	for {
		m := c.next()
		if _, ok := m["id"]; ok {
			if uint64(m.num("id")) != id {
				c.t.Fatalf("reply %v while waiting for %d", m, id)
			}
			return m
		}
	}
}

func (c *fallbackClient) nextPush(kind string) msg {
	c.t.Helper()
	for {
		if m := c.next(); m.str("push") == kind {
			return m
		}
	}
}

func TestFallbackTransports(t *testing.T) {
	for _, sse := range []bool{false, true} {
		name := "http_stream"
		if sse {
			name = "sse"
		}
		t.Run(name, func(t *testing.T) {
			ts := newTestServer(t, func(c *Config) { c.PingInterval = 100 * time.Millisecond })
			base := ts.http.URL
			c := openFallback(t, base, sse, nil)
			res := c.call(base, "connect", msg{"token": token(t, map[string]any{"sub": "fran"})}).obj("result")
			if res.str("user") != "fran" || res.str("client") != c.session {
				t.Fatalf("connect result %v", res)
			}
			if r := c.call(base, "subscribe", msg{"channel": "chat:fb"}); r.obj("error") != nil {
				t.Fatalf("subscribe: %v", r)
			}
			for i := 1; i <= 3; i++ {
				if code, _ := apiPost(t, base, "publish", msg{"channel": "chat:fb", "data": msg{"n": i}}, nil); code != http.StatusOK {
					t.Fatalf("publish: %d", code)
				}
			}
			for i := 1; i <= 3; i++ {
				p := c.nextPush("pub")
				if p.obj("data").num("n") != float64(i) || p.num("offset") != float64(i) {
					t.Fatalf("publication %d: %v", i, p)
				}
			}
			// Keepalives flow while nothing else does, and the session lives.
			time.Sleep(300 * time.Millisecond)
			if r := c.call(base, "ping", nil); r.obj("error") != nil {
				t.Fatalf("ping: %v", r)
			}
			// Recovery over a new stream, as over a new WebSocket.
			c.cancel()
			<-c.done
			if code, _ := apiPost(t, base, "publish", msg{"channel": "chat:fb", "data": msg{"n": 4}}, nil); code != http.StatusOK {
				t.Fatalf("publish: %d", code)
			}
			c2 := openFallback(t, base, sse, nil)
			c2.call(base, "connect", msg{"token": token(t, map[string]any{"sub": "fran"})})
			r := c2.call(base, "subscribe", msg{"channel": "chat:fb", "since": msg{"offset": 3, "epoch": p0epoch(t, base)}}).obj("result")
			pubs, _ := r["publications"].([]any)
			if recovered, _ := r["recovered"].(bool); !recovered || len(pubs) != 1 {
				t.Fatalf("recovery over a new stream: %v", r)
			}
			// The server's close reaches the client as the stream's last line.
			if _, err := ts.Disconnect(context.Background(), "fran", 0, "bye"); err != nil {
				t.Fatal(err)
			}
			if code, reason := c2.closed(); code != int(CloseDisconnected) || reason != "bye" {
				t.Fatalf("closed with %d %q, want %d bye", code, reason, CloseDisconnected)
			}
		})
	}
}

// closed reads until the stream's close line and the end of the stream,
// and returns the close's code and reason.
func (c *fallbackClient) closed() (int, string) {
	c.t.Helper()
	for {
		m := c.next()
		if cl := m.obj("close"); cl != nil {
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				c.t.Fatalf("the stream stays open after its close line")
			}
			return int(cl.num("code")), cl.str("reason")
		}
	}
}

// p0epoch reads the epoch of chat:fb's stream from the backend API.
func p0epoch(t *testing.T, base string) string {
	t.Helper()
	_, m := apiPost(t, base, "history", msg{"channel": "chat:fb", "limit": 0}, nil)
	return m.str("epoch")
}

// TestFallbackAcrossNodes: the stream is held by one node, and the POSTs
// land on the other (as behind a load balancer without affinity), also out
// of order; the broker (a real nats-server) carries them to the session.
func TestFallbackAcrossNodes(t *testing.T) {
	ns := testnats.Start(t, testnats.Options{})
	prefix := fmt.Sprintf("fallback_%d", time.Now().UnixNano())
	node := func() *testServer {
		return newTestServer(t, func(cfg *Config) {
			cfg.Broker = nats.New(nats.Options{Servers: []string{ns.Addr()}, Prefix: prefix, ReconnectWait: 50 * time.Millisecond})
		})
	}
	a, b := node(), node()
	c := openFallback(t, a.http.URL, false, nil)
	// Every command through node b, none through a.
	if r := c.call(b.http.URL, "connect", nil); r.obj("error") != nil {
		t.Fatalf("connect through the other node: %v", r)
	}
	c.call(b.http.URL, "subscribe", msg{"channel": "chat:x"})
	// Two POSTs that arrive in the wrong order are run in the right one.
	pub, pubID := c.command("publish", msg{"channel": "chat:x", "data": msg{"n": 1}})
	ping, pingID := c.command("ping", nil)
	if st := c.post(b.http.URL, c.seq+1, ping); st != http.StatusAccepted {
		t.Fatalf("POST through the other node: %d, want 202", st)
	}
	time.Sleep(100 * time.Millisecond)
	if st := c.post(a.http.URL, c.seq, pub); st != http.StatusNoContent {
		t.Fatalf("POST to the session's node: %d, want 204", st)
	}
	c.seq += 2
	var ids []uint64
	for len(ids) < 2 {
		if m := c.next(); m["id"] != nil {
			ids = append(ids, uint64(m.num("id")))
		}
	}
	if ids[0] != pubID || ids[1] != pingID {
		t.Fatalf("replies %v, want %d then %d", ids, pubID, pingID)
	}
	// An unknown session on this node: 404, at once; an id that is none:
	// 400, and not carried to the others.
	for id, want := range map[string]int{
		strings.Split(c.session, ".")[0] + ".AAAAAAAAAAAAAAAA": http.StatusNotFound,
		"nope.nope": http.StatusBadRequest,
		"":          http.StatusBadRequest,
	} {
		resp, err := http.Post(a.http.URL+"/fallback/send?seq=0&session="+id, "text/plain", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST for session %q: %d, want %d", id, resp.StatusCode, want)
		}
	}
}

// TestFallbackLimits: the rules of WebSocket clients hold for fallback
// ones: the origin policy, the message size, the command rate, and the
// connect timeout.
func TestFallbackLimits(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.OriginPatterns = []string{"*.example.com"}
		c.Limits.MaxMessageSize = 1000
		c.Limits.MessageRate, c.Limits.MessageBurst = 1, 3
		c.Limits.ConnectTimeout = 300 * time.Millisecond
	})
	base := ts.http.URL
	for _, path := range []string{"/fallback/stream", "/fallback/sse"} {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Origin", "https://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s from another site: %d, want 403", path, resp.StatusCode)
		}
	}
	// A page of an allowed other site may, with the CORS headers that let
	// it read the stream.
	req, _ := http.NewRequest(http.MethodGet, base+"/fallback/sse", nil)
	req.Header.Set("Origin", "https://app.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("GET from an allowed origin: %d, CORS %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	c := openFallback(t, base, false, http.Header{"Origin": {base}})
	req, _ = http.NewRequest(http.MethodPost, base+"/fallback/send?session="+c.session+"&seq=0", strings.NewReader("{}"))
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from another site: %d, want 403", resp.StatusCode)
	}
	if st := c.post(base, 0, strings.Repeat(" ", 1001)); st != http.StatusRequestEntityTooLarge {
		t.Errorf("POST over the message size: %d, want 413", st)
	}
	// Four commands in one POST, with a burst of three: closed with 4005
	// after the replies to the three.
	var lines []string
	for range 4 {
		l, _ := c.command("ping", nil)
		lines = append(lines, l)
	}
	c.post(base, 0, lines...)
	if code, _ := c.closed(); code != int(CloseTooManyRequests) {
		t.Errorf("over the command rate: closed with %d, want %d", code, CloseTooManyRequests)
	}
	// A stream that never connects is closed at the connect timeout.
	idle := openFallback(t, base, true, nil)
	if code, _ := idle.closed(); code != int(CloseConnectTimeout) {
		t.Errorf("no connect: closed with %d, want %d", code, CloseConnectTimeout)
	}
}

// TestFallbackStreamsAreNotPending: behind HTTPServer, a fallback stream
// counts as a session, like an upgraded WebSocket, not as a pending HTTP
// connection, so that the pending caps do not cap fallback clients.
func TestFallbackStreamsAreNotPending(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Limits.MaxPendingConnectionsPerIP = 2 })
	hs := ts.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-served
	})
	base := "http://" + ln.Addr().String()
	// Separate clients, so that each stream has a connection of its own,
	// and POSTs that do not keep theirs.
	old := http.DefaultClient
	t.Cleanup(func() { http.DefaultClient = old })
	posts := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 4 {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		http.DefaultClient = &http.Client{Transport: tr}
		c := openFallback(t, base, i%2 == 1, nil)
		http.DefaultClient = posts
		if r := c.call(base, "ping", nil); r.obj("error").num("code") != float64(ErrNotConnected.Code) {
			t.Fatalf("stream %d: %v", i, r)
		}
	}
	waitFor(t, "no pending connections", func() bool {
		return metricValue(t, ts.http.URL, "duplex_pending_connections", "") == 0
	})
	if n := metricValue(t, ts.http.URL, "duplex_connections", ""); n != 4 {
		t.Errorf("duplex_connections %v, want the 4 streams", n)
	}
}

// TestFallbackSendRate: POSTs to /fallback/send are limited per client
// address, so that one address cannot make the broker carry unbounded
// traffic with made-up session ids of another node. Sixteen POSTers flood
// node b from one address (X-Real-IP, b trusting loopback as its proxy)
// for a second with a well-formed id of node a that no session has: b
// answers 429 beyond the burst and the rate, and node a, which receives
// what the broker carried, counts exactly the POSTs b accepted as unknown
// sessions. A client of another address keeps working meanwhile, and the
// flooding address gets through again once its bucket refills.
func TestFallbackSendRate(t *testing.T) {
	ns := testnats.Start(t, testnats.Options{})
	prefix := fmt.Sprintf("fallback_rate_%d", time.Now().UnixNano())
	const rate, burst = 20, 40
	node := func() *testServer {
		return newTestServer(t, func(cfg *Config) {
			cfg.Broker = nats.New(nats.Options{Servers: []string{ns.Addr()}, Prefix: prefix, ReconnectWait: 50 * time.Millisecond})
			cfg.Limits.FallbackSendRate, cfg.Limits.FallbackSendBurst = rate, burst
			cfg.Limits.ClientIPHeader = "X-Real-IP"
			cfg.Limits.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		})
	}
	a, b := node(), node()
	c := openFallback(t, a.http.URL, false, nil)
	if r := c.call(b.http.URL, "connect", nil); r.obj("error") != nil {
		t.Fatalf("connect through the other node: %v", r)
	}
	fake := a.node + ".AAAAAAAAAAAAAAAA"
	post := func(ip string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, b.http.URL+"/fallback/send?seq=0&session="+fake, strings.NewReader(`{"id":1,"method":"ping"}`))
		req.Header.Set("X-Real-IP", ip)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	const attacker = "203.0.113.9"
	var accepted, refused, other atomic.Int64
	start := time.Now()
	stop := start.Add(time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				st, err := post(attacker)
				switch {
				case err != nil:
					errs <- err
					return
				case st == http.StatusAccepted:
					accepted.Add(1)
				case st == http.StatusTooManyRequests:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	// Meanwhile the client of another address is not held up.
	if r := c.call(b.http.URL, "ping", nil); r.obj("error") != nil {
		t.Errorf("ping during the flood: %v", r)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	max := int64(burst + rate*elapsed.Seconds() + 1)
	t.Logf("in %v: %d accepted (bound %d), %d refused with 429", elapsed, accepted.Load(), max, refused.Load())
	if other.Load() != 0 {
		t.Errorf("%d POSTs answered neither 202 nor 429", other.Load())
	}
	if accepted.Load() < burst || accepted.Load() > max {
		t.Errorf("%d POSTs accepted in %v, want between the burst %d and %d", accepted.Load(), elapsed, burst, max)
	}
	if refused.Load() == 0 {
		t.Fatalf("nothing refused: the flood was not limited")
	}
	wantMetric(t, b.http.URL, "duplex_limit_hits_total", `limit="fallback_send_rate"`, float64(refused.Load()))
	// What the broker carried: node a hears of every accepted POST, and of
	// nothing more.
	wantMetric(t, a.http.URL, "duplex_fallback_unknown_sessions_total", "", float64(accepted.Load()))
	time.Sleep(200 * time.Millisecond)
	if got := metricValue(t, a.http.URL, "duplex_fallback_unknown_sessions_total", ""); got != float64(accepted.Load()) {
		t.Errorf("node a saw %v unknown-session POSTs, want the %d node b accepted", got, accepted.Load())
	}
	// The bucket refills: the address gets through again.
	time.Sleep(time.Second / rate * 2)
	if st, err := post(attacker); err != nil || st != http.StatusAccepted {
		t.Errorf("POST after the pause: %d, %v; want 202", st, err)
	}
	// And the session lived through it all.
	if r := c.call(a.http.URL, "ping", nil); r.obj("error") != nil {
		t.Errorf("ping after the flood: %v", r)
	}
}

// TestFallbackSlowConsumer: the slow-consumer policy holds over HTTP
// streaming as over WebSocket. A client that reads its stream's first line
// and then nothing fills its socket, then its queue, and is disconnected
// as a slow consumer; the node lets its session go, and other clients are
// served.
func TestFallbackSlowConsumer(t *testing.T) {
	ts := newServer(t, slowNamespaces)
	base := ts.http.URL
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET /fallback/stream HTTP/1.1\r\nHost: gateway\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /fallback/stream: %v, %v", resp, err)
	}
	first, err := bufio.NewReaderSize(resp.Body, 256).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var hello struct{ Session string }
	if err := json.Unmarshal([]byte(first), &hello); err != nil || hello.Session == "" {
		t.Fatalf("first line %q: %v", first, err)
	}
	// Its commands go by POST; it never reads their replies.
	slow := &fallbackClient{t: t, session: hello.Session}
	for seq, cmd := range []string{`{"id":1,"method":"connect"}`, `{"id":2,"method":"subscribe","channel":"slowd:x"}`} {
		if st := slow.post(base, uint64(seq), cmd); st != http.StatusNoContent && st != http.StatusAccepted {
			t.Fatalf("POST %s: %d", cmd, st)
		}
	}
	waitFor(t, "the slow client's subscription", func() bool {
		return metricValue(t, base, "duplex_subscriptions", "") >= 1
	})
	publishUntil(t, ts, "slowd:x", func() bool {
		return metricValue(t, base, disconnects, `reason="slow_consumer"`) >= 1
	})
	waitMetric(t, base, connGauge, "", func(v float64) bool { return v == 0 })

	fresh := openFallback(t, base, false, nil)
	fresh.call(base, "connect", nil)
	if r := fresh.call(base, "subscribe", msg{"channel": "slowd:x"}); r.obj("error") != nil {
		t.Fatalf("subscribe: %v", r)
	}
	if _, err := ts.Publish(context.Background(), "slowd:x", json.RawMessage(`"after"`)); err != nil {
		t.Fatal(err)
	}
	if m := fresh.nextPush("pub"); m["data"] != "after" {
		t.Fatalf("push %v", m)
	}
}
