package testredis

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The fault methods have the signatures of brokertest.Server, so that a
// *Server and a *Cluster serve the contract suite's Faults subtests.

// Cut breaks every client connection to the server, as a network fault
// would: CLIENT KILL of the normal and the pub/sub clients, from a
// connection of its own. The server keeps running with its state.
func (s *Server) Cut(t *testing.T) {
	t.Helper()
	if err := s.cut(); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) cut() error {
	a, err := dialAdmin(s.Addr(), s.TLSConfig(), s.opts.Password, 5*time.Second)
	if err != nil {
		return fmt.Errorf("testredis: Cut: %w", err)
	}
	defer a.close()
	return a.kill()
}

// kill closes the connections of the normal and the pub/sub clients but
// a's own (SKIPME is yes by default).
func (a *adminConn) kill() error {
	for _, typ := range []string{"pubsub", "normal"} {
		if _, err := a.do(5*time.Second, "CLIENT", "KILL", "TYPE", typ); err != nil {
			return fmt.Errorf("testredis: Cut: CLIENT KILL TYPE %s: %w", typ, err)
		}
	}
	return nil
}

// Restart stops the server and starts it again on the same port. With
// persist it saves a snapshot first and the server comes back with its
// data; without, the data files are removed and it comes back empty (a
// Cluster node keeps its slots). It returns when the server answers again.
func (s *Server) Restart(t *testing.T, persist bool) {
	t.Helper()
	if err := s.restart(persist); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) restart(persist bool) error {
	if err := s.shutdown(persist); err != nil {
		return err
	}
	return s.start()
}

// shutdown stops the server with SHUTDOWN SAVE or NOSAVE and, without
// persist, removes its data files.
func (s *Server) shutdown(persist bool) error {
	s.resume()
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	mode := "NOSAVE"
	if persist {
		mode = "SAVE"
	}
	a, err := dialAdmin(s.Addr(), s.TLSConfig(), s.opts.Password, 5*time.Second)
	if err != nil {
		return fmt.Errorf("testredis: Restart: %w", err)
	}
	// On success the server closes the connection instead of replying.
	_, err = a.do(30*time.Second, "SHUTDOWN", mode)
	a.close()
	var rerr Error
	if errors.As(err, &rerr) {
		return fmt.Errorf("testredis: Restart: SHUTDOWN %s: %w", mode, err)
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("testredis: Restart: SHUTDOWN %s: %w", mode, err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		s.kill()
		return errors.New("testredis: Restart: the server did not exit within 30s of SHUTDOWN")
	}
	if !persist {
		for _, name := range []string{"dump.rdb", "appendonly.aof", "appendonlydir"} {
			if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Pause stops the server's process with SIGSTOP: connections stay open
// and nothing answers, as when a server hangs.
func (s *Server) Pause(t *testing.T) {
	t.Helper()
	if err := s.signal(syscall.SIGSTOP, true); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume(t *testing.T) {
	t.Helper()
	if err := s.signal(syscall.SIGCONT, false); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) resume() { s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return errors.New("testredis: the server is not running")
	}
	if s.paused == paused {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testredis: %v to PID %d: %w", sig, s.cmd.Process.Pid, err)
	}
	s.paused = paused
	return nil
}
