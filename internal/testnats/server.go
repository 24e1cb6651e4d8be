// Package testnats starts real nats-server processes with JetStream on free
// loopback ports for tests, and breaks them the way production does (Cut,
// Restart, Pause, Resume) so that a broker's tests can watch it recover. It
// stops only the processes it started, by their PID.
//
// Clients reach the server through a small TCP proxy of this package, whose
// address stays the same for the Server's life: Cut closes the proxied
// connections while the server keeps its state, and Restart may bring the
// server back on another port without the clients noticing more than a
// reconnection.
//
// The binary is, in order: the file named by the environment variable
// DUPLEX_NATS_SERVER, <module root>/.tools/bin/nats-server (which
// scripts/services.sh builds), nats-server on PATH. When none is there,
// Start skips the test, unless the environment sets
// DUPLEX_REQUIRE_SERVICES=1 (the Makefile does), which makes it fail
// instead.
package testnats

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testcert"
)

// Options configures a server. The zero value is a server with JetStream,
// without authentication, over plain TCP.
type Options struct {
	// User and Password, when User is set, are required of clients.
	// Default: none.
	User     string
	Password string
	// Token, when set, is required of clients instead. Default: none.
	Token string
	// TLS makes the server require TLS, with a certificate that
	// internal/testcert makes for 127.0.0.1; TLSConfig returns a client
	// configuration trusting it. Default: plain TCP.
	TLS bool
	// NoJetStream starts the server without JetStream, to test what a
	// client says about that. Default: false, JetStream on.
	NoJetStream bool
	// Config is more configuration, in nats-server's format, appended to
	// the file this package writes. Default: none.
	Config string
}

// Server is a nats-server process that this package started, behind a
// proxy of its own. Its methods are safe for concurrent use.
type Server struct {
	opts  Options
	bin   string
	dir   string
	cert  *testcert.Cert
	proxy *proxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	addr   string        // the process's client address, host:port
	paused bool
	closed bool
}

// ErrNotInstalled is returned by New when no nats-server binary is found.
var ErrNotInstalled = errors.New("testnats: nats-server not found: set DUPLEX_NATS_SERVER, or run scripts/services.sh to build .tools/bin/nats-server")

// Binary returns the path of the nats-server binary the tests use.
func Binary() (string, error) {
	if p := os.Getenv("DUPLEX_NATS_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("testnats: DUPLEX_NATS_SERVER: %w", err)
		}
		return p, nil
	}
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, ".tools", "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	return "", ErrNotInstalled
}

// moduleRoot returns the nearest directory at or above the working
// directory (a test's package directory) that holds a go.mod.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Require skips tb when no nats-server binary is found, or fails it when
// the environment sets DUPLEX_REQUIRE_SERVICES=1.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv("DUPLEX_REQUIRE_SERVICES") == "1" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// Start starts a server for tb and stops it in tb's cleanup. It skips or
// fails tb as Require does when the binary is not found.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	Require(tb)
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// New starts a server, for a caller that manages its lifetime itself: the
// caller must Close it.
func New(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testnats-")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, bin: bin, dir: dir}
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, err
	}
	if opts.TLS {
		if s.cert, err = testcert.New("127.0.0.1"); err != nil {
			return fail(err)
		}
		if _, _, err = s.cert.WriteFiles(dir); err != nil {
			return fail(err)
		}
	}
	if err := s.writeConfig(); err != nil {
		return fail(err)
	}
	if s.proxy, err = newProxy(s.upstream); err != nil {
		return fail(err)
	}
	if err := s.start(); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *Server) storeDir() string { return filepath.Join(s.dir, "jetstream") }

