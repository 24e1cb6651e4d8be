package interop

import (
	"slices"
	"strings"
	"testing"
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
	var out struct{ Log []string }
	runPusherPage(t, pusherApp{id: "11", key: "k11", secret: "s11", clientEvents: true}, "js/echo_chromium.mjs", &out)
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

// TestLaravelEchoRecovery: Laravel Echo on pusher-js's web build in
// Chromium, with pusher_recovery.mjs applied to the Pusher class Echo
// uses, loses its connection for real (a proxy between the page and the
// gateway closes it) while the SDK triggers events on an app with
// history, and once pusher-js has reconnected by itself Echo's listen
// callbacks get every missed event once, in order, then live ones, on a
// public and a private channel. Echo on an unchanged pusher-js, on the same
// app and through the same cut, gets only the live ones, as from Pusher.
func TestLaravelEchoRecovery(t *testing.T) {
	requireChromium(t)
	requirePusherJS(t)
	recordVersion(t, "laravel-echo", npmVersion(t, "laravel-echo"))
	var out struct {
		Rec, Plain                 []string
		RecConnects, PlainConnects int
	}
	runPusherPage(t, pusherApp{id: "13", key: "k13", secret: "s13", historySize: 100}, "js/echo_recovery.mjs", &out)
	// Both pusher-js connected twice: the cut was real and they came back
	// by themselves.
	if out.RecConnects != 2 || out.PlainConnects != 2 {
		t.Errorf("connections: %d with recovery, %d without, want 2 each", out.RecConnects, out.PlainConnects)
	}
	// Each channel's log, in the order Echo called back (the two channels
	// resubscribe independently, so only each one's order is fixed).
	byChannel := func(log []string, channel string) string {
		var got []string
		for _, l := range log {
			if rest, ok := strings.CutPrefix(l, channel+" "); ok {
				got = append(got, rest)
			}
		}
		return strings.Join(got, ", ")
	}
	for _, channel := range []string{"feed", "private-orders"} {
		// The first subscribe has no since, so no recovered.
		want := "subscribed, recovered undefined, tick 1, subscribed, recovered true, tick 2, tick 3, tick 4, tick 5"
		if got := byChannel(out.Rec, channel); got != want {
			t.Errorf("Echo with recovery, on %s: %s\nwant %s", channel, got, want)
		}
		want = "subscribed, recovered undefined, tick 1, subscribed, recovered undefined, tick 5"
		if got := byChannel(out.Plain, channel); got != want {
			t.Errorf("Echo without recovery, on %s: %s\nwant %s", channel, got, want)
		}
	}
	if t.Failed() {
		t.Logf("logs:\nwith recovery %q\nwithout %q", out.Rec, out.Plain)
	}
}
