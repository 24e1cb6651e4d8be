package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway"
	"github.com/duplexws/duplex/websocket"
)

// TestServeConfigLayers: the file, then the environment, then flags.
func TestServeConfigLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "duplex.yaml")
	os.WriteFile(path, []byte(`
listen: 127.0.0.1:9000
api_key: from-file
drain_window: 3s
limits:
  max_connections: 10
  message_rate: 5
namespaces:
  - name: chat
    anonymous: true
    publish: authenticated
    history_size: 50
    history_ttl: 1m
    presence: true
    join_leave: true
    slow_consumer: drop_oldest
`), 0o600)
	env := []string{"DUPLEX_API_KEY=from-env", "DUPLEX_LIMITS_MAX_CONNECTIONS=20", "DUPLEX_ORIGINS=a.example, b.example", "HOME=/x"}
	cfg, err := loadServeConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9000" || cfg.APIKey != "from-env" || cfg.Limits.MaxConnections != 20 ||
		cfg.Limits.MessageRate != 5 || cfg.DrainWindow != 3*time.Second || cfg.demo() {
		t.Fatalf("config %+v", cfg)
	}
	if len(cfg.Origins) != 2 || cfg.Origins[1] != "b.example" {
		t.Fatalf("origins %q", cfg.Origins)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := gateway.Namespace{Name: "chat", Anonymous: true, Subscribe: "", Publish: gateway.PermissionAuthenticated,
		HistorySize: 50, HistoryTTL: time.Minute, Presence: true, JoinLeave: true, SlowConsumer: gateway.SlowDropOldest}
	if len(g.Namespaces) != 1 || g.Namespaces[0] != want {
		t.Fatalf("namespaces %+v", g.Namespaces)
	}

	// Flags win over both.
	f := &serveFlags{config: path, listen: "127.0.0.1:9999", apiKey: "from-flag"}
	t.Setenv("DUPLEX_API_KEY", "from-env")
	cfg, err = f.resolve(func(name string) bool { return name == "listen" || name == "api-key" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.APIKey != "from-flag" {
		t.Fatalf("flags lost: %+v", cfg)
	}
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		yaml string
		env  []string
		want string
	}{
		"unknown key":      {yaml: "listne: x\n", want: "field listne not found"},
		"bad duration":     {yaml: "drain_window: soon\n", want: "line 1"},
		"bad env":          {env: []string{"DUPLEX_LIMITS_MAX_CONNECTIONS=many"}, want: "DUPLEX_LIMITS_MAX_CONNECTIONS"},
		"bad env duration": {env: []string{"DUPLEX_PING_INTERVAL=5"}, want: "DUPLEX_PING_INTERVAL"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			_, err := loadServeConfig(path, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	cfg, _ := loadServeConfig("", nil)
	cfg.Compression = "gzip"
	if _, err := cfg.gatewayConfig(); err == nil {
		t.Fatal("compression gzip accepted")
	}
}

// TestServeDefaults: without a configuration the gateway listens on
// loopback, with the demo namespace and anonymous connections.
func TestServeDefaults(t *testing.T) {
	cfg, err := loadServeConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || !cfg.demo() || !g.Auth.AllowAnonymous || len(g.Namespaces) != 1 || g.Namespaces[0].Name != "demo" {
		t.Fatalf("defaults: %+v %+v", cfg, g)
	}
}

// TestServeBinaryDrain runs the real binary with 1,000 clients, sends it
// SIGTERM, and checks that readiness turns off, every client gets 1001,
// the closes are spread over the drain window, and the process exits
// within it.
func TestServeBinaryDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	const clients = 1000
	const window = 2 * time.Second
	// All the clients come from one address, faster than the default
	// handshake rate allows.
	t.Setenv("DUPLEX_LIMITS_HANDSHAKE_RATE", "-1")
	t.Setenv("DUPLEX_LIMITS_MAX_CONNECTIONS_PER_IP", "-1")
	p := startBinary(t, ctx, `^duplex serve listening on (http://127\.0\.0\.1:\d+)/$`,
		"serve", "--listen", "127.0.0.1:0", "--drain-window", window.String())
	base, cmd, exited := p.addr, p.cmd, p.exited
	for path, want := range map[string]string{"/duplex.js": "export class Client", "/readyz": "ready", "/healthz": "ok"} {
		if body := httpGet(t, base+path, http.StatusOK); !strings.Contains(body, want) {
			t.Fatalf("GET %s: %.200q lacks %q", path, body, want)
		}
	}

	url := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	type result struct {
		code websocket.StatusCode
		at   time.Time
		err  error
	}
	results := make(chan result, clients)
	var ready sync.WaitGroup
	var readers sync.WaitGroup
	sem := make(chan struct{}, 50) // dial in parallel, not all at once
	for i := range clients {
		ready.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			sem <- struct{}{}
			c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{gateway.Subprotocol}})
			if err == nil {
				err = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"id":1,"method":"connect"}`+"\n"+`{"id":2,"method":"subscribe","channel":"demo:c%d"}`, i%10))
			}
			replies := 0
			for err == nil && replies < 2 {
				var data []byte
				_, data, err = c.Read(ctx)
				replies += strings.Count(string(data), `"id":`)
			}
			<-sem
			ready.Done()
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.CloseNow()
			for {
				_, _, err := c.Read(ctx)
				if err != nil {
					results <- result{code: websocket.CloseStatus(err), at: time.Now(), err: err}
					return
				}
			}
		}()
	}
	ready.Wait()
	if n := metricOf(t, base, "duplex_connections"); n != clients {
		t.Fatalf("%v connections, want %d", n, clients)
	}
	// duplex publish against the real server; 100 clients are subscribed.
	if code, stdout, stderr := execute(t, "publish", "--url", base, "--channel", "demo:c0", `{"x":1}`); code != 0 || !strings.HasPrefix(stdout, "offset=1 epoch=") {
		t.Fatalf("duplex publish: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	waitMetric := func(name string, want float64) {
		for deadline := time.Now().Add(10 * time.Second); metricOf(t, base, name) < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s stays under %v", name, want)
			}
		}
	}
	waitMetric("duplex_messages_out_total", 2*clients+clients/10)

	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns off while the drain runs.
	deadline := time.Now().Add(window)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz still ready during the drain")
		}
		time.Sleep(10 * time.Millisecond)
	}

	readers.Wait()
	close(results)
	var first, last time.Time
	for r := range results {
		if r.code != websocket.StatusGoingAway {
			t.Fatalf("client ended with %v, want close 1001", r.err)
		}
		if first.IsZero() || r.at.Before(first) {
			first = r.at
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	select {
	case <-exited:
		if p.waitErr != nil {
			t.Errorf("exit: %v, want status 0", p.waitErr)
		}
	case <-time.After(window + 3*time.Second):
		t.Fatalf("still running %v after SIGTERM", window+3*time.Second)
	}
	took := time.Since(signalled)
	if spread := last.Sub(first); spread < window/2 {
		t.Errorf("closes spread over %v, want most of the %v window", spread, window)
	}
	t.Logf("%d clients closed with 1001 over %v; exited %v after SIGTERM", clients, last.Sub(first).Round(time.Millisecond), took.Round(time.Millisecond))
}

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, want)
	}
	return string(body)
}

// metricOf reads an unlabelled metric from /metrics.
func metricOf(t *testing.T, base, name string) float64 {
	t.Helper()
	body := httpGet(t, base+"/metrics", http.StatusOK)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	var v float64
	json.Unmarshal([]byte(m[1]), &v)
	return v
}
