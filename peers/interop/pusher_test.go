package interop

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Pusher protocol of the gateway against the real clients: pusher-js
// (its Node build) connects, subscribes and sends client events, and the
// pusher server SDK signs its channel authorizations and calls the HTTP
// API, so that the gateway's signature code is checked against the SDK's.

// requirePusherJS fails the test unless node and the npm packages pusher-js
// and pusher are installed, and records their versions.
func requirePusherJS(t *testing.T) {
	t.Helper()
	requireNode(t)
	for _, pkg := range []string{"pusher-js", "pusher"} {
		recordVersion(t, pkg, npmVersion(t, pkg))
	}
}

// pusherPeer is one pusher-js client in a Node process (js/pusher_peer.mjs).
type pusherPeer struct {
	t      *testing.T
	name   string
	proc   *peerProcess
	lines  chan map[string]any
	socket string
}

func startPusherPeer(t *testing.T, name, addr, key, appID, secret string, args ...string) *pusherPeer {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p := &pusherPeer{t: t, name: name, lines: make(chan map[string]any, 1000)}
	p.proc = startPeer(t, 2*time.Minute, func(line string) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			m = map[string]any{"type": "unparsed", "line": line}
		}
		p.lines <- m
	}, "node", append([]string{"js/pusher_peer.mjs", host, port, key, appID, secret}, args...)...)
	return p
}

func (p *pusherPeer) send(cmd map[string]any) {
	p.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := p.proc.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// await returns the next line of type typ (and channel, when not empty),
// skipping state changes; another line fails the test. An empty typ takes
// any line.
func (p *pusherPeer) await(typ, channel string) map[string]any {
	p.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if m["type"] == "state" && typ != "state" {
				continue
			}
			if typ == "" {
				return m // any line but a state change
			}
			if m["type"] != typ || (channel != "" && m["channel"] != channel) {
				p.t.Fatalf("%s: got %v, want %s on %q", p.name, m, typ, channel)
			}
			return m
		case <-timeout:
			p.t.Fatalf("%s: no %s on %q within 20s; standard error:\n%s", p.name, typ, channel, p.proc.stderr.String())
			return nil
		}
	}
}

// awaitBoth returns the next lines of types first and second, in either
// order (an event may overtake the HTTP response that caused it).
func (p *pusherPeer) awaitBoth(first, second string) (a, b map[string]any) {
	p.t.Helper()
	timeout := time.After(20 * time.Second)
	for a == nil || b == nil {
		select {
		case m := <-p.lines:
			switch {
			case m["type"] == "state":
			case m["type"] == first && a == nil:
				a = m
			case m["type"] == second && b == nil:
				b = m
			default:
				p.t.Fatalf("%s: got %v, want %s and %s", p.name, m, first, second)
			}
		case <-timeout:
			p.t.Fatalf("%s: no %s and %s within 20s", p.name, first, second)
		}
	}
	return a, b
}

// connected waits until pusher-js is connected and keeps its socket id.
func (p *pusherPeer) connected() {
	p.t.Helper()
	for {
		m := p.await("state", "")
		if m["current"] == "connected" {
			p.socket, _ = m["socket_id"].(string)
			return
		}
	}
}

// quiet fails if a line other than a state change comes within d.
func (p *pusherPeer) quiet(d time.Duration) {
	p.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-p.lines:
			if m["type"] != "state" {
				p.t.Fatalf("%s: unexpected %v", p.name, m)
			}
		case <-timeout:
			return
		}
	}
}

// pusherApp is an app of the gateway's configuration.
type pusherApp struct {
	id, key, secret string
	clientEvents    bool
	webhook         string // a webhook URL, or none
	historySize     int    // events kept per channel for recovery
}

