package cli

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestBenchSubscribe runs duplex bench --mode subscribe against an
// in-process gateway, every connection on one channel, and checks its
// figures against the gateway's own counters.
func TestBenchSubscribe(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	const conns = 20
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--mode", "subscribe", "--json", "--progress", "0",
		"-c", "20", "--rate", "20", "--duration", "1s", "--size", "100", "--channel", "demo:bench", gw.url)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	gw.waitConnections(t, 0) // every connection closed, and the gateway saw it
	st := gw.srv.Stats()

	c, s, p, d, l := r.Connections, r.Subscribe, r.Publications, r.Deliveries, r.LatencyNS
	if r.Mode != "subscribe" || r.URL != gw.ws || r.Messages != nil {
		t.Errorf("mode %q, url %q, messages %+v", r.Mode, r.URL, r.Messages)
	}
	if c.Requested != conns || c.Opened != conns || c.Failed != 0 || c.NotStarted != 0 || c.PeakOpen != conns {
		t.Errorf("connections %+v", c)
	}
	if s == nil || p == nil || d == nil {
		t.Fatalf("subscribe %+v, publications %+v, deliveries %+v", s, p, d)
	}
	if s.Channels != 1 || s.Subscribed != conns || s.APIURL != gw.url+"/api/" || s.ConnectSeconds <= 0 {
		t.Errorf("subscribe %+v", s)
	}
	// 20 a second for a second, on a busy machine.
	if p.Sent < 5 || p.Sent > 20 || p.Failed != 0 || p.Requests != p.Sent || p.PerSecond <= 0 {
		t.Errorf("publications %+v", p)
	}
	if d.Expected != conns*p.Sent || d.Received != d.Expected || d.Lost != 0 || d.PerSecond <= 0 {
		t.Errorf("deliveries %+v, want %d × %d", d, conns, p.Sent)
	}
	if r.Bytes.Sent != 100*p.Sent || r.Bytes.Received != 100*d.Received {
		t.Errorf("bytes %+v", r.Bytes)
	}
	if l.Count != d.Received || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("latency %+v", l)
	}
	if len(r.Errors) != 0 {
		t.Errorf("errors %+v", r.Errors)
	}
	// The gateway wrote every delivery, and a reply to connect and to
	// subscribe on each connection.
	if st.MessagesOut < uint64(d.Received)+2*conns || st.MessagesIn != 2*conns {
		t.Errorf("the gateway wrote %d lines and read %d commands; the bench received %d publications on %d connections",
			st.MessagesOut, st.MessagesIn, d.Received, conns)
	}
}

// TestBenchSubscribeOwnChannels gives each connection channels of its
// own, published to with /api/broadcast, with the text report and the
// progress lines.
func TestBenchSubscribeOwnChannels(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--mode", "subscribe", "--progress", "100ms",
		"-c", "10", "--ramp-rate", "50", "--channel-prefix", "demo:own-", "--channels-per-conn", "3",
		"--rate", "10", "--messages", "4", "--local-addrs", "2", gw.ws)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	for _, want := range []string{
		"duplex bench --mode subscribe " + gw.ws + "\n",
		"  10 connections, each on 3 channels of its own (demo:own-0 … demo:own-29);\n",
		"  64 B publications at 10/s on each channel, 4 times, for at most 10s, through " + gw.url + "/api/\n",
		"connections  10 opened, 0 failed, 10 subscribed in ",
		// 30 channels, 4 rounds of one broadcast each.
		"publications 120 published, 0 failed, in 4 API requests: ",
		"deliveries   120 received of 120 expected, 0 lost\n",
		"throughput   ", " deliveries/s, ", "latency      p50 ", " p99.9 ", "errors       none\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	// The ramp at 50/s takes 180 ms, then 4 rounds at 10/s 400 ms.
	progress := regexp.MustCompile(`(?m)^ +\d+\.\ds  connections \d+ open, \d+ opened, 0 failed, \d+ subscribed  ` +
		`published \d+  deliveries \d+/s, \d+ received  errors 0$`)
	if n := len(progress.FindAllString(stderr, -1)); n < 3 {
		t.Errorf("%d progress lines in stderr:\n%s", n, stderr)
	}
	gw.waitConnections(t, 0)
	if got := gw.srv.Stats().MessagesIn; got != 10*4 { // connect and 3 subscribes on each
		t.Errorf("the gateway read %d commands, want 40", got)
	}
}

