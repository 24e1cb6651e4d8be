package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/leakcheck"
	"github.com/duplexws/duplex/websocket"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testNamespaces are the namespaces most tests use.
func testNamespaces() []Namespace {
	return []Namespace{
		{Name: "", Anonymous: true, Publish: PermissionAuthenticated},
		{Name: "chat", Anonymous: true, Publish: PermissionAuthenticated, HistorySize: 100, Presence: true, JoinLeave: true},
		{Name: "feed", Anonymous: true, HistorySize: 20000},
		{Name: "private", Subscribe: PermissionToken, Publish: PermissionToken, HistorySize: 10},
		{Name: "users", Publish: PermissionAuthenticated},
	}
}

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// testServer is a gateway on httptest, shut down when the test ends.
type testServer struct {
	*Server
	http *httptest.Server
	url  string // ws://…/ws
}

func newTestServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	cfg := Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{Algorithm: "HS256", Secret: testSecret, AllowAnonymous: true},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version:    "test",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	ts := &testServer{Server: srv, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return ts
}

// msg is one decoded protocol line.
type msg map[string]any

func (m msg) str(k string) string { s, _ := m[k].(string); return s }
func (m msg) num(k string) float64 {
	f, _ := m[k].(float64)
	return f
}
func (m msg) obj(k string) msg {
	o, _ := m[k].(map[string]any)
	return msg(o)
}

// client is a raw protocol client over a real WebSocket connection.
type client struct {
	t      testing.TB
	conn   *websocket.Conn
	nextID uint64
	lines  chan msg
	done   chan struct{}
	err    error // why reading ended, after done
	mu     sync.Mutex
	raw    [][]byte // every message received, for batching checks
}

func dialClient(t testing.TB, url string, opts *websocket.DialOptions) *client {
	t.Helper()
	c, err := tryDial(t, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDial(t testing.TB, url string, opts *websocket.DialOptions) (*client, error) {
	if opts == nil {
		opts = &websocket.DialOptions{Subprotocols: []string{Subprotocol}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(-1)
	c := &client{t: t, conn: conn, lines: make(chan msg, 100000), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		conn.CloseNow()
		<-c.done
	})
	return c, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		c.mu.Lock()
		c.raw = append(c.raw, data)
		c.mu.Unlock()
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var m msg
			if err := json.Unmarshal(line, &m); err != nil {
				c.err = err
				return
			}
			c.lines <- m
		}
	}
}

// send sends one command and returns its id.
func (c *client) send(method string, fields msg) uint64 {
	c.t.Helper()
	c.nextID++
	cmd := msg{"id": c.nextID, "method": method}
	for k, v := range fields {
		cmd[k] = v
	}
	b, _ := json.Marshal(cmd)
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatalf("send %s: %v", method, err)
	}
	return c.nextID
}

// next returns the next line, failing the test after a timeout.
func (c *client) next() msg {
	c.t.Helper()
	select {
	case m := <-c.lines:
		return m
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no message within 10s")
		return nil
	}
}

// call sends a command and returns its reply, skipping pushes (kept in
// skipped order nowhere: tests that care about pushes use next).
func (c *client) call(method string, fields msg) msg {
	c.t.Helper()
	id := c.send(method, fields)
	for {
		m := c.next()
		if _, ok := m["id"]; ok {
			if uint64(m.num("id")) != id {
				c.t.Fatalf("reply to %v while waiting for %d", m["id"], id)
			}
			return m
		}
	}
}

// ok calls and fails the test unless the reply is a result.
func (c *client) ok(method string, fields msg) msg {
	c.t.Helper()
	r := c.call(method, fields)
	if e := r.obj("error"); e != nil {
		c.t.Fatalf("%s %v: error %v", method, fields, e)
	}
	return r.obj("result")
}

// errCode calls and returns the error code of the reply (0 for a result).
func (c *client) errCode(method string, fields msg) int {
	c.t.Helper()
	r := c.call(method, fields)
	return int(r.obj("error").num("code"))
}

// closed waits for the connection to end and returns the close code and
// reason the server sent.
func (c *client) closed() (websocket.StatusCode, string) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.t.Fatalf("connection still open after 15s")
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code, ce.Reason
	}
	c.t.Fatalf("connection ended without a close frame: %v", c.err)
	return 0, ""
}

// connected dials and sends connect with token.
func connected(t testing.TB, url, token string) (*client, msg) {
	t.Helper()
	c := dialClient(t, url, nil)
	fields := msg{}
	if token != "" {
		fields["token"] = token
	}
	return c, c.ok("connect", fields)
}

func apiPost(t testing.TB, base, method string, body any, header http.Header) (int, msg) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/api/"+method, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json") // as a backend sends it
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m msg
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// waitFor polls cond until it holds, for state that settles
// asynchronously (metrics, presence).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
