package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
)

// webhookReceiver is an HTTP server on loopback that records the webhook
// events whose signature is right, and answers the first fail requests
// with 500.
type webhookReceiver struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	events   []string // "name channel user/event"
	posts    int
	fail     int
	maxBatch int           // the most events one accepted POST carried
	delay    time.Duration // how long each POST takes to answer
}

func newWebhookReceiver(t *testing.T, fail int) *webhookReceiver {
	r := &webhookReceiver{t: t, fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		m := hmac.New(sha256.New, []byte("secret1"))
		m.Write(body)
		if req.Header.Get("X-Pusher-Key") != "key1" || req.Header.Get("X-Pusher-Signature") != hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("webhook with a wrong key or signature: %v %s", req.Header, body)
		}
		var b struct {
			TimeMS int64 `json:"time_ms"`
			Events []struct {
				Name     string `json:"name"`
				Channel  string `json:"channel"`
				UserID   string `json:"user_id"`
				Event    string `json:"event"`
				Data     string `json:"data"`
				SocketID string `json:"socket_id"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 {
			t.Errorf("webhook body %s: %v", body, err)
		}
		r.mu.Lock()
		delay := r.delay
		r.mu.Unlock()
		time.Sleep(delay)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.posts++
		if r.posts <= r.fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.maxBatch = max(r.maxBatch, len(b.Events))
		for _, e := range b.Events {
			s := e.Name + " " + e.Channel
			if e.UserID != "" {
				s += " " + e.UserID
			}
			if e.Event != "" {
				s += " " + e.Event + " " + e.Data + " " + fmt.Sprint(e.SocketID != "")
			}
			r.events = append(r.events, s)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// await waits until the events received are want, in any order.
func (r *webhookReceiver) await(want ...string) {
	r.t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([]string(nil), r.events...)
		r.mu.Unlock()
		sort.Strings(got)
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("webhook events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func webhookApps(url string) func(*Config) {
	return func(cfg *Config) {
		cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...)
		cfg.Pusher.Apps[0].Webhooks = []PusherWebhook{{URL: url}}
	}
}

// TestPusherWebhooks: channel_occupied, member_added, client_event,
// member_removed and channel_vacated reach the app's webhook URL, signed
// with the app's key and secret, each once; a POST answered 500 is sent
// again.
func TestPusherWebhooks(t *testing.T) {
	rcv := newWebhookReceiver(t, 1)
	ts := newPusherServer(t, webhookApps(rcv.srv.URL))
	alice := joinPusher(t, ts, "presence-room", "alice")
	bob := joinPusher(t, ts, "presence-room", "bob")
	rcv.await("channel_occupied presence-room", "member_added presence-room alice", "member_added presence-room bob")
	rcv.mu.Lock()
	posts := rcv.posts
	rcv.mu.Unlock()
	if posts < 2 {
		t.Fatalf("%d POSTs: the one answered 500 was not sent again", posts)
	}
	alice.pusherSend("client-typing", "presence-room", map[string]any{"x": 1})
	bob.nextEvent("client-typing")
	alice.conn.CloseNow()
	rcv.await("channel_occupied presence-room", "member_added presence-room alice", "member_added presence-room bob",
		`client_event presence-room alice client-typing {"x":1} true`, "member_removed presence-room alice")
	bob.conn.CloseNow()
	rcv.await("channel_occupied presence-room", "member_added presence-room alice", "member_added presence-room bob",
		`client_event presence-room alice client-typing {"x":1} true`, "member_removed presence-room alice",
		"member_removed presence-room bob", "channel_vacated presence-room")
}

// TestPusherWebhooksAtShutdown: when a node shuts down, what its clients
// left (member_removed, channel_vacated) and the events still queued, the
// batch being posted included, reach the webhook before Shutdown returns.
// Before, the node stopped watching and sending at once and they were
// lost.
func TestPusherWebhooksAtShutdown(t *testing.T) {
	rcv := newWebhookReceiver(t, 0)
	ts := newPusherServer(t, webhookApps(rcv.srv.URL))
	joinPusher(t, ts, "presence-room", "alice")
	rcv.await("channel_occupied presence-room", "member_added presence-room alice")
	rcv.mu.Lock()
	rcv.delay = 200 * time.Millisecond
	rcv.mu.Unlock()
	app := ts.pusherByID["app1"]
	want := []string{"channel_occupied presence-room", "member_added presence-room alice",
		"member_removed presence-room alice", "channel_vacated presence-room"}
	for i := range 3 {
		// The first is taken and posted at once; the others wait for it.
		ev := pusherWebhookEvent{Name: "client_event", Channel: "private-a", Event: "client-x", Data: json.RawMessage(fmt.Sprintf(`"%d"`, i))}
		ts.queueWebhook(app, ev)
		want = append(want, fmt.Sprintf("client_event private-a client-x %d false", i))
	}
	time.Sleep(50 * time.Millisecond) // the first POST is under way
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	got := append([]string(nil), rcv.events...)
	rcv.mu.Unlock()
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("webhook events when Shutdown returned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPusherWebhookBatches: events of the same moment go in one POST.
// A client subscribes to three channels at once; their channel_occupied
// events are found in the same check of the channels, so at least two of
// them share a POST however the check's tick falls.
func TestPusherWebhookBatches(t *testing.T) {
	rcv := newWebhookReceiver(t, 0)
	ts := newPusherServer(t, webhookApps(rcv.srv.URL))
	c, _ := dialPusher(t, ts, "key1")
	for _, ch := range []string{"news-a", "news-b", "news-c"} {
		c.pusherSend("pusher:subscribe", "", map[string]any{"channel": ch})
	}
	rcv.await("channel_occupied news-a", "channel_occupied news-b", "channel_occupied news-c")
	rcv.mu.Lock()
	posts, most := rcv.posts, rcv.maxBatch
	rcv.mu.Unlock()
	if most < 2 {
		t.Fatalf("3 events of one moment came in %d POSTs of at most %d event", posts, most)
	}
}

// TestPusherWebhooksTwoNodes: with subscribers on two nodes of one
// redis-server, both with webhooks, channel_occupied and channel_vacated
// are sent once, and a user with connections on both nodes is added and
// removed once.
func TestPusherWebhooksTwoNodes(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	prefix := fmt.Sprintf("hooks_%d", time.Now().UnixNano())
	rcv := newWebhookReceiver(t, 0)
	node := func() *testServer {
		return newPusherServer(t, func(cfg *Config) {
			webhookApps(rcv.srv.URL)(cfg)
			b, err := redis.New(redis.Options{Addrs: []string{rs.Addr()}, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Broker = broker.Broker(b)
		})
	}
	a, b := node(), node()
	var clients []*client
	for _, ts := range []*testServer{a, b, a, b} {
		clients = append(clients, joinPusher(t, ts, "presence-room", "carol"), joinPusher(t, ts, "news", ""))
	}
	rcv.await("channel_occupied presence-room", "channel_occupied news", "member_added presence-room carol")
	time.Sleep(2 * pusherWebhookInterval) // nothing more comes
	rcv.await("channel_occupied presence-room", "channel_occupied news", "member_added presence-room carol")
	for _, c := range clients {
		c.conn.CloseNow()
	}
	rcv.await("channel_occupied presence-room", "channel_occupied news", "member_added presence-room carol",
		"member_removed presence-room carol", "channel_vacated presence-room", "channel_vacated news")
}

// TestPusherWebhookQueue: while the receiver does not answer, at most
// pusherWebhookQueue events wait; the others are dropped and counted in
// duplex_limit_hits_total{limit="pusher_webhook_queue"}.
func TestPusherWebhookQueue(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(rcv.Close)
	t.Cleanup(func() { close(release) }) // before rcv.Close: runs first
	ts := newPusherServer(t, webhookApps(rcv.URL))
	app := ts.pusherByID["app1"]
	ev := pusherWebhookEvent{Name: "client_event", Channel: "private-a", Event: "client-x", Data: json.RawMessage(`"{}"`)}
	ts.queueWebhook(app, ev) // taken by the sender, which then waits on the receiver
	// Once its POST has arrived, the sender takes no more until the
	// receiver answers (before, it may still be gathering a batch).
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the sender sent nothing")
	}
	const extra = 25
	for range pusherWebhookQueue + extra {
		ts.queueWebhook(app, ev)
	}
	if n := len(app.hooks.queue); n != pusherWebhookQueue {
		t.Fatalf("%d events wait, want %d", n, pusherWebhookQueue)
	}
	if n := readValue(ts.metrics.limitHits.With(limitWebhookQueue)); n != extra {
		t.Fatalf("%v events counted as dropped, want %d", n, extra)
	}
}
