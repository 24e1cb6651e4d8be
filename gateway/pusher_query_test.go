package gateway

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pusherCall sends a request of the HTTP API signed as Pusher's SDKs sign
// (written out here, not with the server's code), and returns the status
// and body.
func pusherCall(t *testing.T, ts *testServer, method, path, secret string, params url.Values, body []byte) (int, string) {
	t.Helper()
	q := url.Values{"auth_key": {"key" + secret[len("secret"):]}, "auth_timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}, "auth_version": {"1.0"}}
	for k, v := range params {
		q[k] = v
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	var names []string
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	var pairs []string
	for _, k := range names {
		pairs = append(pairs, k+"="+q.Get(k))
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method + "\n" + path + "\n" + strings.Join(pairs, "&")))
	q.Set("auth_signature", hex.EncodeToString(m.Sum(nil)))
	req, err := http.NewRequest(method, ts.http.URL+path+"?"+q.Encode(), strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// joinPusher connects a client of key1 subscribed to channel (as user on
// a presence channel).
func joinPusher(t *testing.T, ts *testServer, channel, user string) *client {
	t.Helper()
	c, id := dialPusher(t, ts, "key1")
	data := map[string]any{"channel": channel}
	if user != "" {
		cd := fmt.Sprintf(`{"user_id":%q}`, user)
		data["channel_data"], data["auth"] = cd, channelAuth("key1", "secret1", id+":"+channel+":"+cd)
	}
	c.pusherSend("pusher:subscribe", "", data)
	c.nextEvent("pusher_internal:subscription_succeeded")
	return c
}

// TestPusherHTTPQueries: GET /apps/{id}/channels (prefix filter, info),
// /channels/{name}, /channels/{name}/users and the info of triggers
// answer what is subscribed, per app, with Pusher's statuses for what
// Pusher refuses; a channel whose subscribers left is no longer listed.
func TestPusherHTTPQueries(t *testing.T) {
	ts := newPusherServer(t, func(cfg *Config) {
		cfg.Pusher.Apps = append([]PusherApp(nil), cfg.Pusher.Apps...) // not the shared one's
		cfg.Pusher.Apps[0].MaxPresenceMembers = 10
	})
	a := joinPusher(t, ts, "news", "")
	b := joinPusher(t, ts, "news", "")
	joinPusher(t, ts, "presence-room", "alice")
	joinPusher(t, ts, "presence-room", "alice")
	joinPusher(t, ts, "presence-room", "bob")
	other, _ := dialPusher(t, ts, "key2")
	other.pusherSend("pusher:subscribe", "", map[string]any{"channel": "elsewhere"})
	other.nextEvent("pusher_internal:subscription_succeeded")

	get := func(path string, params url.Values) (int, string) {
		return pusherCall(t, ts, "GET", path, "secret1", params, nil)
	}
	for _, tc := range []struct {
		path   string
		params url.Values
		status int
		body   string
	}{
		{"/apps/app1/channels", nil, 200, `{"channels":{"news":{},"presence-room":{}}}`},
		{"/apps/app1/channels", url.Values{"filter_by_prefix": {"presence-"}, "info": {"user_count"}}, 200,
			`{"channels":{"presence-room":{"user_count":2}}}`},
		{"/apps/app1/channels", url.Values{"info": {"subscription_count"}}, 200,
			`{"channels":{"news":{"subscription_count":2},"presence-room":{"subscription_count":3}}}`},
		{"/apps/app1/channels", url.Values{"filter_by_prefix": {"ne"}}, 200, `{"channels":{"news":{}}}`},
		{"/apps/app1/channels", url.Values{"info": {"user_count"}}, 400, ""},
		{"/apps/app1/channels", url.Values{"info": {"cache"}}, 400, ""},
		{"/apps/app1/channels/news", url.Values{"info": {"subscription_count"}}, 200, `{"occupied":true,"subscription_count":2}`},
		{"/apps/app1/channels/news", url.Values{"info": {"user_count"}}, 400, ""},
		{"/apps/app1/channels/presence-room", url.Values{"info": {"user_count,subscription_count"}}, 200,
			`{"occupied":true,"user_count":2,"subscription_count":3}`},
		{"/apps/app1/channels/empty", nil, 200, `{"occupied":false}`},
		{"/apps/app1/channels/elsewhere", nil, 200, `{"occupied":false}`}, // the other app's
		{"/apps/app1/channels/presence-room/users", nil, 200, ""},
		{"/apps/app1/channels/news/users", nil, 400, ""},
		{"/apps/nope/channels", nil, 404, ""},
	} {
		st, body := get(tc.path, tc.params)
		if st != tc.status || tc.body != "" && body != tc.body {
			t.Errorf("GET %s %v: %d %s, want %d %s", tc.path, tc.params, st, body, tc.status, tc.body)
		}
	}
	_, body := get("/apps/app1/channels/presence-room/users", nil)
	var users struct {
		Users []struct {
			ID string `json:"id"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(body), &users); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range users.Users {
		ids = append(ids, u.ID)
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != "alice,bob" {
		t.Fatalf("users %s", body)
	}
	// Signed with another app's secret: 401.
	if st, _ := pusherCall(t, ts, "GET", "/apps/app1/channels", "secret2", nil, nil); st != 401 {
		t.Fatalf("wrongly signed: %d", st)
	}

	// The info of triggers.
	post := func(path, body string) (int, string) {
		return pusherCall(t, ts, "POST", path, "secret1", nil, []byte(body))
	}
	for _, tc := range []struct {
		path, body string
		status     int
		reply      string
	}{
		{"/apps/app1/events", `{"name":"e","data":"1","channels":["news","presence-room"]}`, 200, `{}`},
		{"/apps/app1/events", `{"name":"e","data":"1","channels":["news","presence-room"],"info":"subscription_count"}`, 200,
			`{"channels":{"news":{"subscription_count":2},"presence-room":{"subscription_count":3}}}`},
		{"/apps/app1/events", `{"name":"e","data":"1","channel":"presence-room","info":"user_count"}`, 200,
			`{"channels":{"presence-room":{"user_count":2}}}`},
		{"/apps/app1/events", `{"name":"e","data":"1","channels":["news"],"info":"user_count"}`, 400, ""},
		{"/apps/app1/batch_events", `{"batch":[{"name":"e","data":"1","channel":"news","info":"subscription_count"},{"name":"e","data":"1","channel":"presence-room"}]}`, 200,
			`{"batch":[{"subscription_count":2},{}]}`},
		{"/apps/app1/batch_events", `{"batch":[{"name":"e","data":"1","channel":"news"}]}`, 200, `{}`},
	} {
		st, reply := post(tc.path, tc.body)
		if st != tc.status || tc.reply != "" && reply != tc.reply {
			t.Errorf("POST %s %s: %d %s, want %d %s", tc.path, tc.body, st, reply, tc.status, tc.reply)
		}
	}

	// Once its subscribers are gone, a channel is not listed.
	a.pusherSend("pusher:unsubscribe", "", map[string]any{"channel": "news"})
	a.pusherSend("pusher:ping", "", map[string]any{})
	for a.next().str("event") != "pusher:pong" {
	}
	if _, body := get("/apps/app1/channels/news", url.Values{"info": {"subscription_count"}}); body != `{"occupied":true,"subscription_count":1}` {
		t.Fatalf("after one unsubscribed: %s", body)
	}
	b.conn.CloseNow()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get("/apps/app1/channels", nil)
		if body == `{"channels":{"presence-room":{}}}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last subscriber closed: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, body := get("/apps/app1/channels/news", nil); body != `{"occupied":false}` {
		t.Fatalf("vacated channel: %s", body)
	}
}
