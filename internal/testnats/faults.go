package testnats

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The fault methods have the signatures of brokertest.Server, so that a
// *Server serves the contract suite's Faults subtests.

// Cut breaks every client connection, as a network fault would: the proxy
// closes them. The server keeps running with its state, and clients that
// reconnect get through at once.
func (s *Server) Cut(t *testing.T) {
	t.Helper()
	s.proxy.cut()
}

// Restart stops the server and starts it again behind the same address.
// With persist it stops gracefully and comes back with its JetStream
// store; without, the store is removed and it comes back empty. It returns
// when the server accepts connections again.
func (s *Server) Restart(t *testing.T, persist bool) {
	t.Helper()
	if err := s.restart(persist); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) restart(persist bool) error {
	if err := s.stop(); err != nil {
		return err
	}
	if !persist {
		if err := os.RemoveAll(s.storeDir()); err != nil {
			return err
		}
	}
	return s.start()
}

// stop ends the process with SIGTERM (nats-server then shuts down
// cleanly, JetStream's store written out), or SIGKILL after 15 seconds.
// While it is down the proxy refuses clients.
func (s *Server) stop() error {
	s.resume()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.addr = ""
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("testnats: the server is not running")
	}
	s.proxy.cut()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testnats: SIGTERM to PID %d: %w", cmd.Process.Pid, err)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		s.kill()
		return errors.New("testnats: the server did not exit within 15s of SIGTERM")
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
		return errors.New("testnats: the server is not running")
	}
	if s.paused == paused {
		return nil
	}
	pid := s.cmd.Process.Pid
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testnats: %v to PID %d: %w", sig, pid, err)
	}
	s.paused = paused
	if paused {
		// The signal is delivered asynchronously: return once the process
		// is stopped, so that nothing answers after Pause.
		deadline := time.Now().Add(5 * time.Second)
		for !stopped(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("testnats: PID %d not stopped 5s after SIGSTOP", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// stopped reports whether every thread of the process is in the stopped
// state, from /proc/<pid>/task/*/stat, whose third field is the state.
// Where /proc is missing it reports true, and Pause returns at once.
func stopped(pid int) bool {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return true
	}
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		// The second field, the command, is in parentheses and may hold
		// spaces: the state follows the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if state := b[i+2]; state != 'T' && state != 't' {
			return false
		}
	}
	return true
}