func TestBenchSubscribeErrors(t *testing.T) {
	cfg := demoGatewayConfig()
	cfg.APIKey = "s3cret"
	gw := startTestGateway(t, cfg)
	t.Setenv(apiKeyEnv, "")

	// Without the API key, every publication is refused.
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--mode", "subscribe", "--json", "--progress", "0",
		"-c", "3", "--rate", "50", "--messages", "2", gw.ws)
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if code != exitError || stderr != "duplex: 2 errors\n" {
		t.Errorf("exit %d, stderr %q; want 1 and 2 errors", code, stderr)
	}
	if len(r.Errors) != 1 || r.Errors[0].Kind != "publish: invalid or missing API key (error 103)" || r.Errors[0].Count != 2 ||
		!strings.Contains(r.Errors[0].Example, "HTTP 401") {
		t.Errorf("errors %+v", r.Errors)
	}
	if r.Publications.Sent != 0 || r.Publications.Failed != 2 || r.Deliveries.Expected != 0 || r.Subscribe.Subscribed != 3 {
		t.Errorf("publications %+v, deliveries %+v, subscribe %+v", r.Publications, r.Deliveries, r.Subscribe)
	}

	// With it, from the environment; a channel of an unknown namespace
	// refuses the subscriptions.
	t.Setenv(apiKeyEnv, "s3cret")
	code, stdout, stderr = runCLI(t, strings.NewReader(""), "bench", "--mode", "subscribe", "--progress", "0",
		"-c", "2", "--messages", "1", "--channel", "demo:ok", "--channel", "nope:x", gw.ws)
	if code != exitError || stderr != "duplex: 2 errors\n" || !strings.Contains(stdout, "connections  2 opened, 0 failed, 0 subscribed") ||
		!regexp.MustCompile(`(?m)^ +2  subscribe: unknown namespace or invalid channel \(error 102\)  \(e\.g\. nope:x: `).MatchString(stdout) {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}

	// An echo server is no gateway.
	echo := startEcho(t, &EchoServer{})
	code, stdout, _ = runCLI(t, strings.NewReader(""), "bench", "--mode", "subscribe", "--progress", "0", "-c", "2", echo.url)
	if code != exitError || !strings.Contains(stdout, "2  connect: not a Duplex gateway") {
		t.Errorf("against an echo server: exit %d, stdout:\n%s", code, stdout)
	}
}

func TestBenchSubscribeUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--mode", "fanout", "ws://a"}, "--mode must be echo or subscribe"},
		{[]string{"bench", "--rate", "5", "ws://a"}, "--rate is for --mode subscribe"},
		{[]string{"bench", "--channel", "demo:x", "ws://a"}, "--channel is for --mode subscribe"},
		{[]string{"bench", "--mode", "subscribe", "--text", "ws://a"}, "--text is for --mode echo"},
		{[]string{"bench", "--mode", "subscribe", "--message-rate", "1", "ws://a"}, "--message-rate is for --mode echo"},
		{[]string{"bench", "--mode", "subscribe", "--rate", "0", "ws://a"}, "--rate must be positive"},
		{[]string{"bench", "--mode", "subscribe", "--channel", "a:b", "--channel-prefix", "a:", "ws://a"}, "exclude each other"},
		{[]string{"bench", "--mode", "subscribe", "--channels-per-conn", "0", "ws://a"}, "--channels-per-conn must be from 1"},
		{[]string{"bench", "--mode", "subscribe", "-c", "100000", "--channels-per-conn", "20", "ws://a"}, "at most 1000000"},
		{[]string{"bench", "--mode", "subscribe", "--channel-prefix", "", "ws://a"}, "--channel-prefix must not be empty"},
		{[]string{"bench", "--mode", "subscribe", "--size", "600000", "ws://a"}, "--size must be from 0 to 524288"},
		{[]string{"bench", "--mode", "subscribe", "--api-url", "ftp://a", "ws://a"}, "--api-url: the API URL must start with http://"},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}
