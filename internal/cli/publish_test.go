package cli

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestPublish publishes JSON, text and stdin, and checks what subscribers
// receive through the channel's history, which connect --since replays.
func TestPublish(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	var epoch string
	for i, tc := range []struct {
		args  []string
		stdin string
	}{
		{[]string{`{"text": "hi"}`}, ""},
		{[]string{"plain words"}, ""},
		{[]string{"-"}, "{\n  \"multi\": [1, 2]\n}\n"},
		{[]string{"-"}, "not json\n"},
	} {
		args := append([]string{"publish", "--url", gw.url, "--channel", "demo:p"}, tc.args...)
		code, stdout, stderr := runCLI(t, strings.NewReader(tc.stdin), args...)
		m := regexp.MustCompile(`^offset=(\d+) epoch=(\S+)\n$`).FindStringSubmatch(stdout)
		if code != exitOK || m == nil || m[1] != strconv.Itoa(i+1) || stderr != "" {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q; want offset=%d", args, code, stdout, stderr, i+1)
		}
		if epoch == "" {
			epoch = m[2]
		} else if m[2] != epoch {
			t.Errorf("epoch %s, then %s", epoch, m[2])
		}
	}
	want := []string{`{"text":"hi"}`, `"plain words"`, `{"multi":[1,2]}`, `"not json"`}
	for i, w := range want {
		code, stdout, stderr := execute(t, "connect", "--channel", "demo:p", "--since", strconv.Itoa(i)+":"+epoch, "--once", gw.ws)
		if code != exitOK || stdout != w+"\n" {
			t.Errorf("publication %d: exit %d, stdout %q, stderr %q; want %s", i+1, code, stdout, stderr, w)
		}
	}
}

// TestPublishBroadcast publishes to several channels, one of them unknown.
func TestPublishBroadcast(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	code, stdout, stderr := execute(t, "publish", "--url", gw.ws, "--channel", "demo:a", "--channel", "demo:b", "42")
	if code != exitOK || !regexp.MustCompile(`^demo:a offset=1 epoch=\S+\ndemo:b offset=1 epoch=\S+\n$`).MatchString(stdout) || stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, stdout, stderr = execute(t, "publish", "--url", gw.url, "--channel", "demo:a", "--channel", "nope:x", "43")
	if code != exitError || !regexp.MustCompile(`^demo:a offset=2 epoch=\S+\n$`).MatchString(stdout) ||
		stderr != "duplex: nope:x: unknown namespace or invalid channel (error 102)\nduplex: 1 of 2 channels refused the publication\n" {
		t.Errorf("with an unknown channel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, stdout, stderr = execute(t, "publish", "--json", "--url", gw.url, "--channel", "demo:a", "--channel", "demo:b", "44")
	var reply struct {
		Results []gwPublishResult `json:"results"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &reply) != nil || len(reply.Results) != 2 ||
		reply.Results[0].Offset != 3 || reply.Results[1].Offset != 2 || stderr != "" {
		t.Errorf("--json: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, stdout, stderr = execute(t, "publish", "--json", "--url", gw.url, "--channel", "demo:a", "45")
	if code != exitOK || !regexp.MustCompile(`^\{"offset":4,"epoch":"\S+"\}\n$`).MatchString(stdout) || stderr != "" {
		t.Errorf("--json: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestPublishAPIKey checks the API key, from --api-key and from the
// environment.
func TestPublishAPIKey(t *testing.T) {
	cfg := demoGatewayConfig()
	cfg.APIKey = "s3cret"
	gw := startTestGateway(t, cfg)

	t.Setenv(apiKeyEnv, "")
	for _, args := range [][]string{nil, {"--api-key", "wrong"}} {
		args = append(append([]string{"publish", "--url", gw.url, "--channel", "demo:k"}, args...), "1")
		code, stdout, stderr := execute(t, args...)
		want := "duplex: invalid or missing API key (error 103, HTTP 401 Unauthorized)\n"
		if code != exitError || stdout != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, stdout, stderr, want)
		}
	}

	code, stdout, stderr := execute(t, "publish", "--url", gw.url, "--channel", "demo:k", "--api-key", "s3cret", "1")
	if code != exitOK || !strings.HasPrefix(stdout, "offset=1 ") || stderr != "" {
		t.Errorf("--api-key: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Setenv(apiKeyEnv, "s3cret")
	code, stdout, stderr = execute(t, "publish", "--url", gw.url, "--channel", "demo:k", "2")
	if code != exitOK || !strings.HasPrefix(stdout, "offset=2 ") || stderr != "" {
		t.Errorf("%s: exit %d, stdout %q, stderr %q", apiKeyEnv, code, stdout, stderr)
	}
	// --api-key wins over the environment.
	code, _, stderr = execute(t, "publish", "--url", gw.url, "--channel", "demo:k", "--api-key", "wrong", "3")
	if code != exitError || !strings.Contains(stderr, "invalid or missing API key") {
		t.Errorf("--api-key over %s: exit %d, stderr %q", apiKeyEnv, code, stderr)
	}
}

func TestPublishFailures(t *testing.T) {
	gw := startTestGateway(t, demoGatewayConfig())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", gw.url, "--channel", "nope:x", "1"}, "duplex: unknown namespace or invalid channel (error 102, HTTP 400 Bad Request)\n"},
		{[]string{"--url", gw.url + "/elsewhere", "--channel", "demo:x", "1"}, `HTTP 404 Not Found: "404 page not found"`},
		{[]string{"--url", "http://127.0.0.1:1", "--channel", "demo:x", "1"}, "connection refused"},
	} {
		code, stdout, stderr := execute(t, append([]string{"publish"}, tc.args...)...)
		if code != exitError || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

func TestPublishUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish", "1"}, "--channel is required"},
		{[]string{"publish", "--channel", "demo:x"}, "takes the data to publish (or - for stdin), got 0 arguments"},
		{[]string{"publish", "--channel", "demo:x", "1", "2"}, "got 2 arguments"},
		{[]string{"publish", "--channel", "", "1"}, "--channel must not be empty"},
		{[]string{"publish", "--channel", "demo:x", "--url", "ftp://h", "1"}, "--url: the API URL must start with http://"},
		{[]string{"publish", "--channel", "demo:x", "--timeout", "0s", "1"}, "--timeout must be positive"},
	} {
		wantUsageError(t, tc.want, tc.args...)
	}
}
