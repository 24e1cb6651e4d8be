package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
)

func token(t testing.TB, claims map[string]any) string {
	t.Helper()
	s, err := jwt.Sign(jwt.HS256, testSecret, "", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConnect(t *testing.T) {
	ts := newTestServer(t, nil)
	t.Run("anonymous", func(t *testing.T) {
		_, res := connected(t, ts.url, "")
		if res.str("client") == "" || res.str("user") != "" || res.str("version") != "test" || res.num("ping") != 25 {
			t.Fatalf("connect result %v", res)
		}
	})
	t.Run("token", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Unix()
		_, res := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "exp": exp}))
		if res.str("user") != "alice" || int64(res.num("expires")) != exp {
			t.Fatalf("connect result %v", res)
		}
	})
	t.Run("before connect", func(t *testing.T) {
		c := dialClient(t, ts.url, nil)
		if code := c.errCode("subscribe", msg{"channel": "chat:a"}); code != 101 {
			t.Fatalf("error %d, want 101", code)
		}
	})
	t.Run("twice", func(t *testing.T) {
		c, _ := connected(t, ts.url, "")
		if code := c.errCode("connect", nil); code != 112 {
			t.Fatalf("error %d, want 112", code)
		}
	})
}

func TestPubSub(t *testing.T) {
	ts := newTestServer(t, nil)
	a, _ := connected(t, ts.url, "")
	b, _ := connected(t, ts.url, "")
	res := a.ok("subscribe", msg{"channel": "chat:room"})
	if res.str("epoch") != "" || res.num("offset") != 0 || res["recoverable"] != true {
		t.Fatalf("subscribe result %v", res)
	}
	pub := b.ok("publish", msg{"channel": "chat:room", "data": msg{"text": "hi"}})
	if pub.num("offset") != 1 {
		t.Fatalf("publish result %v", pub)
	}
	// a sees b's join first (join/leave on in chat), then the publication.
	for {
		m := a.next()
		if m.str("push") == "join" {
			continue
		}
		if m.str("push") != "pub" || m.str("channel") != "chat:room" || m.obj("data").str("text") != "hi" || m.num("offset") != 1 || m.str("epoch") != pub.str("epoch") {
			t.Fatalf("push %v", m)
		}
		if m.obj("info").str("client") == "" {
			t.Fatalf("publication without info: %v", m)
		}
		break
	}
}

// TestEncodeReplyEmpty: ping's reply, encoded by hand, is what the
// generic encoder makes of it.
func TestEncodeReplyEmpty(t *testing.T) {
	for _, id := range []uint64{1, 42, 1<<64 - 1} {
		want, err := json.Marshal(reply{ID: id, Result: emptyResult{}})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeReply(id, emptyResult{}, nil); string(got) != string(want) {
			t.Errorf("encodeReply(%d) = %s, want %s", id, got, want)
		}
	}
	if got := encodeReply(7, emptyResult{}, ErrInternal); !strings.Contains(string(got), `"error"`) {
		t.Errorf("an error with an empty result lost its error: %s", got)
	}
}