// startPusherGateway runs duplex serve, built from this tree, with the
// Pusher apps, and returns the address it listens on.
func startPusherGateway(t *testing.T, apps []pusherApp) string {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("presence_interval: 20ms\npusher:\n  apps:\n")
	for _, a := range apps {
		fmt.Fprintf(&cfg, "    - {id: %q, key: %q, secret: %q, client_events: %v", a.id, a.key, a.secret, a.clientEvents)
		if a.historySize > 0 {
			fmt.Fprintf(&cfg, ", history_size: %d", a.historySize)
		}
		if a.webhook != "" {
			fmt.Fprintf(&cfg, ", webhooks: [{url: %q}]", a.webhook)
		}
		cfg.WriteString("}\n")
	}
	path := filepath.Join(t.TempDir(), "duplex.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	first := regexp.MustCompile(`^duplex serve listening on http://(127\.0\.0\.1:\d+)/$`)
	proc := startPeer(t, 3*time.Minute, func(line string) {
		if m := first.FindStringSubmatch(line); m != nil {
			listening <- m[1]
		}
	}, buildDuplex(t), "serve", "--config", path, "--listen", "127.0.0.1:0")
	select {
	case addr := <-listening:
		return addr
	case <-proc.exited:
		t.Fatalf("duplex serve exited before listening: %v\n%s", proc.err, proc.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("duplex serve printed no address")
	}
	return ""
}

// TestPusherJS: pusher-js clients and the pusher server SDK against the
// gateway: public, private and presence channels, client events, and the
// HTTP API, with the SDK's signatures, right and wrong.
func TestPusherJS(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{
		{id: "42", key: "app-key", secret: "app-secret", clientEvents: true},
		{id: "43", key: "other-key", secret: "other-secret"},
	})
	a := startPusherPeer(t, "alice", addr, "app-key", "42", "app-secret")
	b := startPusherPeer(t, "bob", addr, "app-key", "42", "app-secret")
	o := startPusherPeer(t, "other app", addr, "other-key", "43", "other-secret")
	for _, p := range []*pusherPeer{a, b, o} {
		p.connected()
	}

	t.Run("public", func(t *testing.T) {
		for _, p := range []*pusherPeer{a, b, o} {
			p.send(map[string]any{"op": "subscribe", "channel": "news"})
			p.await("subscribed", "news")
		}
		a.send(map[string]any{"op": "trigger", "channels": []string{"news"}, "event": "greet", "data": map[string]any{"text": "hi"}})
		res, ev := a.awaitBoth("trigger", "event")
		if res["status"] != float64(200) {
			t.Fatalf("trigger: %v", res)
		}
		for _, m := range []map[string]any{ev, b.await("event", "news")} {
			if m["channel"] != "news" || m["event"] != "greet" || fmt.Sprint(m["data"]) != "map[text:hi]" {
				t.Fatalf("got %v", m)
			}
		}
		o.quiet(200 * time.Millisecond) // the other app's channel of the same name
		// socket_id keeps the event from the connection that caused it.
		a.send(map[string]any{"op": "trigger", "channels": []string{"news"}, "event": "greet", "data": "second", "exclude_self": true})
		a.await("trigger", "")
		if m := b.await("event", "news"); m["data"] != "second" {
			t.Fatalf("bob got %v", m)
		}
		a.quiet(200 * time.Millisecond)
		// batch_events, as the SDK's triggerBatch sends it.
		a.send(map[string]any{"op": "trigger_batch", "batch": []map[string]any{
			{"channel": "news", "name": "first", "data": map[string]any{"n": 1}},
			{"channel": "news", "name": "second", "data": map[string]any{"n": 2}},
		}})
		// The events may overtake the HTTP response, in order.
		var events []string
		for len(events) < 3 {
			m := a.await("", "")
			switch {
			case m["type"] == "trigger" && m["status"] == float64(200):
				events = append(events, "response")
			case m["type"] == "event" && m["channel"] == "news":
				events = append(events, fmt.Sprint(m["event"], m["data"]))
			default:
				t.Fatalf("alice: %v", m)
			}
		}
		if got := strings.Join(slices.DeleteFunc(events, func(e string) bool { return e == "response" }), ", "); got != "firstmap[n:1], secondmap[n:2]" {
			t.Fatalf("alice got %v", events)
		}
		for _, want := range []string{"first", "second"} {
			if m := b.await("event", "news"); m["event"] != want {
				t.Fatalf("bob got %v, want %s", m, want)
			}
		}
		// A request signed with another secret is refused.
		a.send(map[string]any{"op": "trigger", "channels": []string{"news"}, "event": "greet", "data": "x", "secret": "wrong"})
		if m := a.await("trigger", ""); m["status"] != float64(401) {
			t.Fatalf("trigger signed with a wrong secret: %v", m)
		}
		b.quiet(200 * time.Millisecond)
	})

	t.Run("private", func(t *testing.T) {
		a.send(map[string]any{"op": "subscribe", "channel": "private-room"})
		a.await("subscribed", "private-room")
		b.send(map[string]any{"op": "subscribe", "channel": "private-wrong", "secret": "wrong"})
		if m := b.await("subscription_error", "private-wrong"); m["status"] != float64(401) {
			t.Fatalf("bad signature: %v", m)
		}
		b.send(map[string]any{"op": "subscribe", "channel": "private-room"})
		b.await("subscribed", "private-room")
		a.send(map[string]any{"op": "client_event", "channel": "private-room", "event": "client-typing", "data": map[string]any{"who": "alice"}})
		if m := a.await("client_event_sent", ""); m["ok"] != true {
			t.Fatalf("client event not sent: %v", m)
		}
		if m := b.await("event", "private-room"); m["event"] != "client-typing" || fmt.Sprint(m["data"]) != "map[who:alice]" {
			t.Fatalf("bob got %v", m)
		}
		a.quiet(200 * time.Millisecond) // never echoed
	})

	t.Run("presence", func(t *testing.T) {
		a.send(map[string]any{"op": "subscribe", "channel": "presence-lobby",
			"user": map[string]any{"user_id": "alice", "user_info": map[string]any{"name": "Alice"}}})
		if m := a.await("subscribed", "presence-lobby"); m["count"] != float64(1) || m["me"] != "alice" {
			t.Fatalf("alice: %v", m)
		}
		b.send(map[string]any{"op": "subscribe", "channel": "presence-lobby",
			"user": map[string]any{"user_id": "bob", "user_info": map[string]any{"name": "Bob"}}})
		m := b.await("subscribed", "presence-lobby")
		if m["count"] != float64(2) || fmt.Sprint(m["members"]) != "map[alice:map[name:Alice] bob:map[name:Bob]]" {
			t.Fatalf("bob: %v", m)
		}
		if m := a.await("member_added", "presence-lobby"); m["id"] != "bob" || fmt.Sprint(m["info"]) != "map[name:Bob]" {
			t.Fatalf("alice: %v", m)
		}
		b.send(map[string]any{"op": "unsubscribe", "channel": "presence-lobby"})
		if m := a.await("member_removed", "presence-lobby"); m["id"] != "bob" {
			t.Fatalf("alice: %v", m)
		}
	})
}

// TestPusherJSUsers: pusher-js signs in (the SDK's authenticateUser signs
// it), gets the events the SDK's sendToUser sends, and is closed for good
// by the SDK's terminateUserConnections.
func TestPusherJSUsers(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{{id: "5", key: "k5", secret: "s5"}})
	bob := startPusherPeer(t, "bob", addr, "k5", "5", "s5")
	carol := startPusherPeer(t, "carol", addr, "k5", "5", "s5")
	for _, p := range []*pusherPeer{bob, carol} {
		p.connected()
	}
	bob.send(map[string]any{"op": "signin", "user": map[string]any{"id": "bob", "name": "Bob"}})
	if m := bob.await("signed_in", ""); m["channel_subscribed"] != true || fmt.Sprint(m["user"]) != "map[id:bob name:Bob]" {
		t.Fatalf("signin: %v", m)
	}
	carol.send(map[string]any{"op": "send_to_user", "user": "bob", "event": "note", "data": map[string]any{"text": "hello"}})
	if m := carol.await("trigger", ""); m["status"] != float64(200) {
		t.Fatalf("sendToUser: %v", m)
	}
	if m := bob.await("user_event", ""); m["event"] != "note" || fmt.Sprint(m["data"]) != "map[text:hello]" {
		t.Fatalf("bob got %v", m)
	}
	carol.send(map[string]any{"op": "terminate", "user": "bob"})
	if m := carol.await("trigger", ""); m["status"] != float64(200) {
		t.Fatalf("terminateUserConnections: %v", m)
	}
	// Bob's pusher-js is told 4009 and leaves the connected state for
	// good; carol's stays.
	if m := bob.await("error", ""); fmt.Sprint(m["error"]) != "map[code:4009 message:connections terminated by the server]" {
		t.Fatalf("bob: %v", m)
	}
	timeout := time.After(3 * time.Second)
	for left := false; ; {
		select {
		case m := <-bob.lines:
			if m["type"] == "error" {
				// pusher-js reports the close too, with its code.
				if e, _ := m["error"].(map[string]any); e == nil || e["code"] != float64(4009) {
					t.Fatalf("bob: %v", m)
				}
				continue
			}
			if m["type"] != "state" {
				t.Fatalf("bob: %v", m)
			}
			if m["current"] == "connected" {
				t.Fatalf("bob reconnected after termination: %v", m)
			}
			left = true
		case <-timeout:
			if !left {
				t.Fatalf("bob's pusher-js did not leave the connected state")
			}
			carol.quiet(10 * time.Millisecond)
			return
		}
	}
}

