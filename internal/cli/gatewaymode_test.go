package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway"
)

// testGateway is a gateway running in-process for one test.
type testGateway struct {
	srv *gateway.Server
	url string // http://127.0.0.1:port, for --url and as the URL of connect and bench
	ws  string // ws://127.0.0.1:port/ws
}

// demoGatewayConfig is the gateway of the tests: the namespace demo, where
// anyone may subscribe and publish, with history.
func demoGatewayConfig() gateway.Config {
	return gateway.Config{
		Namespaces: []gateway.Namespace{{Name: "demo", Anonymous: true, Publish: gateway.PermissionAuthenticated, HistorySize: 100}},
		Auth:       gateway.Auth{AllowAnonymous: true},
	}
}

// startTestGateway runs a gateway with cfg until the test ends.
func startTestGateway(t *testing.T, cfg gateway.Config) *testGateway {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		ts.Close()
	})
	return &testGateway{srv: srv, url: ts.URL, ws: "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"}
}

// waitSubscriptions waits until the gateway counts n subscriptions.
func (g *testGateway) waitSubscriptions(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for g.srv.Stats().Subscriptions != n {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway has %d subscriptions, want %d", g.srv.Stats().Subscriptions, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitConnections waits until the gateway has n connections open.
func (g *testGateway) waitConnections(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for g.srv.Stats().Connections != n {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway has %d connections, want %d", g.srv.Stats().Connections, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publish publishes data to channel as the backend would, and returns the
// epoch of the channel.
func (g *testGateway) publish(t *testing.T, channel, data string) string {
	t.Helper()
	pos, err := g.srv.Publish(t.Context(), channel, json.RawMessage(data))
	if err != nil {
		t.Fatal(err)
	}
	return pos.Epoch
}

func TestJSONData(t *testing.T) {
	for in, want := range map[string]string{
		`{"text": "hi"}`: `{"text":"hi"}`,
		` [1, 2] `:       `[1,2]`,
		`42`:             `42`,
		`"quoted"`:       `"quoted"`,
		`null`:           `null`,
		`hi`:             `"hi"`,
		`{"broken"`:      `"{\"broken\""`,
		``:               `""`,
		`  `:             `"  "`,
		"tab\there":      `"tab\there"`,
	} {
		if got := string(jsonData(in)); got != want {
			t.Errorf("jsonData(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestAPIBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":             "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":            "http://127.0.0.1:8080",
		"ws://127.0.0.1:8080/ws":            "http://127.0.0.1:8080",
		"wss://gw.example.com/ws":           "https://gw.example.com",
		"https://gw.example.com/api/":       "https://gw.example.com",
		"https://gw.example.com/api":        "https://gw.example.com",
		"http://h/prefix/api/publish":       "http://h/prefix",
		"http://h/prefix/ws?x=1":            "http://h/prefix",
		"http://user:pw@h:1/duplex/api/x/y": "http://user:pw@h:1/duplex",
	} {
		if got, err := apiBaseURL(in); err != nil || got != want {
			t.Errorf("apiBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://h", "http://", "127.0.0.1:8080", "%"} {
		if got, err := apiBaseURL(in); err == nil {
			t.Errorf("apiBaseURL(%q) = %q, want an error", in, got)
		}
	}
}

func TestParseSince(t *testing.T) {
	if p, err := parseSince("41:p3bX2q"); err != nil || *p != (gwPosition{41, "p3bX2q"}) {
		t.Errorf("parseSince: %+v, %v", p, err)
	}
	if p, err := parseSince("0:"); err != nil || *p != (gwPosition{0, ""}) {
		t.Errorf("parseSince: %+v, %v", p, err)
	}
	for _, in := range []string{"", "41", "x:y", "-1:e", ":e"} {
		if _, err := parseSince(in); err == nil {
			t.Errorf("parseSince(%q) succeeded", in)
		}
	}
}

func TestEachLine(t *testing.T) {
	var got []string
	eachLine([]byte("{\"a\":1}\n\n{\"b\":2}\n"), func(line []byte) { got = append(got, string(line)) })
	if strings.Join(got, "|") != `{"a":1}|{"b":2}` {
		t.Errorf("lines %q", got)
	}
}
