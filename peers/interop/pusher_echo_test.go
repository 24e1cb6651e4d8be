package interop

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLaravelEcho: Laravel Echo (npm laravel-echo), on pusher-js's web
// build in Chromium, against duplex serve, through Echo's own API: a
// public, a private and a presence channel (here, joining, leaving), the
// SDK's events on each, and a whisper (a client event) between two Echo
// instances.
func TestLaravelEcho(t *testing.T) {
	requireChromium(t)
	requirePusherJS(t)
	recordVersion(t, "laravel-echo", npmVersion(t, "laravel-echo"))
	addr := startPusherGateway(t, []pusherApp{{id: "11", key: "k11", secret: "s11", clientEvents: true}})
	proc := startPeer(t, 2*time.Minute, nil, "node", "js/echo_chromium.mjs", addr, "k11", "11", "s11", t.TempDir())
	lines := proc.output(t)
	if len(lines) != 1 {
		t.Fatalf("output %q", lines)
	}
	var out struct {
		Browser string
		Log     []string
	}
	if err := json.Unmarshal([]byte(lines[0]), &out); err != nil {
		t.Fatal(err)
	}
	recordVersion(t, "chromium", out.Browser)
	got := slices.Clone(out.Log)
	slices.Sort(got)
	want := []string{
		"ann news greet news",
		"ann presence-lobby greet presence-lobby",
		"ann presence-lobby here Ann",
		"ann presence-lobby joining Ben",
		"ann presence-lobby leaving Ben",
		"ann private-room greet private-room",
		"ann private-room whisper typing ben",
		"ben presence-lobby here Ann,Ben",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Echo in the page:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
