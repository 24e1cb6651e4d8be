package interop

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// A plan is what a client peer runs against our server: sessions, each one
// connection that goes through its steps. It is written as JSON for the
// peers outside Go (js/ws_client.mjs, js/browser.mjs, py/websockets_peer.py)
// and run directly by the Go peers (gopeers_test.go).
type plan struct {
	CA       string    `json:"ca,omitempty"` // the certificate to trust for wss
	Sessions []session `json:"sessions"`
}

type session struct {
	Name          string   `json:"name"`
	URL           string   `json:"url"`
	Protocols     []string `json:"protocols"`
	Compress      bool     `json:"compress"` // offer permessage-deflate (browsers always do)
	StepTimeoutMs int      `json:"stepTimeoutMs"`
	Steps         []step   `json:"steps"`

	id          string // the connection's id on our server
	contextMode bool   // with Compress: the Go peers ask for context takeover
	expect      expectation
}

// Steps: "echo" sends a message of Kind and Size, in Fragments frames when
// more than 1, and reads the echo; "receive" reads a message our server
// sends unasked; "ping" pings and waits for the pong; "close" closes with
// Code and Reason and waits for the answer; "awaitClose" waits for our
// server to close.
type step struct {
	Op        string `json:"op"`
	Kind      string `json:"kind,omitempty"`
	Size      int    `json:"size"`
	Fragments int    `json:"fragments,omitempty"`
	Code      int    `json:"code,omitempty"`
	Reason    string `json:"reason"`

	want      *received   // receive: the message expected
	wantClose *closeEvent // close, awaitClose: what the peer must see
}

func (s step) name() string {
	switch s.Op {
	case "echo":
		n := fmt.Sprintf("echo-%s-%s", s.Kind, sizeName(s.Size))
		if s.Fragments > 1 {
			n += fmt.Sprintf("-in-%d-fragments", s.Fragments)
		}
		return n
	case "receive":
		return "receive-" + s.want.label()
	case "close":
		return fmt.Sprintf("close-%d", s.Code)
	}
	return s.Op
}

// expectation is what the Go test checks of a session beyond its steps.
type expectation struct {
	protocol string
	// extension lists what the peer's Sec-WebSocket-Extensions must hold
	// ("permessage-deflate" and its parameters); nil wants none.
	// notExtension lists parameters it must not hold.
	extension, notExtension []string
	// serverEnd is how our server must see the connection end: a close
	// code and reason from the peer, or nil for "our Close was answered"
	// (the server-close session).
	serverEnd     *closeEvent
	pingsAnswered bool  // our server's pings were answered
	compressed    int64 // when positive: the payload bytes each way, which must have shrunk on the wire
}

type sessionResult struct {
	Name       string       `json:"name"`
	Protocol   string       `json:"protocol"`
	Extensions string       `json:"extensions"`
	Steps      []stepResult `json:"steps"`
	Error      string       `json:"error"`
	Ms         int64        `json:"ms"` // how long the session took
}

type stepResult struct {
	Op     string    `json:"op"`
	Sent   string    `json:"sent"` // echo: the hash of what the peer sent
	Got    *received `json:"got"`
	OK     bool      `json:"ok"` // ping: the pong carried the ping's data
	Code   *int      `json:"code"`
	Reason *string   `json:"reason"`
	// Answered: the close handshake completed, but the peer's API does
	// not show the code it received (coder's Close reads it itself).
	Answered bool `json:"answered"`
}

// received describes a message a peer received.
type received struct {
	Kind string `json:"kind"`
	Size int    `json:"size"`
	Hash string `json:"hash"`
	Text string `json:"text,omitempty"` // short texts only
}

func receivedOf(kind string, b []byte) *received {
	r := &received{Kind: kind, Size: len(b), Hash: hashOf(b)}
	if kind == kindText && len(b) <= 200 {
		r.Text = string(b)
	}
	return r
}

