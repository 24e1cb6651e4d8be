package cli

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBenchAgreesWithServer runs duplex bench against an in-process echo
// server and checks its figures against the server's own counters.
func TestBenchAgreesWithServer(t *testing.T) {
	srv := &EchoServer{}
	s := startEcho(t, srv)
	const conns, messages, size = 4, 50, 100
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--json", "--progress", "0",
		"-c", strconv.Itoa(conns), "--messages", strconv.Itoa(messages), "--size", strconv.Itoa(size),
		"--connect-rate", "0", s.url)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if err := s.stop(); err != nil { // every connection has ended: the counts are final
		t.Fatal(err)
	}
	st := srv.Stats()
	const total = conns * messages
	c, m, l := r.Connections, r.Messages, r.LatencyNS
	if c.Requested != conns || c.Opened != conns || c.Failed != 0 || c.NotStarted != 0 || c.PeakOpen < 1 || c.PeakOpen > conns {
		t.Errorf("connections %+v", c)
	}
	if st.Connections != c.Opened {
		t.Errorf("the bench opened %d connections, the server accepted %d", c.Opened, st.Connections)
	}
	if m.Sent != total || m.Received != total || m.Unanswered != 0 || st.Messages != total {
		t.Errorf("messages %+v, the server echoed %d; want %d", m, st.Messages, total)
	}
	if r.Bytes.Sent != total*size || r.Bytes.Received != total*size || st.Bytes != total*size {
		t.Errorf("bytes %+v, the server echoed %d; want %d", r.Bytes, st.Bytes, total*size)
	}
	if l.Count != total || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max || l.Mean > l.Max {
		t.Errorf("latency %+v", l)
	}
	if r.Seconds <= 0 || m.PerSecond <= 0 || len(r.Errors) != 0 {
		t.Errorf("seconds %v, %v messages/s, errors %v", r.Seconds, m.PerSecond, r.Errors)
	}
}

// TestBenchAtRate runs the open-loop mode with text messages from several
// source addresses for a second, with the text report and progress lines.
func TestBenchAtRate(t *testing.T) {
	srv := &EchoServer{}
	s := startEcho(t, srv)
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--text", "--size", "10",
		"-c", "3", "--message-rate", "40", "--duration", "1s", "--local-addrs", "3", "--progress", "300ms", s.url)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()

	m := regexp.MustCompile(`(?m)^messages     (\d+) sent, (\d+) echoed, 0 unanswered$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no messages line in:\n%s", stdout)
	}
	sent, _ := strconv.ParseInt(m[1], 10, 64)
	// 3 connections at 40/s for about a second, on a busy machine.
	if m[1] != m[2] || sent < 30 || sent > 130 || st.Messages != sent || st.Connections != 3 {
		t.Errorf("sent %s, echoed %s; the server echoed %d on %d connections", m[1], m[2], st.Messages, st.Connections)
	}
	for _, want := range []string{
		"duplex bench " + s.url,
		"3 connections, 10 B text messages, 40/s each, for at most 1s",
		"connections  3 opened, 0 failed; at most 3 open at once",
		"throughput   ", "latency      p50 ", " p99.9 ", "errors       none",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^ +< [0-9.]+[µm]?s +\d+ +[0-9.]+% +#+$`).MatchString(stdout) {
		t.Errorf("report lacks a histogram row:\n%s", stdout)
	}
	progress := regexp.MustCompile(`(?m)^ +\d+\.\ds  connections \d open, \d opened, 0 failed  messages \d+/s, \d+ echoed  errors 0$`)
	if n := len(progress.FindAllString(stderr, -1)); n < 2 {
		t.Errorf("%d progress lines in stderr:\n%s", n, stderr)
	}
	for _, addr := range []string{"remote=127.0.0.1:", "remote=127.0.0.2:", "remote=127.0.0.3:"} {
		if !strings.Contains(s.log.String(), addr) {
			t.Errorf("no connection from %s in the server log:\n%s", addr, s.log)
		}
	}
}

func TestBenchErrors(t *testing.T) {
	// The server closes every connection with 1009: its messages are over
	// its read limit.
	s := startEcho(t, &EchoServer{ReadLimit: 10})
	code, stdout, stderr := runCLI(t, strings.NewReader(""), "bench", "--json", "--progress", "0",
		"-c", "2", "--messages", "5", "--size", "11", s.url)
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if code != exitError || stderr != "duplex: 2 errors\n" {
		t.Errorf("exit %d, stderr %q; want 1 and 2 errors", code, stderr)
	}
	if len(r.Errors) != 1 || r.Errors[0].Kind != "read: closed by the server with 1009 (MessageTooBig)" || r.Errors[0].Count != 2 {
		t.Errorf("errors %+v", r.Errors)
	}
	if r.Messages.Sent != 2 || r.Messages.Received != 0 || r.Messages.Unanswered != 2 {
		t.Errorf("messages %+v", r.Messages)
	}

	// Nothing listens.
	code, stdout, stderr = runCLI(t, strings.NewReader(""), "bench", "--progress", "0", "-c", "3", "ws://127.0.0.1:1")
	if code != exitError || !strings.Contains(stdout, "connections  0 opened, 3 failed") ||
		!regexp.MustCompile(`(?m)^ +3  dial: connection refused  \(e\.g\. .*connection refused\)$`).MatchString(stdout) {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
}