// writeConfig writes the server's configuration file. It listens on a
// random port, which the server writes to its ports file.
func (s *Server) writeConfig() error {
	var b strings.Builder
	var name [4]byte
	rand.Read(name[:])
	fmt.Fprintf(&b, "server_name: testnats-%s\n", hex.EncodeToString(name[:]))
	b.WriteString("listen: \"127.0.0.1:-1\"\n")
	fmt.Fprintf(&b, "ports_file_dir: %s\n", strconv.Quote(s.dir))
	if !s.opts.NoJetStream {
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %s\n}\n", strconv.Quote(s.storeDir()))
	}
	switch {
	case s.opts.User != "":
		fmt.Fprintf(&b, "authorization {\n  user: %s\n  password: %s\n}\n",
			strconv.Quote(s.opts.User), strconv.Quote(s.opts.Password))
	case s.opts.Token != "":
		fmt.Fprintf(&b, "authorization {\n  token: %s\n}\n", strconv.Quote(s.opts.Token))
	}
	if s.opts.TLS {
		fmt.Fprintf(&b, "tls {\n  cert_file: %s\n  key_file: %s\n}\n",
			strconv.Quote(filepath.Join(s.dir, "cert.pem")), strconv.Quote(filepath.Join(s.dir, "key.pem")))
	}
	b.WriteString(s.opts.Config)
	b.WriteString("\n")
	return os.WriteFile(s.configPath(), []byte(b.String()), 0o600)
}

func (s *Server) configPath() string { return filepath.Join(s.dir, "nats.conf") }
func (s *Server) logPath() string    { return filepath.Join(s.dir, "nats.log") }

// start runs the process and waits until it accepts clients.
func (s *Server) start() error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "-c", s.configPath())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("testnats: start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.paused, s.addr = cmd, exited, false, ""
	s.mu.Unlock()

	addr, err := s.waitReady(cmd.Process.Pid, exited, 30*time.Second)
	if err != nil {
		s.kill()
		return err
	}
	s.mu.Lock()
	s.addr = addr
	s.mu.Unlock()
	return nil
}

// waitReady waits for the process's ports file, which the server writes
// once it listens (JetStream, with what it recovered from its store, is
// enabled before that), and for its INFO line on a connection.
func (s *Server) waitReady(pid int, exited chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	portsFile := filepath.Join(s.dir, fmt.Sprintf("%s_%d.ports", filepath.Base(s.bin), pid))
	for {
		addr, err := readPortsFile(portsFile)
		if err == nil {
			err = readINFO(addr)
		}
		if err == nil {
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("testnats: nats-server exited at start: %s", s.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("testnats: nats-server not ready after %v: %v; log: %s", timeout, err, s.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPortsFile returns the client address from a ports file.
func readPortsFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var ports struct {
		Nats []string `json:"nats"`
	}
	if err := json.Unmarshal(b, &ports); err != nil {
		return "", err // written but not complete yet
	}
	for _, raw := range ports.Nats {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("testnats: no client address in %s", path)
}

// readINFO connects to addr and reads the server's first line.
func readINFO(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte("INFO")) {
		return fmt.Errorf("testnats: %s answered %q, not INFO", addr, buf)
	}
	return nil
}

// upstream returns the address the proxy forwards to, or "" while the
// server is down.
func (s *Server) upstream() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// LogTail returns the end of the server's log, for a failure message.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.logPath())
	b = bytes.TrimSpace(b)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Addr returns the address clients connect to, host:port: the proxy's,
// which stays the same across Restart.
func (s *Server) Addr() string { return s.proxy.addr() }

// ServerAddr returns the nats-server process's own address, which
// changes with Restart, or "" while it is down.
func (s *Server) ServerAddr() string { return s.upstream() }

// URL returns nats://[user:password@ | token@]host:port of Addr, or
// tls://… for a TLS server (whose client also needs TLSConfig).
func (s *Server) URL() string {
	u := url.URL{Scheme: "nats", Host: s.Addr()}
	if s.opts.TLS {
		u.Scheme = "tls"
	}
	switch {
	case s.opts.User != "":
		u.User = url.UserPassword(s.opts.User, s.opts.Password)
	case s.opts.Token != "":
		u.User = url.User(s.opts.Token)
	}
	return u.String()
}

// TLSConfig returns a client TLS configuration that trusts the server's
// certificate, or nil for a plain server.
func (s *Server) TLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	return s.cert.ClientConfig()
}

// PID returns the process id of the running server, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// kill stops the process that this Server started, by its PID, and waits
// for it.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGKILL) // also ends a stopped process
	<-exited
}

// Close stops the server and the proxy and removes the server's directory.
// It may be called again.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.proxy != nil {
		s.proxy.close()
	}
	s.kill()
	return os.RemoveAll(s.dir)
}