// expectedPayload describes payload(kind, size), as a peer should report
// it.
func expectedPayload(kind string, size int) *received {
	r := &received{Kind: kind, Size: size, Hash: payloadHash(kind, size)}
	if kind == kindText && size <= 200 {
		r.Text = string(payload(kind, size))
	}
	return r
}

func (r *received) label() string {
	if r.Text != "" {
		return "text-" + strings.ReplaceAll(r.Text, " ", "-")
	}
	return r.Kind + "-" + sizeName(r.Size)
}

func (r *received) String() string {
	if r == nil {
		return "nothing"
	}
	s := fmt.Sprintf("%s message of %d bytes, sha256 %.16s…", r.Kind, r.Size, r.Hash)
	if r.Text != "" {
		s += fmt.Sprintf(" %q", r.Text)
	}
	return s
}

// clientCaps says what a client peer's API can do.
type clientCaps struct {
	fragments bool // send a message in several frames
	ping      bool // send a ping and see the pong
	// noContextOnly: the peer asks for no context takeover in both
	// directions whenever it compresses (gorilla).
	noContextOnly bool
}

const stepTimeout = 60 * time.Second

// planFor returns the sessions a client peer runs against our server.
func planFor(srv *ourServer, peer string, caps clientCaps) plan {
	p := plan{CA: srv.certs.certFile}
	add := func(s session, secure bool, config, mode string) {
		s.id = peer + "-" + s.Name
		s.URL = srv.url(secure, config, mode, s.id)
		s.StepTimeoutMs = int(stepTimeout / time.Millisecond)
		if s.Protocols == nil {
			s.Protocols = []string{} // JSON [], not null
		}
		p.Sessions = append(p.Sessions, s)
	}
	echoes := func(maxSize int) ([]step, int64) {
		var steps []step
		var total int64
		for _, kind := range kinds {
			for _, size := range echoSizes {
				if size > maxSize {
					continue
				}
				steps = append(steps, step{Op: "echo", Kind: kind, Size: size})
				total += int64(size)
			}
		}
		if caps.fragments {
			for _, kind := range kinds {
				steps = append(steps, step{Op: "echo", Kind: kind, Size: fragmentedSize, Fragments: fragmentCount})
				total += fragmentedSize
			}
		}
		return steps, total
	}
	closeWith := func(code int, reason string) step {
		return step{Op: "close", Code: code, Reason: reason, wantClose: &closeEvent{Code: code}} // our server echoes the code
	}

	// Plain: every size, fragments, the peer's ping, and a close with a
	// code and reason of the application's.
	steps, _ := echoes(maxEchoSize)
	if caps.ping {
		steps = append(steps, step{Op: "ping"})
	}
	steps = append(steps, closeWith(4001, "bye"))
	add(session{Name: "plain", Steps: steps, expect: expectation{serverEnd: &closeEvent{4001, "bye"}}}, false, "plain", "")
	// The same served by Conn.Serve.
	add(session{Name: "serve", Steps: steps, expect: expectation{serverEnd: &closeEvent{4001, "bye"}}}, false, "plain", "serve")

	add(session{
		Name:      "subprotocol",
		Protocols: []string{"duplex.other", "duplex.test"},
		Steps:     []step{{Op: "echo", Kind: kindText, Size: 125}, closeWith(1000, "")},
		expect:    expectation{protocol: "duplex.test", serverEnd: &closeEvent{1000, ""}},
	}, false, "subprotocol", "")

	add(session{
		Name:   "server-ping",
		Steps:  []step{{Op: "receive", want: receivedOf(kindText, []byte("pings answered: 3"))}, closeWith(1000, "")},
		expect: expectation{serverEnd: &closeEvent{1000, ""}, pingsAnswered: true},
	}, false, "plain", "ping")

	add(session{
		Name:  "server-close",
		Steps: []step{{Op: "awaitClose", wantClose: &closeEvent{4001, "bye"}}},
	}, false, "plain", "close")

	var fragmentSteps []step
	for _, kind := range kinds {
		fragmentSteps = append(fragmentSteps, step{Op: "receive", want: expectedPayload(kind, fragmentedSize)})
	}
	add(session{
		Name:   "server-fragments",
		Steps:  append(fragmentSteps, closeWith(1000, "")),
		expect: expectation{serverEnd: &closeEvent{1000, ""}},
	}, false, "plain", "fragments")

	steps, _ = echoes(sessionEchoSize)
	add(session{
		Name:   "wss",
		Steps:  append(steps, closeWith(1000, "")),
		expect: expectation{serverEnd: &closeEvent{1000, ""}},
	}, true, "plain", "")

	for _, contextMode := range []bool{false, true} {
		steps, total := echoes(sessionEchoSize)
		if contextMode {
			steps = append(steps, step{Op: "echo", Kind: kindBinary, Size: maxEchoSize})
			total += maxEchoSize
		}
		s := session{
			Name:        "deflate-no-context-takeover",
			Compress:    true,
			contextMode: contextMode,
			Steps:       append(steps, closeWith(1000, "")),
			expect: expectation{
				extension: []string{"permessage-deflate", "server_no_context_takeover", "client_no_context_takeover"},
				serverEnd: &closeEvent{1000, ""}, compressed: total,
			},
		}
		config := "deflate-no-context"
		if contextMode {
			s.Name, config = "deflate-context-takeover", "deflate-context"
			s.expect.extension = []string{"permessage-deflate"}
			if !caps.noContextOnly {
				s.expect.notExtension = []string{"server_no_context_takeover", "client_no_context_takeover"}
			}
		}
		add(s, false, config, "")
	}
	return p
}

