// Package testredis starts real redis-server processes on free loopback
// ports for tests: a standalone server, with a password or TLS if asked, and
// a three-master Redis Cluster. It also breaks them the way production does
// (Cut, Restart, Pause, Resume), so that a broker's tests can watch it
// recover. It stops only the processes it started, by their PID.
//
// The servers come from PATH (redis-server and redis-cli; scripts/services.sh
// installs them). When they are missing, Start skips the test, unless the
// environment sets DUPLEX_REQUIRE_SERVICES=1 (the Makefile does), which makes
// it fail instead.
package testredis

import (
	"bytes"
	"crypto/tls"
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

// Options configures a server. The zero value is a plain standalone server
// without persistence.
type Options struct {
	// Password, when set, is required of clients (requirepass, the
	// default user's password). Default: none.
	Password string
	// TLS makes the server speak TLS only, with a certificate that
	// internal/testcert makes for 127.0.0.1; TLSConfig returns a client
	// configuration trusting it. Not supported for a Cluster. Default:
	// plain TCP.
	TLS bool
	// AppendOnly turns on the append-only file, so that the data survive
	// a crash too. Restart keeps the data with persist true whatever this
	// says (it saves a snapshot first). Default: off.
	AppendOnly bool
	// Args are more redis-server arguments, like "--maxmemory", "64mb".
	Args []string

	// cluster makes a Cluster node; busPort is its cluster bus port.
	cluster bool
}

// Server is a redis-server process that this package started. Its methods
// are safe for concurrent use.
type Server struct {
	opts   Options
	bin    string
	dir    string
	ownDir bool // dir is ours to remove
	port   int
	bus    int // cluster bus port, or 0
	cert   *testcert.Cert

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	paused bool
	closed bool
}

// ErrNotInstalled is returned by New when redis-server or redis-cli is not
// on PATH.
var ErrNotInstalled = errors.New("testredis: redis-server or redis-cli not found on PATH (scripts/services.sh installs them)")

// Require skips tb when redis-server or redis-cli are not installed, or
// fails it when the environment sets DUPLEX_REQUIRE_SERVICES=1.
func Require(tb testing.TB) {
	tb.Helper()
	if _, err := lookPaths(); err != nil {
		if os.Getenv("DUPLEX_REQUIRE_SERVICES") == "1" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// lookPaths returns redis-server's path.
func lookPaths() (string, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNotInstalled
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return "", ErrNotInstalled
	}
	return server, nil
}

// Start starts a standalone server for tb and stops it in tb's cleanup. It
// skips or fails tb as Require does when the server is not installed.
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

// New starts a standalone server, for a caller that manages its lifetime
// itself (a server shared by the tests of a package, started once and
// stopped in TestMain): the caller must Close it.
func New(opts Options) (*Server, error) {
	if opts.TLS && opts.cluster {
		return nil, errors.New("testredis: TLS is not supported for a Cluster")
	}
	bin, err := lookPaths()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testredis-")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, bin: bin, dir: dir, ownDir: true}
	if opts.TLS {
		if s.cert, err = testcert.New("127.0.0.1"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if _, _, err = s.cert.WriteFiles(dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	// A free port can be taken by another process between the check and
	// the server's bind: try a few.
	for attempt := 0; ; attempt++ {
		var ports []int
		if ports, err = freePorts(2); err == nil {
			s.port = ports[0]
			if opts.cluster {
				s.bus = ports[1]
			}
		}
		if err == nil {
			err = s.start()
		}
		if err == nil {
			return s, nil
		}
		if attempt == 4 || !strings.Contains(err.Error(), "in use") {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// freePorts returns n distinct free ports: their listeners are all open
// until every one is chosen, else the kernel may hand out one twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// args returns the server's command line.
func (s *Server) args() []string {
	a := []string{
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "warning",
		"--databases", "16",
	}
	if s.opts.TLS {
		a = append(a, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(s.dir, "cert.pem"),
			"--tls-key-file", filepath.Join(s.dir, "key.pem"),
			"--tls-ca-cert-file", filepath.Join(s.dir, "cert.pem"),
			"--tls-auth-clients", "no")
	} else {
		a = append(a, "--port", strconv.Itoa(s.port))
	}
	if s.opts.Password != "" {
		a = append(a, "--requirepass", s.opts.Password)
	}
	if s.opts.AppendOnly {
		a = append(a, "--appendonly", "yes")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.opts.cluster {
		a = append(a, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
			"--cluster-port", strconv.Itoa(s.bus))
	}
	return append(a, s.opts.Args...)
}

// start runs the process and waits until it answers PING.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("testredis: redis-server exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("testredis: redis-server on port %d not ready after 15s: %v; log: %s", s.port, err, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// ping reports whether the server answers PING (not LOADING).
func (s *Server) ping() error {
	_, err := s.Do("PING")
	return err
}

// Do sends one command on a connection of its own and returns the reply:
// a string for simple and bulk strings, an int64 for integers, []any for
// arrays, nil for null; an error reply is an Error.
func (s *Server) Do(args ...string) (any, error) {
	a, err := dialAdmin(s.Addr(), s.TLSConfig(), s.opts.Password, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer a.close()
	return a.do(10*time.Second, args...)
}

// Addr returns the server's address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Password returns the password clients must give, or "".
func (s *Server) Password() string { return s.opts.Password }

// URL returns redis://[:password@]host:port, or rediss:// for a TLS server
// (whose client also needs TLSConfig).
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr()}
	if s.opts.TLS {
		u.Scheme = "rediss"
	}
	if s.opts.Password != "" {
		u.User = url.UserPassword("", s.opts.Password)
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

// Close stops the server and removes its directory. It may be called
// again.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.kill()
	if s.ownDir {
		return os.RemoveAll(s.dir)
	}
	return nil
}
