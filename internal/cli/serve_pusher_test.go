package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestServePusherConfig: pusher.apps in the file and --pusher-app flags
// together become the gateway's Pusher apps; a malformed flag is a usage
// error.
func TestServePusherConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duplex.yaml")
	yaml := "pusher:\n  apps:\n    - id: \"7\"\n      key: file-key\n      secret: file-secret\n      client_events: true\n      client_event_rate: 3\n      max_presence_members: 500\n" +
		"      history_size: 50\n      history_ttl: 2m\n      max_connections: 9\n      origins: [\"*.example.com\"]\n      disabled: true\n" +
		"      webhooks: [{url: \"http://127.0.0.1:1/h\", event_types: [client_event]}]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &serveFlags{config: path, pusherApps: []string{"8:flag-key:flag:secret"}}
	cfg, err := f.resolve(func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	apps := g.Pusher.Apps
	if len(apps) != 2 || apps[0].ID != "7" || apps[0].Key != "file-key" || !apps[0].ClientEvents ||
		apps[0].ClientEventRate != 3 || apps[0].MaxPresenceMembers != 500 ||
		apps[0].HistorySize != 50 || apps[0].HistoryTTL != 2*time.Minute || apps[0].MaxConnections != 9 || len(apps[0].Origins) != 1 || apps[0].Origins[0] != "*.example.com" || !apps[0].Disabled ||
		len(apps[0].Webhooks) != 1 || apps[0].Webhooks[0].URL != "http://127.0.0.1:1/h" || apps[0].Webhooks[0].Events[0] != "client_event" ||
		apps[1].ID != "8" || apps[1].Key != "flag-key" || apps[1].Secret != "flag:secret" || apps[1].ClientEvents {
		t.Fatalf("apps %+v", apps)
	}
	for _, bad := range []string{"1:key", "::", "1::s"} {
		f := &serveFlags{pusherApps: []string{bad}}
		if _, err := f.resolve(func(string) bool { return false }); err == nil {
			t.Errorf("--pusher-app %q accepted", bad)
		}
	}
	if code, _, stderr := execute(t, "serve", "--pusher-app", "nokey"); code == 0 || !strings.Contains(stderr, "ID:KEY:SECRET") {
		t.Errorf("duplex serve --pusher-app nokey: exit %d, stderr %q", code, stderr)
	}
}

// TestServePusherBinary: duplex serve --pusher-app serves the Pusher
// protocol at /app/{key} on its one port.
func TestServePusherBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx := testContext(t)
	p := startBinary(t, ctx, `^duplex serve listening on (http://127\.0\.0\.1:\d+)/$`,
		"serve", "--listen", "127.0.0.1:0", "--pusher-app", "1:app-key:app-secret")
	base := "ws" + strings.TrimPrefix(p.addr, "http")
	c, _, err := websocket.Dial(ctx, base+"/app/app-key?protocol=7&client=js&version=8.6.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Event, Data string }
	if err := json.Unmarshal(data, &m); err != nil || m.Event != "pusher:connection_established" || !strings.Contains(m.Data, `"socket_id"`) {
		t.Fatalf("first message %s", data)
	}
	bad, _, err := websocket.Dial(ctx, base+"/app/other-key?protocol=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.CloseNow()
	for {
		if _, _, err = bad.Read(ctx); err != nil {
			break
		}
	}
	if code := websocket.CloseStatus(err); code != 4001 {
		t.Fatalf("unknown key closed with %d (%v), want 4001", code, err)
	}
}
