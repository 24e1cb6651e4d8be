package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// FuzzPusherMessage sends one message as a Pusher client of a real gateway,
// then pusher:ping. Whatever the message, every message of the server is
// one event of the protocol (a JSON object with an event name), never
// several; and the connection either answers the ping or is closed with
// 4000, after a pusher:error saying why.
func FuzzPusherMessage(f *testing.F) {
	for _, seed := range []string{
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"pusher:subscribe","data":{"channel":"news"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}`,
		`{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"key1:00"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"key1:00","channel_data":"{\"user_id\":1}"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"private-encrypted-a"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"bad name"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"news","recovery":true,"since":"e:1"}}`,
		`{"event":"pusher:subscribe","data":{"channel":"cache-a","since":":"}}`,
		`{"event":"client-x","channel":"private-encrypted-a","data":"x"}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"news"}}`,
		`{"event":"client-x","channel":"private-a","data":{"a":1}}`,
		`{"event":"client-x","channel":"news","data":null}`,
		`{"event":"pusher:other"}`,
		`{"event":""}`, `{}`, `[]`, `"x"`, `{`, ``, " ", "\n",
	} {
		f.Add([]byte(seed))
	}
	srv, err := New(Config{
		Pusher: Pusher{Apps: testPusherApps},
		Limits: Limits{MessageRate: -1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/app/key1?protocol=7"
	f.Fuzz(func(t *testing.T, msg []byte) {
		// The WebSocket layer refuses invalid UTF-8 (1007) and messages
		// over the limit (1009) before the decoder sees them.
		msg = bytes.ToValidUTF8(msg, []byte("\uFFFD"))
		if len(msg) > 32<<10 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		read := func() (string, error) {
			_, data, err := c.Read(ctx)
			if err != nil {
				return "", err
			}
			var ev struct {
				Event string `json:"event"`
			}
			if err := json.Unmarshal(data, &ev); err != nil || ev.Event == "" {
				t.Fatalf("server message %q is not one Pusher event", data)
			}
			return ev.Event, nil
		}
		if ev, err := read(); err != nil || ev != "pusher:connection_established" {
			t.Fatalf("first event %q, %v", ev, err)
		}
		for _, m := range [][]byte{msg, []byte(`{"event":"pusher:ping","data":{}}`)} {
			if err := c.Write(ctx, websocket.MessageText, m); err != nil {
				break // closed already: the reads below tell how
			}
		}
		sawError := false
		for {
			ev, err := read()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != 4000 || !sawError {
					t.Fatalf("after %q: connection ended with %v (pusher:error before: %v), want the pong or 4000 after pusher:error", msg, err, sawError)
				}
				return
			}
			switch ev {
			case "pusher:pong":
				return
			case "pusher:error":
				sawError = true
			case "pusher_internal:subscription_succeeded", "pusher:subscription_error", "pusher:cache_miss":
			default:
				t.Fatalf("after %q: unexpected event %q", msg, ev)
			}
		}
	})
}