// TestPusherJSUnknownKey: pusher-js told the key is unknown gets Pusher's
// error 4001 and does not keep reconnecting.
func TestPusherJSUnknownKey(t *testing.T) {
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{{id: "1", key: "k", secret: "s"}})
	p := startPusherPeer(t, "stranger", addr, "no-such-key", "1", "s")
	m := p.await("error", "")
	if e, _ := m["error"].(map[string]any); e == nil || e["code"] != float64(4001) {
		t.Fatalf("error %v, want code 4001", m)
	}
	// It gives up rather than retrying: no second connection.
	timeout := time.After(2 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if m["type"] == "state" && m["current"] == "connected" {
				t.Fatalf("pusher-js connected with an unknown key: %v", m)
			}
			if m["type"] == "error" {
				t.Fatalf("a second error: pusher-js reconnected: %v", m)
			}
		case <-timeout:
			return
		}
	}
}

// TestPusherJSChromium: pusher-js's web build in Chromium, on a page of
// the gateway's own origin: public, private and presence channels (the
// SDK signing in Node), events triggered by the SDK, and a client event
// between two pusher-js clients of the page, not echoed.
func TestPusherJSChromium(t *testing.T) {
	var out struct {
		Browser    string
		Subscribed []struct {
			Tag, Channel string
			Count        *int
		}
		Events []struct {
			Tag, Channel, Event string
			Data                map[string]any
		}
	}
	runPusherPage(t, pusherApp{id: "9", key: "k9", secret: "s9", clientEvents: true}, "js/pusher_chromium.mjs", &out)
	for _, s := range out.Subscribed {
		if s.Channel == "presence-lobby" && (s.Count == nil || *s.Count < 1) {
			t.Errorf("%s subscribed to presence-lobby with count %v", s.Tag, s.Count)
		}
	}
	var got []string
	for _, e := range out.Events {
		got = append(got, fmt.Sprintf("%s %s %s %v", e.Tag, e.Channel, e.Event, e.Data))
	}
	slices.Sort(got)
	want := []string{
		"a news greet map[on:news]",
		"a presence-lobby greet map[on:presence-lobby]",
		"a private-room greet map[on:private-room]",
		"b presence-lobby greet map[on:presence-lobby]",
		"b private-room client-hello map[from:ann]",
		"b private-room greet map[on:private-room]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events in the page:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// runPusherPage runs script, a Node program that drives Chromium, against
// a gateway serving app, and decodes into out the one line of JSON it
// prints; its Browser field is recorded as Chromium's version.
func runPusherPage(t *testing.T, app pusherApp, script string, out any) {
	t.Helper()
	requireChromium(t)
	requirePusherJS(t)
	addr := startPusherGateway(t, []pusherApp{app})
	proc := startPeer(t, 2*time.Minute, nil, "node", script, addr, app.key, app.id, app.secret, t.TempDir())
	lines := proc.output(t)
	if len(lines) != 1 {
		t.Fatalf("output %q", lines)
	}
	var browser struct{ Browser string }
	if err := json.Unmarshal([]byte(lines[0]), &browser); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[0]), out); err != nil {
		t.Fatal(err)
	}
	recordVersion(t, "chromium", browser.Browser)
}
