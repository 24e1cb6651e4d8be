package testnats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duplexws/duplex/internal/leakcheck"
	"github.com/duplexws/duplex/internal/testnats"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func connect(t *testing.T, s *testnats.Server, opts ...natsgo.Option) *natsgo.Conn {
	t.Helper()
	opts = append([]natsgo.Option{natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50 * time.Millisecond)}, opts...)
	if c := s.TLSConfig(); c != nil {
		opts = append(opts, natsgo.Secure(c))
	}
	nc, err := natsgo.Connect(s.URL(), opts...)
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Addr(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestJetStream: the server has JetStream, and a client reaches it
// through the proxy.
func TestJetStream(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") || s.Addr() == s.ServerAddr() {
		t.Fatalf("URL %q, Addr %q, ServerAddr %q: want a proxy on loopback in front", s.URL(), s.Addr(), s.ServerAddr())
	}
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(ctx(t)); err != nil {
		t.Fatalf("JetStream account info: %v", err)
	}
	if s.PID() == 0 {
		t.Error("PID 0 for a running server")
	}
}

// TestAuth: a server with a password or a token refuses clients without
// it; URL carries it.
func TestAuth(t *testing.T) {
	for _, opts := range []testnats.Options{
		{User: "ann", Password: "s3cret"},
		{Token: "t0ken"},
	} {
		s := testnats.Start(t, opts)
		connect(t, s).Close()
		if !strings.Contains(s.URL(), "@") {
			t.Errorf("URL %q without credentials", s.URL())
		}
		nc, err := natsgo.Connect("nats://"+s.Addr(), natsgo.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Errorf("%+v: connected without credentials", opts)
		}
	}
}

func TestTLS(t *testing.T) {
	s := testnats.Start(t, testnats.Options{TLS: true})
	if !strings.HasPrefix(s.URL(), "tls://") {
		t.Fatalf("URL %q", s.URL())
	}
	nc := connect(t, s)
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("TLS connection state: %v", err)
	}
}

// TestCut: a cut connection reconnects through the same address, to the
// same server with its state.
func TestCut(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	reconnected := make(chan struct{}, 1)
	nc := connect(t, s, natsgo.ReconnectHandler(func(*natsgo.Conn) { reconnected <- struct{}{} }))
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "cut", Subjects: []string{"cut"}}); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	s.Cut(t)
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection within 10s of Cut")
	}
	if s.PID() != pid {
		t.Errorf("Cut restarted the server")
	}
	if _, err := js.Stream(ctx(t), "cut"); err != nil {
		t.Errorf("the stream after Cut: %v", err)
	}
}

// TestRestart: with persist JetStream's store survives, without it is
// gone; clients keep the address.
func TestRestart(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	addr := s.Addr()
	nc := connect(t, s)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "restart", Subjects: []string{"restart"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx(t), "restart", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, persist := range []bool{true, false} {
		pid := s.PID()
		s.Restart(t, persist)
		if s.PID() == pid || s.Addr() != addr {
			t.Fatalf("Restart(%v): PID %d → %d, Addr %s → %s", persist, pid, s.PID(), addr, s.Addr())
		}
		// The client reconnects by itself; retry until it has.
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var st jetstream.Stream
			if st, err = js.Stream(ctx(t), "restart"); err == nil {
				if n := st.CachedInfo().State.Msgs; n != 1 {
					t.Errorf("Restart(%v): %d messages kept, want 1", persist, n)
				}
				break
			}
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		switch {
		case persist && err != nil:
			t.Errorf("Restart(true): the stream: %v", err)
		case !persist && !errors.Is(err, jetstream.ErrStreamNotFound):
			t.Errorf("Restart(false): the stream: %v, want not found", err)
		}
	}
}

// TestPause: a paused server answers nothing, a resumed one answers
// again on the same connection.
func TestPause(t *testing.T) {
	s := testnats.Start(t, testnats.Options{})
	nc := connect(t, s)
	s.Pause(t)
	if err := nc.FlushTimeout(300 * time.Millisecond); err == nil {
		t.Error("flush answered while paused")
	}
	s.Resume(t)
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Errorf("flush after Resume: %v", err)
	}
}

// TestCloseWhilePaused: Close ends a paused server too.
func TestCloseWhilePaused(t *testing.T) {
	testnats.Require(t)
	s, err := testnats.New(testnats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a paused server did not return within 10s")
	}
}
