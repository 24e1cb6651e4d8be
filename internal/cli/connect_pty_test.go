package cli

import (
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// ptyTerminal is a pseudo-terminal for the interactive mode of duplex
// connect: the command gets tty as its stdin and stdout, and the test
// types on master and reads the screen from it.
type ptyTerminal struct {
	master, tty *os.File
	screen      lockedBuffer
}

func openPTY(t *testing.T) *ptyTerminal {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	pty.Setsize(master, &pty.Winsize{Rows: 50, Cols: 200})
	p := &ptyTerminal{master: master, tty: tty}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&p.screen, master) // ends when the last tty descriptor is closed
	}()
	t.Cleanup(func() {
		tty.Close()
		<-copied
		master.Close()
		if t.Failed() {
			t.Logf("screen:\n%s", p.screen.String())
		}
	})
	return p
}

// typeLine types line and Enter, which a terminal in raw mode reads as \r.
func (p *ptyTerminal) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.master, line+"\r"); err != nil {
		t.Fatal(err)
	}
}

// termState returns the settings of the terminal, to check they are
// restored.
func (p *ptyTerminal) termState(t *testing.T) *term.State {
	t.Helper()
	fd, ok := fileDescriptor(p.tty)
	if !ok {
		t.Fatal("no descriptor")
	}
	st, err := term.GetState(fd)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConnectInteractive(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	p := openPTY(t)
	before := p.termState(t)
	var stderr lockedBuffer
	exit := startCommand(t, testContext(t), p.tty, p.tty, &stderr, "connect", srv.url)
	waitFor(t, &p.screen, "Ctrl-D closes")

	for _, step := range []struct{ typed, want string }{
		{"hello", "< text 5 B: hello"},
		{"/binary 0102ff", "< binary 3 B: 0102ff"},
		{"/binary aGk=", "< binary 2 B: 6869"},
		{"//slash", "< text 6 B: /slash"},
		{"/ping", "pong after "},
		{"/bogus", "unknown command /bogus"},
		{"/close 999", "/close: 999 may not be sent"},
		{"/binary zz!", "/binary wants hex or base64"},
	} {
		p.typeLine(t, step.typed)
		waitFor(t, &p.screen, step.want)
	}
	screen := p.screen.String()
	sent := regexp.MustCompile(`\d\d:\d\d:\d\d\.\d{3} > text 5 B: hello\r\n`).FindStringIndex(screen)
	echoed := regexp.MustCompile(`\d\d:\d\d:\d\d\.\d{3} < text 5 B: hello\r\n`).FindStringIndex(screen)
	if sent == nil || echoed == nil || sent[0] > echoed[0] {
		t.Errorf("want a line with the time for the message sent, then one for its echo; at %v and %v", sent, echoed)
	}

	p.typeLine(t, "/close 4000 done")
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("/close: exit %d, stderr %q", code, &stderr)
	}
	waitFor(t, &p.screen, "closed with 4000; the server answered")
	if err := srv.stop(); err != nil { // the server logs the close once its handler is done
		t.Fatal(err)
	}
	if !strings.Contains(srv.log.String(), `code=4000 reason=done`) {
		t.Errorf("the server did not see the close:\n%s", srv.log)
	}
	if after := p.termState(t); !reflect.DeepEqual(before, after) {
		t.Error("the terminal settings were not restored")
	}
}

// TestConnectInteractiveServerCloses checks that the server's close ends
// the session even while the prompt waits for a line.
func TestConnectInteractiveServerCloses(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	p := openPTY(t)
	var stderr lockedBuffer
	exit := startCommand(t, testContext(t), p.tty, p.tty, &stderr, "connect", srv.url)
	waitFor(t, &p.screen, "Ctrl-D closes")
	io.WriteString(p.master, "half-typed") // no Enter
	waitFor(t, &p.screen, "half-typed")
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, exit); code != 11 {
		t.Errorf("exit %d, want 11 (1001); stderr %q", code, &stderr)
	}
	waitFor(t, &p.screen, `closed by the server with 1001 (GoingAway) "server shutting down"`)
}

// TestConnectInteractiveTrace checks that the trace goes above the prompt,
// and that Ctrl-D closes with 1000.
func TestConnectInteractiveTrace(t *testing.T) {
	srv := startEcho(t, &EchoServer{})
	p := openPTY(t)
	var stderr lockedBuffer
	exit := startCommand(t, testContext(t), p.tty, p.tty, &stderr, "connect", "--trace", srv.url)
	waitFor(t, &p.screen, "Ctrl-D closes")
	p.typeLine(t, "x")
	waitFor(t, &p.screen, "< text 1 B: x")
	io.WriteString(p.master, "\x04") // Ctrl-D
	if code := waitExit(t, exit); code != exitOK {
		t.Errorf("Ctrl-D: exit %d, stderr %q", code, &stderr)
	}
	for _, want := range []string{">> text fin masked key=", "<< text fin len=1", ">> close fin masked key=", "<< close fin len=2 code=1000"} {
		waitFor(t, &p.screen, want)
	}
	// The handshake is traced before the prompt exists, on stderr.
	if !strings.Contains(stderr.String(), "<< HTTP/1.1 101 Switching Protocols") {
		t.Errorf("stderr lacks the handshake response:\n%s", &stderr)
	}
}
