package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the peers outside Go, relative to this package's directory,
// where go test runs.
const (
	chromiumPath    = "/usr/bin/chromium"
	nodeModulesPath = "../node_modules"
	// Debian's Python: python3-websockets is installed for it, not for
	// another python3 that may come first in PATH (pyenv's, say).
	pythonPath = "/usr/bin/python3"
)

const setupHint = "run `make interop` in the repository root (peers/setup.sh installs what is missing)"

// requireNode fails the test unless node and the npm packages of
// package-lock.json are installed.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed: %v; %s", err, setupHint)
	}
	for _, pkg := range []string{"ws", "playwright-core"} {
		if _, err := os.Stat(filepath.Join(nodeModulesPath, pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is not installed in peers/node_modules: %v; %s", pkg, err, setupHint)
		}
	}
}

// requirePython fails the test unless Debian's Python has websockets, and
// returns its version.
func requirePython(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pythonPath, "-c", "import websockets; print(websockets.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import websockets (Debian package python3-websockets): %v: %s; %s", pythonPath, err, bytes.TrimSpace(out), setupHint)
	}
	return strings.TrimSpace(string(out))
}

// requireChromium fails the test unless Debian's Chromium and the Node
// packages that drive it are installed.
func requireChromium(t *testing.T) {
	t.Helper()
	requireNode(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed (Debian package chromium): %v; %s", err, setupHint)
	}
}

// npmVersion returns the version of an installed npm package.
func npmVersion(t *testing.T, pkg string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeModulesPath, pkg, "package.json"))
	if err != nil {
		t.Fatalf("reading the version of %s: %v; %s", pkg, err, setupHint)
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatalf("reading the version of %s: %v", pkg, err)
	}
	return meta.Version
}

// commandOutput runs a short command, bounded in time, and returns its
// output.
func commandOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// peerProcess is a peer program run for one test. It is started with
// exec.CommandContext under a timeout, in a process group of its own so
// that its children (Chromium's) end with it, and stopped and waited for in
// t.Cleanup: first by closing its standard input (the peer servers exit
// then), then with SIGTERM to the group (playwright closes Chromium on
// it), then SIGKILL.
type peerProcess struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *lineWriter
	stderr *tailWriter
	exited chan struct{} // closed once Wait has returned
	err    error         // what Wait returned, once exited is closed
}

// startPeer starts a peer program that is killed after timeout. onLine, if
// not nil, receives each line of its standard output as it comes.
func startPeer(t *testing.T, timeout time.Duration, onLine func(string), name string, args ...string) *peerProcess {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second // then the leader is killed and the pipes closed
	p := &peerProcess{
		name:   filepath.Base(name) + " " + strings.Join(args, " "),
		cmd:    cmd,
		stdout: &lineWriter{onLine: onLine},
		stderr: &tailWriter{max: 64 << 10},
		exited: make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatalf("starting %s: %v", p.name, err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		defer cancel()
		p.stdin.Close()
		if !p.waitExit(3 * time.Second) {
			signalGroup(cmd, syscall.SIGTERM)
			if !p.waitExit(3 * time.Second) {
				signalGroup(cmd, syscall.SIGKILL)
				<-p.exited
			}
		}
		if t.Failed() {
			if s := p.stderr.String(); s != "" {
				t.Logf("%s: standard error:\n%s", p.name, s)
			}
		}
	})
	return p
}

// signalGroup signals the process group of a started command. It reads
// only the PID: cmd.ProcessState is written by the goroutine in Wait, and
// reading it here raced with that write. A group that is gone is
// os.ErrProcessDone.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return nil
}

func (p *peerProcess) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// output waits for the program to exit on its own and returns the lines
// of its standard output.
func (p *peerProcess) output(t *testing.T) []string {
	t.Helper()
	<-p.exited // bounded by the timeout of startPeer
	if p.err != nil {
		var ee *exec.ExitError
		why := p.err.Error()
		if errors.As(p.err, &ee) && ee.ProcessState != nil && !ee.Exited() {
			why += " (killed: it ran past its timeout)"
		}
		t.Errorf("%s failed: %s; standard error:\n%s", p.name, why, p.stderr.String())
	}
	return p.stdout.lines()
}

// lineWriter collects the lines written to it.
type lineWriter struct {
	onLine  func(string)
	mu      sync.Mutex
	partial []byte
	done    []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.done = append(w.done, line)
		if w.onLine != nil {
			w.onLine(line)
		}
	}
}

func (w *lineWriter) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.done...)
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