// writePlan writes p for a peer outside Go and returns the file's path.
func writePlan(t *testing.T, p plan) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseResults reads the session results a peer printed, one JSON object
// a line, skipping the lines before them that are not results.
func parseResults(t *testing.T, lines []string) map[string]sessionResult {
	t.Helper()
	out := make(map[string]sessionResult)
	for _, line := range lines {
		var r sessionResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("peer printed a line that is not JSON: %q", line)
			continue
		}
		if r.Name != "" {
			out[r.Name] = r
		}
	}
	return out
}

// checkPlan checks the results of every session of p, each in a subtest
// named after the session and each step in a subtest of its own, together
// with what our server saw of the connection.
func checkPlan(t *testing.T, srv *ourServer, p plan, results map[string]sessionResult) {
	for _, s := range p.Sessions {
		t.Run(s.Name, func(t *testing.T) {
			r, ok := results[s.Name]
			if !ok {
				t.Fatalf("the peer reported no result for this session")
			}
			checkSession(t, srv, s, r)
		})
	}
}

func checkSession(t *testing.T, srv *ourServer, s session, r sessionResult) {
	t.Logf("the session took %v", time.Duration(r.Ms)*time.Millisecond)
	if r.Error != "" {
		t.Errorf("session failed after %d of %d steps: %s", len(r.Steps), len(s.Steps), r.Error)
	}
	t.Run("handshake", func(t *testing.T) {
		if r.Protocol != s.expect.protocol {
			t.Errorf("subprotocol %q, want %q", r.Protocol, s.expect.protocol)
		}
		checkExtensions(t, r.Extensions, s.expect.extension, s.expect.notExtension)
	})
	for i, st := range s.Steps {
		t.Run(st.name(), func(t *testing.T) {
			if i >= len(r.Steps) {
				t.Fatalf("not run: the session stopped before it")
			}
			checkStep(t, st, r.Steps[i])
		})
	}
	if r.Error != "" && len(r.Steps) == 0 {
		return // it never got going: our server has nothing to say
	}
	t.Run("server-side", func(t *testing.T) {
		hr, err := srv.results.take(testContext(t, 10*time.Second), s.id)
		if err != nil {
			t.Fatalf("our server: %v", err)
		}
		checkServerSide(t, s.expect, hr)
	})
}

