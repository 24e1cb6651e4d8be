package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// metricValue reads one sample from base+"/metrics": the line
// `name{labels} value`, or `name value` when labels is empty. A sample
// that is not exposed (a labelled counter never incremented) reads as 0.
func metricValue(t testing.TB, base, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	return 0
}

// waitMetric waits until the sample satisfies cond and returns its value.
func waitMetric(t testing.TB, base, name, labels string, cond func(float64) bool) float64 {
	t.Helper()
	var v float64
	waitFor(t, fmt.Sprintf("%s{%s}", name, labels), func() bool {
		v = metricValue(t, base, name, labels)
		return cond(v)
	})
	return v
}

// wantMetric waits until the sample equals want (metrics settle
// asynchronously: a session's end is counted by its own goroutine).
func wantMetric(t testing.TB, base, name, labels string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := metricValue(t, base, name, labels)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, labels, v, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClose waits for c's connection to end and checks the close code
// and, when reason is not empty, the close reason.
func expectClose(t testing.TB, c *client, code websocket.StatusCode, reason string) (websocket.StatusCode, string) {
	t.Helper()
	gotCode, gotReason := c.closed()
	if gotCode != code || (reason != "" && gotReason != reason) {
		t.Fatalf("closed with %d %q, want %d %q", gotCode, gotReason, code, reason)
	}
	return gotCode, gotReason
}

// rawConn is a connection driven by hand, without a background reader,
// so that the test decides when (and whether) it reads.
type rawConn struct {
	t       testing.TB
	conn    *websocket.Conn
	pending []msg // lines read but not consumed yet
}

// dialRaw dials url offering the subprotocol, with a small read buffer;
// nothing reads the connection but the test.
func dialRaw(t testing.TB, url string) *rawConn {
	t.Helper()
	opts := &websocket.DialOptions{Subprotocols: []string{Subprotocol}, ReadBufferSize: 256}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() { conn.CloseNow() })
	return &rawConn{t: t, conn: conn}
}

// newServer is newTestServer with a short drain window, so that the
// shutdown at the end of the test does not wait for it.
func newServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	return newTestServer(t, func(cfg *Config) {
		cfg.DrainWindow = time.Millisecond
		if mutate != nil {
			mutate(cfg)
		}
	})
}

// write sends one text message.
func (r *rawConn) write(line string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.conn.Write(ctx, websocket.MessageText, []byte(line)); err != nil {
		r.t.Fatalf("write %s: %v", line, err)
	}
}

// readLine returns the next protocol line, reading a message when none is
// pending; it returns an error when ctx ends or the connection does.
// readToEnd reads and discards until the connection ends, within 10 s,
// and returns why it ended.
func (r *rawConn) readToEnd(t testing.TB) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := r.readLine(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the connection is still open after 10s")
			}
			return err
		}
	}
}

func (r *rawConn) readLine(ctx context.Context) (msg, error) {
	for len(r.pending) == 0 {
		typ, data, err := r.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			return nil, fmt.Errorf("binary message from the server")
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var m msg
			if err := json.Unmarshal(line, &m); err != nil {
				return nil, fmt.Errorf("bad line %q: %v", line, err)
			}
			r.pending = append(r.pending, m)
		}
	}
	m := r.pending[0]
	r.pending = r.pending[1:]
	return m, nil
}

// call sends a command line and reads until its reply, keeping the pushes
// read meanwhile for later readLine calls.
func (r *rawConn) call(id int, method string, fields msg) msg {
	r.t.Helper()
	cmd := msg{"id": id, "method": method}
	for k, v := range fields {
		cmd[k] = v
	}
	b, _ := json.Marshal(cmd)
	r.write(string(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pushes []msg
	defer func() { r.pending = append(pushes, r.pending...) }()
	for {
		m, err := r.readLine(ctx)
		if err != nil {
			r.t.Fatalf("waiting for the reply to %s: %v", method, err)
		}
		if _, ok := m["id"]; !ok {
			pushes = append(pushes, m)
			continue
		}
		if int(m.num("id")) != id {
			r.t.Fatalf("reply %v while waiting for %d", m, id)
		}
		if e := m.obj("error"); e != nil {
			r.t.Fatalf("%s: error %v", method, e)
		}
		return m.obj("result")
	}
}

// payload returns JSON data of about size bytes, numbered n.
func payload(n, size int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("x", max(size-24, 0))))
}

// sendConnect sends connect with token (omitted when empty) without
// waiting for the reply, for connections the server is expected to close.
func (c *client) sendConnect(token string) {
	c.t.Helper()
	fields := msg{}
	if token != "" {
		fields["token"] = token
	}
	c.send("connect", fields)
}

// callKeep is call that also returns the pushes read before the reply (a
// subscriber's own publication comes before the reply to its publish).
func (c *client) callKeep(method string, fields msg) (reply msg, pushes []msg) {
	c.t.Helper()
	id := c.send(method, fields)
	for {
		m := c.next()
		if _, ok := m["id"]; !ok {
			pushes = append(pushes, m)
			continue
		}
		if uint64(m.num("id")) != id {
			c.t.Fatalf("reply to %v while waiting for %d", m["id"], id)
		}
		return m, pushes
	}
}

// nextPush returns the next push of the given kind, skipping others.
func (c *client) nextPush(kind string) msg {
	c.t.Helper()
	for {
		m := c.next()
		if _, ok := m["id"]; ok {
			c.t.Fatalf("reply %v while waiting for a %s push", m, kind)
		}
		if m.str("push") == kind {
			return m
		}
	}
}

// pubPushes returns the publication pushes among pushes.
func pubPushes(pushes []msg) []msg {
	var out []msg
	for _, m := range pushes {
		if m.str("push") == "pub" {
			out = append(out, m)
		}
	}
	return out
}

// okOpen is ok that fails at once, with the close code, when the server
// closes the connection instead of replying.
func (c *client) okOpen(method string, fields msg) msg {
	c.t.Helper()
	id := c.send(method, fields)
	timeout := time.After(10 * time.Second)
	for {
		var m msg
		select {
		case m = <-c.lines:
		case <-c.done:
			select {
			case m = <-c.lines:
			default:
				c.t.Fatalf("%s: connection ended instead of a reply: %v", method, c.err)
			}
		case <-timeout:
			c.t.Fatalf("%s: no reply within 10s", method)
		}
		if _, ok := m["id"]; !ok {
			continue
		}
		if uint64(m.num("id")) != id {
			c.t.Fatalf("reply to %v while waiting for %d", m["id"], id)
		}
		if e := m.obj("error"); e != nil {
			c.t.Fatalf("%s %v: error %v", method, fields, e)
		}
		return m.obj("result")
	}
}
