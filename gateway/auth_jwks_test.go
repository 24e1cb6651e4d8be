package gateway

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
)

// The leeway at connect holds for the live expiry too: a token 3 s past
// its exp inside a 5 s leeway is accepted, and the connection stays until
// exp plus the leeway (it was closed by the next janitor visit, which
// comes within a second).
func TestExpiryLeeway(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Auth.Leeway = 5 * time.Second })
	// exp is in whole seconds: begin just after a second does, so that exp
	// plus the leeway is nearly 2 s away. Begun late in a second, it was
	// barely 1 s away, less than the wait below, and the test failed.
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
	exp := time.Now().Add(-3 * time.Second).Unix() // 3.02 s ago
	c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "exp": exp}))
	time.Sleep(1200 * time.Millisecond)
	c.okOpen("ping", nil)
	expectClose(t, c, CloseTokenExpired, "token expired")
	if deadline := time.Unix(exp, 0).Add(5 * time.Second); time.Now().Before(deadline) {
		t.Fatalf("closed before exp plus the leeway, %v", deadline)
	}
}

// refresh applies the new token's channels and info: a channel the new
// token no longer grants is unsubscribed, and cannot be subscribed again.
func TestRefreshRegrants(t *testing.T) {
	ts := newServer(t, nil)
	hour := time.Now().Add(time.Hour).Unix()
	alice, _ := connected(t, ts.url, token(t, map[string]any{
		"sub": "alice", "exp": hour, "channels": []string{"private:a", "private:b", "chat:x"},
		"info": map[string]any{"name": "old"},
	}))
	for _, ch := range []string{"private:a", "private:b", "chat:x"} {
		alice.ok("subscribe", msg{"channel": ch})
	}
	watcher, _ := connected(t, ts.url, "")
	watcher.ok("subscribe", msg{"channel": "chat:x"})

	_, pushes := alice.callKeep("refresh", msg{"token": token(t, map[string]any{
		"sub": "alice", "exp": hour, "channels": []string{"private:a"},
		"info": map[string]any{"name": "new"},
	})})
	var unsub msg
	for _, p := range pushes {
		if p.str("push") == "unsubscribe" {
			unsub = p
		}
	}
	if unsub == nil {
		unsub = alice.nextPush("unsubscribe")
	}
	if unsub.str("channel") != "private:b" || unsub.num("code") != UnsubscribeServer {
		t.Fatalf("push %v, want unsubscribe of private:b", unsub)
	}
	if code := alice.errCode("subscribe", msg{"channel": "private:b"}); code != ErrPermissionDenied.Code {
		t.Fatalf("subscribe private:b after the grant went: error %d, want %d", code, ErrPermissionDenied.Code)
	}
	// private:a is still granted and subscribed: a second subscribe says so.
	if code := alice.errCode("subscribe", msg{"channel": "private:a"}); code != ErrAlreadySubscribed.Code {
		t.Fatalf("subscribe private:a: error %d, want %d", code, ErrAlreadySubscribed.Code)
	}
	// chat:x needs no grant: it stays. Alice's publications carry the new info.
	alice.ok("publish", msg{"channel": "chat:x", "data": msg{"n": 1}})
	pub := watcher.nextPush("pub")
	info, _ := json.Marshal(pub["info"])
	if !strings.Contains(string(info), `"name":"new"`) {
		t.Fatalf("publication info %s, want the refreshed info", info)
	}
}

// A refused token's close reason names the kind of refusal, not the
// configured issuer or audience.
func TestCloseReasonHidesConfig(t *testing.T) {
	const iss, aud = "https://idp.internal.example", "internal-gateway-aud"
	ts := newServer(t, func(cfg *Config) { cfg.Auth.Issuer, cfg.Auth.Audience = iss, aud })
	for _, tc := range []struct {
		claims map[string]any
		want   string
	}{
		{map[string]any{"sub": "alice", "iss": "https://evil.example", "aud": aud}, "unauthorized: wrong issuer"},
		{map[string]any{"sub": "alice", "iss": iss, "aud": "other"}, "unauthorized: wrong audience"},
		{map[string]any{"sub": "alice"}, "unauthorized: wrong issuer"},
	} {
		reason := refused(t, ts.url, token(t, tc.claims), CloseUnauthorized)
		if reason != tc.want || strings.Contains(reason, iss) || strings.Contains(reason, aud) {
			t.Errorf("close reason %q, want %q", reason, tc.want)
		}
	}
	// The refresh error says no more.
	c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "iss": iss, "aud": aud}))
	r := c.call("refresh", msg{"token": token(t, map[string]any{"sub": "alice", "iss": "x", "aud": aud})})
	if b, _ := json.Marshal(r); strings.Contains(string(b), iss) {
		t.Errorf("refresh error %s names the issuer", b)
	}
}

// rsaJWK is the public JWK of key.
func rsaJWK(kid string, key *rsa.PrivateKey) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}
}

// An identity provider rotates its key while clients stay connected:
// they stay, clients with tokens of the new key get in, and tokens of the
// removed key no longer refresh.
func TestJWKSURLRotation(t *testing.T) {
	k1, k2 := testRSAKeys(t)
	var mu sync.Mutex
	set := []map[string]any{rsaJWK("k1", k1)}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	defer idp.Close()
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth = Auth{Algorithm: "RS256", JWKSURL: idp.URL, JWKSMinRefreshInterval: time.Millisecond}
	})
	hour := time.Now().Add(time.Hour).Unix()
	sign := func(key *rsa.PrivateKey, kid string) string {
		tok, err := jwt.Sign(jwt.RS256, key, kid, map[string]any{"sub": "alice", "exp": hour})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old, _ := connected(t, ts.url, sign(k1, "k1"))

	mu.Lock()
	set = []map[string]any{rsaJWK("k2", k2)}
	mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	fresh, _ := connected(t, ts.url, sign(k2, "k2"))
	fresh.ok("ping", nil)
	old.ok("ping", nil)
	if code := old.errCode("refresh", msg{"token": sign(k1, "k1")}); code != ErrInvalidToken.Code {
		t.Fatalf("refresh with the removed key: error %d, want %d", code, ErrInvalidToken.Code)
	}
	old.ok("refresh", msg{"token": sign(k2, "k2")})
}
