package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
)

// library is one WebSocket library under test and what its server can do.
type library struct {
	name     string
	module   string // Go module path, for the report
	prepared string // the broadcast facility its server uses
	// contextTakeover says whether the library compresses with context
	// takeover; why not, when it does not.
	contextTakeover bool
	noTakeoverWhy   string
}

var libraries = []library{
	{name: "duplex", module: "github.com/duplexws/duplex", prepared: "WritePrepared", contextTakeover: true},
	{name: "duplex-handler", module: "github.com/duplexws/duplex (the README's handler pattern)", prepared: "WritePrepared", contextTakeover: true},
	{name: "gorilla", module: "github.com/gorilla/websocket", prepared: "PreparedMessage",
		noTakeoverWhy: "compresses only without context takeover"},
	{name: "coder", module: "github.com/coder/websocket", prepared: "none: Write per subscriber", contextTakeover: true},
	{name: "gws", module: "github.com/lxzan/gws", prepared: "Broadcaster (queued per connection)", contextTakeover: true},
	{name: "gobwas", module: "github.com/gobwas/ws", prepared: "CompileFrame once, Write per subscriber",
		noTakeoverWhy: "wsflate leaves context takeover to the application; not implemented"},
	{name: "nbio", module: "github.com/lesismal/nbio", prepared: "none: WriteMessage per subscriber",
		noTakeoverWhy: "compresses only without context takeover"},
}

// libraryByName returns the library a server is for. A server that is not
// one of the seven, such as a variant of one kept to compare a change, is
// accepted when its directory exists under bench/servers.
func libraryByName(name string) (library, bool) {
	for _, l := range libraries {
		if l.name == name {
			return l, true
		}
	}
	if fi, err := os.Stat(filepath.Join("bench", "servers", name)); err == nil && fi.IsDir() {
		return library{name: name, module: "bench/servers/" + name, prepared: "see its main.go", contextTakeover: true}, true
	}
	return library{}, false
}

// buildServers builds every server binary into dir, once for the run. It
// runs in the peers module, which must be the current directory's.
func buildServers(ctx context.Context, dir string, names []string) error {
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./bench/servers/"+name)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building the %s server (run loadgen from the peers module): %w", name, err)
		}
	}
	return nil
}

// server is a running benchmark server process.
type server struct {
	name string
	addr string // host:port it listens on
	cmd  *exec.Cmd
	http *http.Client
}

// startServer starts binary with args and waits for it to listen.
func startServer(ctx context.Context, name, binary string, args ...string) (*server, error) {
	cmd := exec.Command(binary, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = os.Stderr
	// The server dies with the load generator, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: name, cmd: cmd, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() {
			// Keep the pipe drained so that the server never blocks on it.
		}
	}()
	select {
	case line, ok := <-lines:
		addr, found := strings.CutPrefix(line, "listening ")
		if !ok || !found {
			s.stop()
			return nil, fmt.Errorf("%s server did not start (first line %q)", name, line)
		}
		s.addr = addr
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s server did not start within 10s", name)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	return s, nil
}

// stop ends the server by its PID: SIGTERM, which lets it write its
// profiles, then SIGKILL if it has not exited within 10 seconds.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
		return errors.New(s.name + " server ignored SIGTERM; killed")
	}
}

// stats samples the server's memory; collect first collects its garbage
// and, when the server was given -memprofile, writes a heap profile.
func (s *server) stats(collect bool) (benchsrv.Stats, error) {
	url := "http://" + s.addr + "/stats"
	if collect {
		url += "?gc=1&profile=1"
	}
	var st benchsrv.Stats
	resp, err := s.http.Get(url)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("%s server /stats: %w", s.name, err)
	}
	return st, nil
}

// cpuTime returns the CPU time, user and system, the server has used so
// far, from /proc/PID/stat in clock ticks of 10ms (USER_HZ is 100 on Linux).
func (s *server) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("%s server: malformed /proc stat", s.name)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s server: malformed /proc stat", s.name)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// waitStats polls the server's stats until done accepts them or timeout
// passes, and returns the last stats.
func (s *server) waitStats(ctx context.Context, timeout time.Duration, done func(benchsrv.Stats) bool) (benchsrv.Stats, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.stats(false)
		if err != nil {
			return st, err
		}
		if done(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s server: not settled within %v (%d goroutines, %d subscribers)", s.name, timeout, st.Goroutines, st.Subscribers)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