// checkExtensions checks a Sec-WebSocket-Extensions value.
func checkExtensions(t *testing.T, got string, want, notWant []string) {
	t.Helper()
	if got != "" {
		t.Logf("Sec-WebSocket-Extensions: %s", got)
	}
	if want == nil && got != "" {
		t.Errorf("extensions %q agreed, want none", got)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("extensions %q lack %s", got, w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(got, w) {
			t.Errorf("extensions %q hold %s", got, w)
		}
	}
}

func checkStep(t *testing.T, st step, r stepResult) {
	if r.Op != st.Op {
		t.Fatalf("result for %q, want one for %q", r.Op, st.Op)
	}
	switch st.Op {
	case "echo":
		want := expectedPayload(st.Kind, st.Size)
		if r.Sent != want.Hash {
			t.Errorf("the peer sent a message with sha256 %.16s…, want %.16s… (its payload generator differs)", r.Sent, want.Hash)
		}
		checkReceived(t, r.Got, want)
	case "receive":
		checkReceived(t, r.Got, st.want)
	case "ping":
		if !r.OK {
			t.Errorf("the pong did not carry the ping's data")
		}
	case "close", "awaitClose":
		if r.Code == nil && r.Answered {
			t.Logf("the peer's API shows that our server answered its close, not with which code")
			return
		}
		got := closeEvent{Code: -1}
		if r.Code != nil {
			got.Code = *r.Code
		}
		if r.Reason != nil {
			got.Reason = *r.Reason
		}
		want := *st.wantClose
		if st.Op == "close" {
			got.Reason = "" // our server answers with the code alone; peers differ in reporting it
		}
		if got != want {
			t.Errorf("the peer saw close %v, want %v", got, want)
		}
	}
}

func checkReceived(t *testing.T, got, want *received) {
	t.Helper()
	if got == nil || got.Kind != want.Kind || got.Size != want.Size || got.Hash != want.Hash {
		t.Errorf("received %v, want %v", got, want)
	}
}

// checkServerSide checks how our server saw a connection.
func checkServerSide(t *testing.T, e expectation, hr handlerResult) {
	if hr.Protocol != e.protocol {
		t.Errorf("our server agreed on subprotocol %q, want %q", hr.Protocol, e.protocol)
	}
	var ce *websocket.CloseError
	switch {
	case e.serverEnd == nil && hr.End != nil:
		t.Errorf("our server's Close(4001, \"bye\") returned %v, want nil (the peer answers)", hr.End)
	case e.serverEnd != nil && !errors.As(hr.End, &ce):
		t.Errorf("our server's connection ended with %v, want the peer's close %v", hr.End, *e.serverEnd)
	case e.serverEnd != nil && (int(ce.Code) != e.serverEnd.Code || ce.Reason != e.serverEnd.Reason):
		t.Errorf("our server saw close %d %q, want %v", ce.Code, ce.Reason, *e.serverEnd)
	}
	if e.pingsAnswered && hr.PingErr != nil {
		t.Errorf("our server's Ping: %v", hr.PingErr)
	}
	checkCompressed(t, e.compressed, hr.WireIn, hr.WireOut)
}

// checkCompressed checks that payload bytes each way crossed the wire in
// far fewer bytes, as compressed messages of the test's payloads do: the
// compressed paths really ran.
func checkCompressed(t *testing.T, payloadBytes, wireIn, wireOut int64) {
	t.Helper()
	if payloadBytes <= 0 {
		return
	}
	t.Logf("compression: %d payload bytes each way; on the wire %d in, %d out", payloadBytes, wireIn, wireOut)
	if wireIn <= 0 || wireIn > payloadBytes/4 || wireOut <= 0 || wireOut > payloadBytes/4 {
		t.Errorf("%d payload bytes each way took %d bytes in and %d out on the wire: not compressed", payloadBytes, wireIn, wireOut)
	}
}
