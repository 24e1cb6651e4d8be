package testredis_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testredis"
)

func TestStandalone(t *testing.T) {
	s := testredis.Start(t, testredis.Options{})
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Do("GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET k: %v, %v", v, err)
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Errorf("URL %q", s.URL())
	}
}

func TestPassword(t *testing.T) {
	s := testredis.Start(t, testredis.Options{Password: "s3cret"})
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING with the password: %v, %v", v, err)
	}
	if want := "redis://:s3cret@" + s.Addr(); s.URL() != want {
		t.Errorf("URL %q, want %q", s.URL(), want)
	}
}

func TestTLS(t *testing.T) {
	s := testredis.Start(t, testredis.Options{TLS: true})
	if s.TLSConfig() == nil || !strings.HasPrefix(s.URL(), "rediss://") {
		t.Fatalf("TLS server: config %v, URL %q", s.TLSConfig(), s.URL())
	}
	c, err := tls.Dial("tcp", s.Addr(), s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestRestart: with persist the data survive, without they are gone; the
// port stays.
func TestRestart(t *testing.T) {
	for _, appendOnly := range []bool{false, true} {
		s := testredis.Start(t, testredis.Options{AppendOnly: appendOnly})
		addr := s.Addr()
		if _, err := s.Do("SET", "k", "v"); err != nil {
			t.Fatal(err)
		}
		s.Restart(t, true)
		if v, err := s.Do("GET", "k"); err != nil || v != "v" {
			t.Errorf("AppendOnly %v: GET after Restart(persist): %v, %v", appendOnly, v, err)
		}
		s.Restart(t, false)
		if v, err := s.Do("GET", "k"); err != nil || v != nil {
			t.Errorf("AppendOnly %v: GET after Restart(no persist): %v, %v", appendOnly, v, err)
		}
		if s.Addr() != addr {
			t.Errorf("address changed from %s to %s", addr, s.Addr())
		}
	}
}

// TestPauseCut: a paused server does not answer; resumed it does; Cut
// closes other clients' connections.
func TestPauseCut(t *testing.T) {
	s := testredis.Start(t, testredis.Options{})
	s.Pause(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Do("PING")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("PING to a paused server returned %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	s.Resume(t)
	if err := <-done; err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	s.Cut(t)
}

func TestCluster(t *testing.T) {
	c := testredis.StartCluster(t, testredis.Options{Password: "pw"})
	if len(c.Addrs()) != testredis.ClusterSize {
		t.Fatalf("Addrs %v", c.Addrs())
	}
	for _, n := range c.Nodes() {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info.(string), "cluster_state:ok") {
			t.Fatalf("CLUSTER INFO on %s: %v %v", n.Addr(), info, err)
		}
	}
	c.Cut(t)
	c.Restart(t, false)
}
