package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
	"github.com/duplexws/duplex/websocket"
)

// publicPEM encodes a public key as a PEM "PUBLIC KEY" block.
func publicPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func signWith(t testing.TB, alg jwt.Algorithm, key any, claims map[string]any) string {
	t.Helper()
	s, err := jwt.Sign(alg, key, "", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused dials, sends connect with tok and checks how the server closes.
func refused(t *testing.T, url, tok string, code websocket.StatusCode) string {
	t.Helper()
	c := dialClient(t, url, nil)
	c.sendConnect(tok)
	_, reason := expectClose(t, c, code, "")
	return reason
}

func TestConnectTokenRefused(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	b64 := base64.RawURLEncoding.EncodeToString
	now := time.Now()
	otherSecret := []byte("another-secret-another-secret-another-secret")
	noneToken := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"alice"}`)) + "."
	// A valid token with its header swapped for alg none.
	valid := token(t, map[string]any{"sub": "alice"})
	parts := strings.Split(valid, ".")
	noneSigned := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]

	cases := []struct {
		name   string
		tok    string
		code   websocket.StatusCode
		reason string // a part of the close reason
	}{
		{"expired", token(t, map[string]any{"sub": "alice", "exp": now.Add(-time.Minute).Unix()}), CloseTokenExpired, "token expired"},
		{"wrong signature", signWith(t, jwt.HS256, otherSecret, map[string]any{"sub": "alice"}), CloseUnauthorized, "signature"},
		{"alg none", noneToken, CloseUnauthorized, "unauthorized: "},
		{"alg none with the signature of a valid token", noneSigned, CloseUnauthorized, "unauthorized: "},
		{"tampered payload", parts[0] + "." + b64([]byte(`{"sub":"mallory"}`)) + "." + parts[2], CloseUnauthorized, "signature"},
		{"no sub", token(t, map[string]any{"exp": now.Add(time.Hour).Unix()}), CloseUnauthorized, "unauthorized: token has no sub claim"},
		{"not yet valid", token(t, map[string]any{"sub": "alice", "nbf": now.Add(time.Hour).Unix()}), CloseUnauthorized, "unauthorized: "},
		{"malformed", "not-a-jwt", CloseUnauthorized, "unauthorized: "},
		{"two segments", parts[0] + "." + parts[1], CloseUnauthorized, "unauthorized: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reason := refused(t, ts.url, tc.tok, tc.code)
			if !strings.Contains(reason, tc.reason) {
				t.Fatalf("close reason %q, want it to contain %q", reason, tc.reason)
			}
			if tc.code == CloseUnauthorized && !strings.HasPrefix(reason, "unauthorized: ") {
				t.Fatalf("close reason %q", reason)
			}
			if len(reason) > 123 {
				t.Fatalf("close reason of %d bytes", len(reason))
			}
		})
	}
	wantMetric(t, base, disconnects, `reason="token_expired"`, 1)
	wantMetric(t, base, disconnects, `reason="unauthorized"`, float64(len(cases)-1))
	wantMetric(t, base, connGauge, "", 0)
}

func TestConnectAnonymousRefused(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Auth.AllowAnonymous = false })
	reason := refused(t, ts.url, "", CloseUnauthorized)
	if reason != "unauthorized: anonymous connections are not allowed" {
		t.Fatalf("close reason %q", reason)
	}
	// An explicit empty token is anonymous too.
	c := dialClient(t, ts.url, nil)
	c.send("connect", msg{"token": ""})
	expectClose(t, c, CloseUnauthorized, "unauthorized: anonymous connections are not allowed")
	// Users still connect.
	_, res := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	if res.str("user") != "alice" {
		t.Fatalf("connect result %v", res)
	}
	wantMetric(t, ts.http.URL, disconnects, `reason="unauthorized"`, 2)
}

func TestConnectNoAlgorithm(t *testing.T) {
	// Without an algorithm configured, no token verifies.
	ts := newServer(t, func(cfg *Config) { cfg.Auth = Auth{AllowAnonymous: true} })
	reason := refused(t, ts.url, token(t, map[string]any{"sub": "alice"}), CloseUnauthorized)
	if !strings.Contains(reason, "no auth algorithm") {
		t.Fatalf("close reason %q", reason)
	}
	connected(t, ts.url, "")
}

var (
	rsaKeysOnce sync.Once
	rsaKeys     [2]*rsa.PrivateKey
)

// testRSAKeys returns two 2048-bit RSA keys, generated once per process.
func testRSAKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	rsaKeysOnce.Do(func() {
		for i := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[i] = k
		}
	})
	return rsaKeys[0], rsaKeys[1]
}

func TestAuthRS256(t *testing.T) {
	key, other := testRSAKeys(t)
	pemBytes := publicPEM(t, &key.PublicKey)
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth = Auth{Algorithm: "RS256", PublicKeyPEM: pemBytes, AllowAnonymous: true}
	})
	claims := map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}

	t.Run("valid", func(t *testing.T) {
		c, res := connected(t, ts.url, signWith(t, jwt.RS256, key, claims))
		if res.str("user") != "alice" {
			t.Fatalf("connect result %v", res)
		}
		c.ok("ping", nil)
	})
	t.Run("HS256 keyed with the public key PEM", func(t *testing.T) {
		// The classic algorithm confusion: the public key is public.
		forged := signWith(t, jwt.HS256, pemBytes, claims)
		reason := refused(t, ts.url, forged, CloseUnauthorized)
		if !strings.Contains(reason, "algorithm") {
			t.Fatalf("close reason %q", reason)
		}
	})
	t.Run("another key", func(t *testing.T) {
		reason := refused(t, ts.url, signWith(t, jwt.RS256, other, claims), CloseUnauthorized)
		if !strings.Contains(reason, "signature") {
			t.Fatalf("close reason %q", reason)
		}
	})
	t.Run("HS256 with the test secret", func(t *testing.T) {
		refused(t, ts.url, token(t, claims), CloseUnauthorized)
	})
	t.Run("refresh", func(t *testing.T) {
		c, _ := connected(t, ts.url, signWith(t, jwt.RS256, key, claims))
		later := time.Now().Add(2 * time.Hour).Unix()
		res := c.ok("refresh", msg{"token": signWith(t, jwt.RS256, key, map[string]any{"sub": "alice", "exp": later})})
		if int64(res.num("expires")) != later {
			t.Fatalf("refresh result %v", res)
		}
		if code := c.errCode("refresh", msg{"token": signWith(t, jwt.HS256, pemBytes, claims)}); code != 109 {
			t.Fatalf("refresh with a forged token: error %d, want 109", code)
		}
	})
}

func TestAuthES256(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := publicPEM(t, &key.PublicKey)
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth = Auth{Algorithm: "ES256", PublicKeyPEM: pemBytes}
	})
	claims := map[string]any{"sub": "carol"}
	_, res := connected(t, ts.url, signWith(t, jwt.ES256, key, claims))
	if res.str("user") != "carol" {
		t.Fatalf("connect result %v", res)
	}
	refused(t, ts.url, signWith(t, jwt.ES256, other, claims), CloseUnauthorized)
	refused(t, ts.url, signWith(t, jwt.HS256, pemBytes, claims), CloseUnauthorized)
	refused(t, ts.url, "", CloseUnauthorized) // anonymous not allowed here
}

func TestAuthEdDSA(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := publicPEM(t, pub)
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth = Auth{Algorithm: "EdDSA", PublicKeyPEM: pemBytes}
	})
	claims := map[string]any{"sub": "dave", "info": map[string]any{"name": "Dave"}}
	c, res := connected(t, ts.url, signWith(t, jwt.EdDSA, key, claims))
	if res.str("user") != "dave" {
		t.Fatalf("connect result %v", res)
	}
	c.ok("ping", nil)
	refused(t, ts.url, signWith(t, jwt.EdDSA, other, claims), CloseUnauthorized)
	refused(t, ts.url, signWith(t, jwt.HS256, pemBytes, claims), CloseUnauthorized)
}

func TestAuthIssuerAudience(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth.Issuer = "https://auth.example"
		cfg.Auth.Audience = "duplex"
	})
	good := map[string]any{"sub": "alice", "iss": "https://auth.example", "aud": []string{"other", "duplex"}}
	connected(t, ts.url, token(t, good))
	refused(t, ts.url, token(t, map[string]any{"sub": "alice", "iss": "https://evil.example", "aud": "duplex"}), CloseUnauthorized)
	refused(t, ts.url, token(t, map[string]any{"sub": "alice", "iss": "https://auth.example", "aud": "other"}), CloseUnauthorized)
	refused(t, ts.url, token(t, map[string]any{"sub": "alice"}), CloseUnauthorized)
}

func TestChannelTokens(t *testing.T) {
	ts := newServer(t, nil)
	hour := time.Now().Add(time.Hour).Unix()
	chanTok := func(sub, channel string, exp int64) string {
		claims := map[string]any{"sub": sub, "channel": channel}
		if exp != 0 {
			claims["exp"] = exp
		}
		return token(t, claims)
	}
	alice, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))

	refusals := []struct {
		name string
		tok  string
	}{
		{"no token", ""},
		{"token for another channel", chanTok("alice", "private:y", hour)},
		{"token for another user", chanTok("bob", "private:x", hour)},
		{"expired token", chanTok("alice", "private:x", time.Now().Add(-time.Minute).Unix())},
		{"token without channel", chanTok("alice", "", hour)},
		{"token signed with another secret", signWith(t, jwt.HS256, []byte("another-secret-another-secret-another-secret"), map[string]any{"sub": "alice", "channel": "private:x"})},
		{"garbage", "garbage"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			fields := msg{"channel": "private:x"}
			if tc.tok != "" {
				fields["token"] = tc.tok
			}
			r := alice.call("subscribe", fields)
			if code := r.obj("error").num("code"); code != 103 {
				t.Fatalf("subscribe: %v, want error 103", r)
			}
		})
	}
	// Nothing was left behind by the refusals.
	if code := alice.errCode("unsubscribe", msg{"channel": "private:x"}); code != 110 {
		t.Fatalf("unsubscribe after refusals: error %d, want 110", code)
	}
	// Not subscribed: publishing is refused too, as is reading history.
	if code := alice.errCode("publish", msg{"channel": "private:x", "data": 1}); code != 103 {
		t.Fatalf("publish without subscription: error %d, want 103", code)
	}
	if code := alice.errCode("history", msg{"channel": "private:x"}); code != 103 {
		t.Fatalf("history without subscription: error %d, want 103", code)
	}

	res := alice.ok("subscribe", msg{"channel": "private:x", "token": chanTok("alice", "private:x", hour)})
	if res["recoverable"] != true {
		t.Fatalf("subscribe result %v", res)
	}
	r, pushes := alice.callKeep("publish", msg{"channel": "private:x", "data": msg{"t": "secret"}})
	if r.obj("result").num("offset") != 1 {
		t.Fatalf("publish reply %v", r)
	}
	// The publisher is a subscriber: its publication comes before the reply.
	if pubs := pubPushes(pushes); len(pubs) != 1 || pubs[0].str("channel") != "private:x" ||
		pubs[0].obj("data").str("t") != "secret" || pubs[0].obj("info").str("user") != "alice" {
		t.Fatalf("pushes before the publish reply: %v", pushes)
	}
	h := alice.ok("history", msg{"channel": "private:x"})
	if pubs, _ := h["publications"].([]any); len(pubs) != 1 {
		t.Fatalf("history %v", h)
	}
	// A subscription on one channel grants nothing on another.
	if code := alice.errCode("publish", msg{"channel": "private:z", "data": 1}); code != 103 {
		t.Fatalf("publish in another private channel: error %d, want 103", code)
	}

	t.Run("channels claim", func(t *testing.T) {
		c, _ := connected(t, ts.url, token(t, map[string]any{"sub": "bob", "channels": []string{"private:x"}}))
		c.ok("subscribe", msg{"channel": "private:x"})
		c.ok("publish", msg{"channel": "private:x", "data": "from bob"})
		if code := c.errCode("subscribe", msg{"channel": "private:y"}); code != 103 {
			t.Fatalf("subscribe to a channel not in the claim: error %d, want 103", code)
		}
		// The claim does not stand in for the channel token of another user.
		c.ok("subscribe", msg{"channel": "private:y", "token": chanTok("bob", "private:y", hour)})
		// History of a channel in the claim is readable without subscribing.
		c.ok("unsubscribe", msg{"channel": "private:x"})
		if h := c.ok("history", msg{"channel": "private:x"}); h.num("offset") != 2 {
			t.Fatalf("history %v", h)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		c, _ := connected(t, ts.url, "")
		// "private" is not anonymous: not even a channel token for "" helps.
		if code := c.errCode("subscribe", msg{"channel": "private:x", "token": chanTok("", "private:x", hour)}); code != 103 {
			t.Fatalf("anonymous subscribe: error %d, want 103", code)
		}
	})
}

// TestPublishTokenWithAuthenticatedSubscribe checks a namespace where any
// user may subscribe but only a subscriber whose subscription was granted by
// a channel token (or the "channels" claim) may publish.
func TestPublishTokenWithAuthenticatedSubscribe(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Namespaces = append(cfg.Namespaces, Namespace{Name: "board", Subscribe: PermissionAuthenticated, Publish: PermissionToken})
	})
	plain, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	plain.ok("subscribe", msg{"channel": "board:x"})
	if code := plain.errCode("publish", msg{"channel": "board:x", "data": 1}); code != 103 {
		t.Fatalf("publish without a token grant: error %d, want 103", code)
	}
	granted, _ := connected(t, ts.url, token(t, map[string]any{"sub": "bob"}))
	granted.ok("subscribe", msg{"channel": "board:x", "token": token(t, map[string]any{"sub": "bob", "channel": "board:x"})})
	granted.ok("publish", msg{"channel": "board:x", "data": 2})
	claim, _ := connected(t, ts.url, token(t, map[string]any{"sub": "carol", "channels": []string{"board:x"}}))
	claim.ok("subscribe", msg{"channel": "board:x"})
	claim.ok("publish", msg{"channel": "board:x", "data": 3})
}

func TestRefresh(t *testing.T) {
	ts := newServer(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	c, res := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "exp": exp}))
	if int64(res.num("expires")) != exp {
		t.Fatalf("connect result %v", res)
	}
	later := time.Now().Add(2 * time.Hour).Unix()
	r := c.ok("refresh", msg{"token": token(t, map[string]any{"sub": "alice", "exp": later})})
	if int64(r.num("expires")) != later {
		t.Fatalf("refresh result %v, want expires %d", r, later)
	}
	for _, tc := range []struct {
		name string
		tok  any
		code int
	}{
		{"another user", token(t, map[string]any{"sub": "bob", "exp": later}), 109},
		{"no sub", token(t, map[string]any{"exp": later}), 109},
		{"invalid", "garbage", 109},
		{"wrong secret", signWith(t, jwt.HS256, []byte("another-secret-another-secret-another-secret"), map[string]any{"sub": "alice"}), 109},
		{"expired", token(t, map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}), 109},
		{"missing", nil, 107},
		{"empty", "", 107},
	} {
		fields := msg{}
		if tc.tok != nil {
			fields["token"] = tc.tok
		}
		if code := c.errCode("refresh", fields); code != tc.code {
			t.Errorf("refresh %s: error %d, want %d", tc.name, code, tc.code)
		}
	}
	// The connection is as it was.
	c.ok("ping", nil)
	// A token without exp: the connection no longer expires.
	r = c.ok("refresh", msg{"token": token(t, map[string]any{"sub": "alice"})})
	if r["expires"] != float64(0) {
		t.Fatalf("refresh result %v, want expires 0", r)
	}

	t.Run("anonymous", func(t *testing.T) {
		a, _ := connected(t, ts.url, "")
		if code := a.errCode("refresh", msg{"token": token(t, map[string]any{"sub": "alice"})}); code != 109 {
			t.Fatalf("anonymous refresh with a user token: error %d, want 109", code)
		}
	})
	t.Run("before connect", func(t *testing.T) {
		b := dialClient(t, ts.url, nil)
		if code := b.errCode("refresh", msg{"token": token(t, map[string]any{"sub": "alice"})}); code != 101 {
			t.Fatalf("refresh before connect: error %d, want 101", code)
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	ts := newServer(t, nil)
	base := ts.http.URL
	// exp is in whole seconds: these tokens expire 1 to 2 s from now.
	exp := time.Now().Add(2 * time.Second).Unix()
	expiry := time.Unix(exp, 0)
	lazy, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "exp": exp}))
	lazy.ok("subscribe", msg{"channel": "chat:room"})
	diligent, _ := connected(t, ts.url, token(t, map[string]any{"sub": "alice", "exp": exp}))
	res := diligent.ok("refresh", msg{"token": token(t, map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})})
	if res.num("expires") == 0 {
		t.Fatalf("refresh result %v", res)
	}

	expectClose(t, lazy, CloseTokenExpired, "token expired")
	if now := time.Now(); now.Before(expiry) {
		t.Fatalf("closed at %v, before the expiry %v", now, expiry)
	}
	wantMetric(t, base, disconnects, `reason="token_expired"`, 1)
	// Past the original expiry, the refreshed connection is still open.
	time.Sleep(time.Until(expiry.Add(300 * time.Millisecond)))
	diligent.ok("ping", nil)
	// And the expired one left its channel.
	waitFor(t, "the expired connection to leave chat:room", func() bool {
		st, body := apiPost(t, base, "presence_stats", msg{"channel": "chat:room"}, nil)
		if st != http.StatusOK {
			t.Fatalf("presence_stats: %d %v", st, body)
		}
		return body.num("clients") == 0
	})
}

func TestOrigin(t *testing.T) {
	evil := http.Header{"Origin": {"http://evil.example"}}
	dial := func(url string, h http.Header) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPHeader: h})
		if conn != nil {
			conn.CloseNow()
		}
		return resp, err
	}
	t.Run("refused", func(t *testing.T) {
		ts := newServer(t, nil)
		resp, err := dial(ts.url, evil)
		if err == nil {
			t.Fatal("dial from a foreign origin succeeded")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial from a foreign origin: %v, response %v", err, resp)
		}
		// The gateway's own origin, and no origin at all, are fine.
		if _, err := dial(ts.url, http.Header{"Origin": {ts.http.URL}}); err != nil {
			t.Fatalf("same origin: %v", err)
		}
		if _, err := dial(ts.url, nil); err != nil {
			t.Fatalf("no origin: %v", err)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		ts := newServer(t, func(cfg *Config) { cfg.OriginPatterns = []string{"*.example"} })
		if _, err := dial(ts.url, evil); err != nil {
			t.Fatalf("dial from an allowed origin: %v", err)
		}
		resp, err := dial(ts.url, http.Header{"Origin": {"http://evil.test"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial from an origin outside the patterns: %v, response %v", err, resp)
		}
	})
}

func TestHookAuthenticate(t *testing.T) {
	type call struct {
		token  string
		cookie string
	}
	calls := make(chan call, 10)
	ts := newServer(t, func(cfg *Config) {
		cfg.Auth.AllowAnonymous = false
		cfg.Hooks.Authenticate = func(ctx context.Context, tok string, h http.Header) (*Credentials, error) {
			var cookie string
			if c, err := (&http.Request{Header: h}).Cookie("session"); err == nil {
				cookie = c.Value
			}
			calls <- call{tok, cookie}
			switch tok {
			case "bad":
				return nil, errors.New("no such session")
			case "short":
				return &Credentials{User: "hooked", ExpiresAt: time.Now().Add(time.Hour)}, nil
			}
			return &Credentials{User: "hooked", Info: json.RawMessage(`{"via":"hook"}`), Channels: []string{"private:h"}}, nil
		}
	})
	c := dialClient(t, ts.url, &websocket.DialOptions{
		Subprotocols: []string{Subprotocol},
		HTTPHeader:   http.Header{"Cookie": {"session=s3cr3t"}},
	})
	// Not a JWT at all, and anonymous is off: the hook decides alone.
	res := c.ok("connect", msg{"token": "opaque"})
	if res.str("user") != "hooked" {
		t.Fatalf("connect result %v", res)
	}
	if got := <-calls; got != (call{"opaque", "s3cr3t"}) {
		t.Fatalf("hook called with %+v", got)
	}
	// The credentials' channels and info apply.
	c.ok("subscribe", msg{"channel": "private:h"})
	r0, pushes := c.callKeep("publish", msg{"channel": "private:h", "data": 1})
	if r0.obj("error") != nil {
		t.Fatalf("publish reply %v", r0)
	}
	if pubs := pubPushes(pushes); len(pubs) != 1 || pubs[0].obj("info").str("user") != "hooked" || pubs[0].obj("info").obj("info").str("via") != "hook" {
		t.Fatalf("pushes %v", pushes)
	}
	// A JWT that would verify is not looked at: the hook is asked.
	anon, res := connected(t, ts.url, "")
	if res.str("user") != "hooked" {
		t.Fatalf("connect result %v", res)
	}
	<-calls
	// Refresh goes through the hook too, without the upgrade header.
	r := anon.ok("refresh", msg{"token": "short"})
	if r.num("expires") == 0 {
		t.Fatalf("refresh result %v", r)
	}
	if got := <-calls; got != (call{"short", ""}) {
		t.Fatalf("hook called with %+v", got)
	}
	if code := anon.errCode("refresh", msg{"token": "bad"}); code != 109 {
		t.Fatalf("refresh refused by the hook: error %d, want 109", code)
	}
	<-calls

	bad := dialClient(t, ts.url, nil)
	bad.sendConnect("bad")
	expectClose(t, bad, CloseUnauthorized, "unauthorized: no such session")
}

func TestHookValidatePublish(t *testing.T) {
	reqs := make(chan PublishRequest, 10)
	ts := newServer(t, func(cfg *Config) {
		cfg.Hooks.ValidatePublish = func(ctx context.Context, p PublishRequest) error {
			reqs <- p
			switch {
			case strings.Contains(string(p.Data), "swear"):
				return &Error{Code: 103, Message: "no swearing"}
			case strings.Contains(string(p.Data), "huge"):
				return &Error{Code: 107, Message: "bad request: too long"}
			case strings.Contains(string(p.Data), "plain"):
				return errors.New("refused plainly")
			}
			return nil
		}
	})
	c, cres := connected(t, ts.url, token(t, map[string]any{"sub": "alice"}))
	// The subscriber sees what gets published.
	sub, _ := connected(t, ts.url, "")
	sub.ok("subscribe", msg{"channel": "chat:h"})

	r := c.call("publish", msg{"channel": "chat:h", "data": msg{"t": "swear"}})
	if e := r.obj("error"); e.num("code") != 103 || e.str("message") != "no swearing" {
		t.Fatalf("reply %v, want error 103 \"no swearing\"", r)
	}
	got := <-reqs
	if got.Channel != "chat:h" || string(got.Data) != `{"t":"swear"}` || got.User != "alice" || got.Client != cres.str("client") {
		t.Fatalf("hook called with %+v", got)
	}
	r = c.call("publish", msg{"channel": "chat:h", "data": "huge"})
	if e := r.obj("error"); e.num("code") != 107 || e.str("message") != "bad request: too long" {
		t.Fatalf("reply %v, want error 107", r)
	}
	<-reqs
	r = c.call("publish", msg{"channel": "chat:h", "data": "plain"})
	if e := r.obj("error"); e.num("code") != 103 || !strings.Contains(e.str("message"), "refused plainly") {
		t.Fatalf("reply %v, want error 103 with the hook's message", r)
	}
	<-reqs
	// Data is given to the hook compacted.
	c.ok("publish", msg{"channel": "chat:h", "data": json.RawMessage(`{ "t" : "fine" }`)})
	if got := <-reqs; string(got.Data) != `{"t":"fine"}` {
		t.Fatalf("hook got data %s", got.Data)
	}
	// Refused publications were not published: only the accepted one is.
	if m := sub.nextPush("pub"); m.obj("data").str("t") != "fine" || m.num("offset") != 1 {
		t.Fatalf("push %v", m)
	}
	// The backend API does not go through the hook.
	if st, body := apiPost(t, ts.http.URL, "publish", msg{"channel": "chat:h", "data": "swear"}, nil); st != http.StatusOK {
		t.Fatalf("API publish: %d %v", st, body)
	}
	select {
	case p := <-reqs:
		t.Fatalf("hook called for a backend publication: %+v", p)
	default:
	}
}

// TestHookAuthenticateNilCredentials: a hook that returns neither
// credentials nor an error refuses the connection rather than crash it.
func TestHookAuthenticateNilCredentials(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Hooks.Authenticate = func(ctx context.Context, tok string, h http.Header) (*Credentials, error) {
			return nil, nil
		}
	})
	c := dialClient(t, ts.url, nil)
	c.sendConnect("x")
	expectClose(t, c, CloseUnauthorized, "")
	wantMetric(t, ts.http.URL, connGauge, "", 0)
}
