package jwt

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a key set the test changes, or fails while down.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	set      []byte
	down     bool
	requests atomic.Int64
}

func newJWKSServer(t *testing.T, set []byte) *jwksServer {
	s := &jwksServer{set: set}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		set, down := s.set, s.down
		s.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(set []byte, down bool) {
	s.mu.Lock()
	s.set, s.down = set, down
	s.mu.Unlock()
}

func remoteVerifier(t *testing.T, url string, interval, minRefresh time.Duration) *Verifier {
	v := mustVerifier(t, VerifierConfig{
		Algorithm: RS256, JWKSURL: url, Now: fixedNow,
		JWKSRefreshInterval: interval, JWKSMinRefreshInterval: minRefresh,
		Logger: slog.New(slog.DiscardHandler),
	})
	t.Cleanup(v.Close)
	return v
}

func TestRemoteJWKSRotation(t *testing.T) {
	k1, k2 := signingKey(RS256, 0), signingKey(RS256, 1)
	srv := newJWKSServer(t, jwks(t, jwkOf(t, "k1", k1)))
	v := remoteVerifier(t, srv.URL, time.Hour, time.Millisecond)
	if _, err := v.Verify(mustSign(t, RS256, k1, "k1", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mustSign(t, RS256, k1, "", nil)); err != nil {
		t.Fatalf("the sole key, token without kid: %v", err)
	}
	// The provider rotates: k2 is added, and later k1 removed. A token
	// with the new kid makes the verifier fetch the set again.
	srv.serve(jwks(t, jwkOf(t, "k1", k1), jwkOf(t, "k2", k2)), false)
	time.Sleep(2 * time.Millisecond)
	if _, err := v.Verify(mustSign(t, RS256, k2, "k2", nil)); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	if _, err := v.Verify(mustSign(t, RS256, k1, "k1", nil)); err != nil {
		t.Fatalf("old key during rotation: %v", err)
	}
	// A removed key goes with the next fetch, here caused by another
	// unknown kid (or else by the ticker).
	srv.serve(jwks(t, jwkOf(t, "k2", k2)), false)
	time.Sleep(2 * time.Millisecond)
	if _, err := v.Verify(mustSign(t, RS256, k1, "k3", nil)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: got %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(mustSign(t, RS256, k1, "k1", nil)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("removed key: got %v, want ErrUnknownKey", err)
	}
	if got := srv.requests.Load(); got != 4 {
		t.Errorf("%d fetches, want 4 (start, k2, k3, k1 once removed)", got)
	}
}

func TestRemoteJWKSPeriodicAndDown(t *testing.T) {
	k1, k2 := signingKey(RS256, 0), signingKey(RS256, 1)
	srv := newJWKSServer(t, jwks(t, jwkOf(t, "k1", k1)))
	v := remoteVerifier(t, srv.URL, 10*time.Millisecond, time.Hour)
	tok1 := mustSign(t, RS256, k1, "k1", nil)
	if _, err := v.Verify(tok1); err != nil {
		t.Fatal(err)
	}
	// The ticker, not a token, brings the new key: unknown kids may not
	// fetch (minRefresh is an hour, and the first fetch was just now).
	srv.serve(jwks(t, jwkOf(t, "k1", k1), jwkOf(t, "k2", k2)), false)
	tok2 := mustSign(t, RS256, k2, "k2", nil)
	waitFor(t, func() bool { _, err := v.Verify(tok2); return err == nil })

	// Down, or serving garbage: the last good set stays.
	for _, bad := range []struct {
		set  []byte
		down bool
	}{{nil, true}, {[]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}`), false}, {[]byte("<html>"), false}} {
		srv.serve(bad.set, bad.down)
		n := srv.requests.Load()
		waitFor(t, func() bool { return srv.requests.Load() >= n+2 })
		for _, tok := range []string{tok1, tok2} {
			if _, err := v.Verify(tok); err != nil {
				t.Fatalf("after failed fetches (%s): %v", bad.set, err)
			}
		}
	}
	// Closed, the verifier stops fetching; the leak check sees its
	// goroutine gone.
	v.Close()
	n := srv.requests.Load()
	time.Sleep(50 * time.Millisecond)
	if got := srv.requests.Load(); got != n {
		t.Errorf("%d fetches after Close", got-n)
	}
}

func TestRemoteJWKSUnknownKidBounded(t *testing.T) {
	k1 := signingKey(RS256, 0)
	srv := newJWKSServer(t, jwks(t, jwkOf(t, "k1", k1)))
	v := remoteVerifier(t, srv.URL, time.Hour, 300*time.Millisecond)
	var toks []string
	for i := range 50 {
		toks = append(toks, mustSign(t, RS256, k1, fmt.Sprintf("made-up-%d", i), nil))
	}
	time.Sleep(350 * time.Millisecond)
	// A flood of made-up kids from many clients at once: one fetch.
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Go(func() {
			if _, err := v.Verify(tok); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("got %v, want ErrUnknownKey", err)
			}
		})
	}
	wg.Wait()
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("%d fetches, want 2 (start and one refresh)", got)
	}
	// A known kid never fetches.
	for range 10 {
		if _, err := v.Verify(mustSign(t, RS256, k1, "k1", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("%d fetches after known kids, want 2", got)
	}
}

func TestRemoteJWKSStartsWhileDown(t *testing.T) {
	k1 := signingKey(RS256, 0)
	srv := newJWKSServer(t, nil)
	srv.serve(nil, true)
	v := remoteVerifier(t, srv.URL, time.Hour, time.Millisecond)
	tok := mustSign(t, RS256, k1, "", nil)
	if _, err := v.Verify(tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("no keys yet: got %v", err)
	}
	srv.serve(jwks(t, jwkOf(t, "k1", k1)), false)
	time.Sleep(2 * time.Millisecond)
	// With no set at all, even a token without kid fetches.
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after the endpoint came up: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
