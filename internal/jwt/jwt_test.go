package jwt

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	claims := map[string]any{
		"sub":      "user-42",
		"exp":      testNow.Add(time.Hour).Unix(),
		"nbf":      testNow.Add(-time.Minute).Unix(),
		"iat":      testNow.Add(-time.Minute).Unix(),
		"iss":      "https://auth.example",
		"aud":      []string{"gateway", "other"},
		"channels": []string{"news", "chat:42"},
		"info":     map[string]any{"name": "Ada"},
		"role":     "admin",
	}
	want := &Claims{
		Subject:   "user-42",
		ExpiresAt: testNow.Add(time.Hour).Unix(),
		NotBefore: testNow.Add(-time.Minute).Unix(),
		IssuedAt:  testNow.Add(-time.Minute).Unix(),
		Issuer:    "https://auth.example",
		Audience:  []string{"gateway", "other"},
		Channels:  []string{"news", "chat:42"},
		Info:      json.RawMessage(`{"name":"Ada"}`),
	}
	for _, alg := range algorithms {
		key := signingKey(alg, 0)
		sources := []struct {
			name string
			kid  string
			set  func(*VerifierConfig)
		}{
			{"key", "", func(c *VerifierConfig) { *c = keyConfig(t, alg, 0) }},
			{"key ignores kid", "whatever", func(c *VerifierConfig) { *c = keyConfig(t, alg, 0) }},
			{"jwks sole key", "", func(c *VerifierConfig) { c.JWKS = jwks(t, jwkOf(t, "", key)) }},
			{"jwks by kid", "k0", func(c *VerifierConfig) {
				c.JWKS = jwks(t, jwkOf(t, "k1", signingKey(alg, 1)), jwkOf(t, "k0", key))
			}},
		}
		if alg != HS256 {
			sources = append(sources, struct {
				name string
				kid  string
				set  func(*VerifierConfig)
			}{"certificate", "", func(c *VerifierConfig) { c.PublicKeyPEM = pemCertificate(t, key) }})
		}
		for _, src := range sources {
			t.Run(string(alg)+"/"+src.name, func(t *testing.T) {
				cfg := VerifierConfig{Algorithm: alg, Now: fixedNow}
				src.set(&cfg)
				cfg.Issuer, cfg.Audience = "https://auth.example", "gateway"
				v := mustVerifier(t, cfg)
				tok := mustSign(t, alg, key, src.kid, claims)
				got, err := v.Verify(tok)
				if err != nil {
					t.Fatal(err)
				}
				if got.Raw["role"] == nil || string(got.Raw["role"]) != `"admin"` {
					t.Errorf("Raw[role] = %s", got.Raw["role"])
				}
				got.Raw = nil
				if !reflect.DeepEqual(got, want) {
					t.Errorf("claims:\n got %+v\nwant %+v", got, want)
				}
			})
		}
	}
}

func TestClaimsDecoding(t *testing.T) {
	v := mustVerifier(t, keyConfig(t, HS256, 0))
	for _, tc := range []struct {
		name    string
		payload string
		check   func(*Claims) bool
	}{
		{"empty", `{}`, func(c *Claims) bool {
			return c.ExpiresAt == 0 && c.Audience == nil && c.Info == nil && len(c.Raw) == 0
		}},
		{"aud string", `{"aud":"gateway"}`, func(c *Claims) bool { return reflect.DeepEqual(c.Audience, []string{"gateway"}) }},
		{"aud array", `{"aud":["a","b"]}`, func(c *Claims) bool { return reflect.DeepEqual(c.Audience, []string{"a", "b"}) }},
		{"float exp truncated", `{"exp":1.7999999999e9}`, func(c *Claims) bool { return c.ExpiresAt == 1799999999 }},
		{"exponent exp", `{"exp":2e9}`, func(c *Claims) bool { return c.ExpiresAt == 2000000000 }},
		{"negative iat", `{"iat":-1.5}`, func(c *Claims) bool { return c.IssuedAt == -1 }},
		{"huge exp", `{"exp":9223372036854775807}`, func(c *Claims) bool { return c.ExpiresAt == 1<<63-1 }},
		{"channel", `{"channel":"room:1"}`, func(c *Claims) bool { return c.Channel == "room:1" }},
		{"info scalar", `{"info":42}`, func(c *Claims) bool { return string(c.Info) == "42" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(hsToken(`{"alg":"HS256"}`, tc.payload, secrets[0]))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected claims %+v", c)
			}
		})
	}
}

// tamper flips a bit of the first character of segment i, which unlike
// the last character carries no padding bits.
func tamper(tok string, i int) string {
	segs := strings.Split(tok, ".")
	b := []byte(segs[i])
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	segs[i] = string(b)
	return strings.Join(segs, ".")
}

func TestRefusals(t *testing.T) {
	hs, rs, es := keyConfig(t, HS256, 0), keyConfig(t, RS256, 0), keyConfig(t, ES256, 0)
	rsaPEM := rs.PublicKeyPEM
	sec := secrets[0]
	at := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	hsSigned := func(claims map[string]any) string { return mustSign(t, HS256, sec, "", claims) }
	withLeeway := hs
	withLeeway.Leeway = time.Minute
	withIss := hs
	withIss.Issuer, withIss.Audience = "iss-a", "aud-a"
	set := jwks(t, jwkOf(t, "a", signingKey(RS256, 0)), jwkOf(t, "b", signingKey(RS256, 1)))
	fromSet := VerifierConfig{Algorithm: RS256, JWKS: set, Now: fixedNow}
	good := hsSigned(nil)
	goodSegs := strings.Split(good, ".")

	tests := []struct {
		name  string
		cfg   VerifierConfig
		token string
		want  error // nil: accepted
	}{
		// Time.
		{"expired", hs, hsSigned(map[string]any{"exp": at(-time.Second)}), ErrExpired},
		{"expires now", hs, hsSigned(map[string]any{"exp": at(0)}), ErrExpired},
		{"exp 0 is 1970", hs, hsSigned(map[string]any{"exp": 0}), ErrExpired},
		{"expires in a second", hs, hsSigned(map[string]any{"exp": at(time.Second)}), nil},
		{"expired within leeway", withLeeway, hsSigned(map[string]any{"exp": at(-59 * time.Second)}), nil},
		{"expired beyond leeway", withLeeway, hsSigned(map[string]any{"exp": at(-time.Minute)}), ErrExpired},
		{"nbf in the future", hs, hsSigned(map[string]any{"nbf": at(time.Second)}), ErrNotYetValid},
		{"nbf now", hs, hsSigned(map[string]any{"nbf": at(0)}), nil},
		{"nbf within leeway", withLeeway, hsSigned(map[string]any{"nbf": at(time.Minute)}), nil},
		{"nbf beyond leeway", withLeeway, hsSigned(map[string]any{"nbf": at(time.Minute + time.Second)}), ErrNotYetValid},
		{"huge nbf", hs, hsSigned(map[string]any{"nbf": int64(1<<63 - 1)}), ErrNotYetValid},

		// Signature and key.
		{"tampered payload HS256", hs, goodSegs[0] + "." + enc([]byte(`{"sub":"admin"}`)) + "." + goodSegs[2], ErrSignature},
		{"tampered signature HS256", hs, tamper(good, 2), ErrSignature},
		{"tampered header HS256", hs, enc([]byte(`{"alg":"HS256","kid":"x"}`)) + "." + goodSegs[1] + "." + goodSegs[2], ErrSignature},
		{"empty signature", hs, goodSegs[0] + "." + goodSegs[1] + ".", ErrSignature},
		{"wrong secret", hs, mustSign(t, HS256, secrets[1], "", nil), ErrSignature},
		{"wrong RSA key", rs, mustSign(t, RS256, signingKey(RS256, 1), "", nil), ErrSignature},
		{"wrong EC key", es, mustSign(t, ES256, signingKey(ES256, 1), "", nil), ErrSignature},
		{"wrong Ed25519 key", keyConfig(t, EdDSA, 0), mustSign(t, EdDSA, signingKey(EdDSA, 1), "", nil), ErrSignature},
		{"ES256 ASN.1 signature", es, es256ASN1(t), ErrSignature},

		// Algorithm.
		{"alg none, empty signature", hs, rawToken(`{"alg":"none","typ":"JWT"}`, `{"sub":"x"}`, nil), ErrAlgorithm},
		{"alg none, with signature", hs, rawToken(`{"alg":"none"}`, `{"sub":"x"}`, []byte("sig")), ErrAlgorithm},
		{"alg NONE", rs, rawToken(`{"alg":"NONE"}`, `{}`, nil), ErrAlgorithm},
		{"alg none, HMACed", hs, hsToken(`{"alg":"none"}`, `{}`, sec), ErrAlgorithm},
		{"HS256 token to RS256", rs, good, ErrAlgorithm},
		{"ES256 token to RS256", rs, mustSign(t, ES256, signingKey(ES256, 0), "", nil), ErrAlgorithm},
		{"RS256 token to HS256", hs, mustSign(t, RS256, signingKey(RS256, 0), "", nil), ErrAlgorithm},
		{"alg case differs", hs, hsToken(`{"alg":"hs256"}`, `{}`, sec), ErrAlgorithm},
		// The classic confusion: the RSA public key, which is public, used
		// as an HMAC secret in the hope the verifier does the same.
		{"key confusion", rs, mustSign(t, HS256, rsaPEM, "", map[string]any{"sub": "admin"}), ErrAlgorithm},
		{"key confusion, JWKS", fromSet, mustSign(t, HS256, rsaPEM, "a", nil), ErrAlgorithm},

		// Key selection.
		{"kid a", fromSet, mustSign(t, RS256, signingKey(RS256, 0), "a", nil), nil},
		{"kid b", fromSet, mustSign(t, RS256, signingKey(RS256, 1), "b", nil), nil},
		{"kid swapped", fromSet, mustSign(t, RS256, signingKey(RS256, 1), "a", nil), ErrSignature},
		{"unknown kid", fromSet, mustSign(t, RS256, signingKey(RS256, 0), "c", nil), ErrUnknownKey},
		{"no kid, two keys", fromSet, mustSign(t, RS256, signingKey(RS256, 0), "", nil), ErrUnknownKey},

		// Form.
		{"empty", hs, "", ErrMalformed},
		{"two segments", hs, goodSegs[0] + "." + goodSegs[1], ErrMalformed},
		{"four segments", hs, good + "." + goodSegs[2], ErrMalformed},
		{"padding", hs, padded(good), ErrMalformed},
		{"standard alphabet", hs, stdAlphabet(t, hsToken(`{"alg":"HS256"}`, `{"s":"???"}`, sec)), ErrMalformed},
		{"bad base64", hs, goodSegs[0] + ".!!!." + goodSegs[2], ErrMalformed},
		{"newline in segment", hs, goodSegs[0][:4] + "\n" + goodSegs[0][4:] + "." + goodSegs[1] + "." + goodSegs[2], ErrMalformed},
		{"non-zero trailing bits", hs, goodSegs[0] + "." + goodSegs[1] + "." + goodSegs[2][:42] + "D", ErrMalformed},
		{"space after", hs, good + " ", ErrMalformed},
		{"header array", hs, hsToken(`["HS256"]`, `{}`, sec), ErrMalformed},
		{"header null", hs, hsToken(`null`, `{}`, sec), ErrMalformed},
		{"header string", hs, hsToken(`"HS256"`, `{}`, sec), ErrMalformed},
		{"header not JSON", hs, hsToken(`{alg:HS256}`, `{}`, sec), ErrMalformed},
		{"header trailing data", hs, hsToken(`{"alg":"HS256"}x`, `{}`, sec), ErrMalformed},
		{"header empty", hs, hsToken(``, `{}`, sec), ErrMalformed},
		{"no alg", hs, hsToken(`{"typ":"JWT"}`, `{}`, sec), ErrMalformed},
		{"alg not a string", hs, hsToken(`{"alg":["HS256"]}`, `{}`, sec), ErrMalformed},
		{"alg null", hs, hsToken(`{"alg":null}`, `{}`, sec), ErrMalformed},
		{"typ jwt", hs, hsToken(`{"alg":"HS256","typ":"jwt"}`, `{}`, sec), nil},
		{"typ other", hs, hsToken(`{"alg":"HS256","typ":"JWE"}`, `{}`, sec), ErrMalformed},
		{"typ not a string", hs, hsToken(`{"alg":"HS256","typ":1}`, `{}`, sec), ErrMalformed},
		{"crit", hs, hsToken(`{"alg":"HS256","crit":["exp"],"exp":1}`, `{}`, sec), ErrMalformed},
		{"kid not a string", fromSet, rawToken(`{"alg":"RS256","kid":1}`, `{}`, nil), ErrMalformed},
		{"payload array", hs, hsToken(`{"alg":"HS256"}`, `[]`, sec), ErrMalformed},
		{"payload null", hs, hsToken(`{"alg":"HS256"}`, `null`, sec), ErrMalformed},
		{"payload number", hs, hsToken(`{"alg":"HS256"}`, `1`, sec), ErrMalformed},
		{"huge token", hs, hsToken(`{"alg":"HS256"}`, `{"pad":"`+strings.Repeat("x", 6200)+`"}`, sec), ErrMalformed},

		// Claim types, checked once the signature holds.
		{"exp string", hs, hsSigned(map[string]any{"exp": "tomorrow"}), ErrMalformed},
		{"exp out of range", hs, hsToken(`{"alg":"HS256"}`, `{"exp":1e19}`, sec), ErrMalformed},
		{"exp null", hs, hsToken(`{"alg":"HS256"}`, `{"exp":null}`, sec), ErrMalformed},
		{"nbf null", hs, hsToken(`{"alg":"HS256"}`, `{"nbf":null}`, sec), ErrMalformed},
		{"nbf true", hs, hsToken(`{"alg":"HS256"}`, `{"nbf":true}`, sec), ErrMalformed},
		{"sub number", hs, hsSigned(map[string]any{"sub": 1}), ErrMalformed},
		{"aud number", hs, hsSigned(map[string]any{"aud": 1}), ErrMalformed},
		{"aud with null", hs, hsToken(`{"alg":"HS256"}`, `{"aud":["a",null]}`, sec), ErrMalformed},
		{"channels string", hs, hsSigned(map[string]any{"channels": "a"}), ErrMalformed},
		// The strict checks run in front of golang-jwt, before the signature.
		{"bad claim, bad signature", hs, tamper(hsSigned(map[string]any{"exp": "x"}), 2), ErrMalformed},

		// Issuer and audience.
		{"issuer and audience", withIss, hsSigned(map[string]any{"iss": "iss-a", "aud": "aud-a"}), nil},
		{"wrong issuer", withIss, hsSigned(map[string]any{"iss": "iss-b", "aud": "aud-a"}), ErrIssuer},
		{"no issuer", withIss, hsSigned(map[string]any{"aud": "aud-a"}), ErrIssuer},
		{"wrong audience", withIss, hsSigned(map[string]any{"iss": "iss-a", "aud": []string{"aud-b", "aud-c"}}), ErrAudience},
		{"no audience", withIss, hsSigned(map[string]any{"iss": "iss-a"}), ErrAudience},
		{"audience in list", withIss, hsSigned(map[string]any{"iss": "iss-a", "aud": []string{"aud-b", "aud-a"}}), nil},
		{"unchecked issuer", hs, hsSigned(map[string]any{"iss": "anyone"}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, tc.cfg)
			c, err := v.Verify(tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, %v; want %v", c, err, tc.want)
			}
			if c != nil {
				t.Errorf("claims returned with error: %+v", c)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "jwt: ") || strings.Count(msg, "jwt:") != 1 {
				t.Errorf("message %q should have one jwt: prefix", msg)
			}
		})
	}
}

// padded re-encodes each segment of tok with padding.
func padded(tok string) string {
	segs := strings.Split(tok, ".")
	for i, s := range segs {
		for len(s)%4 != 0 {
			s += "="
		}
		segs[i] = s
	}
	return strings.Join(segs, ".")
}

// stdAlphabet translates a valid token to the standard base64 alphabet.
// Its payload must have a '_' (any "???" in the JSON makes one), so that
// the payload segment, checked before the signature, changes.
func stdAlphabet(t *testing.T, tok string) string {
	if !strings.Contains(strings.Split(tok, ".")[1], "_") {
		t.Fatalf("payload of %s has no _", tok)
	}
	return strings.NewReplacer("-", "+", "_", "/").Replace(tok)
}

// es256ASN1 signs a token with an ASN.1 DER ECDSA signature, the form
// RFC 7518 §3.4 rules out.
func es256ASN1(t *testing.T) string {
	input := enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(`{}`))
	digest := sha256.Sum256([]byte(input))
	sig, err := ecdsa.SignASN1(rand.Reader, ecKeys()[0], digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

func TestErrorMessages(t *testing.T) {
	hs := keyConfig(t, HS256, 0)
	hs.Issuer = "me"
	rs := keyConfig(t, RS256, 0)
	for _, tc := range []struct {
		cfg   VerifierConfig
		token string
		want  string
	}{
		{hs, mustSign(t, HS256, secrets[0], "", map[string]any{"exp": testNow.Unix()}), "jwt: token expired at 2026-11-21T10:00:00Z"},
		{hs, mustSign(t, HS256, secrets[0], "", map[string]any{"nbf": testNow.Unix() + 60}), "jwt: token not valid before 2026-11-21T10:01:00Z"},
		{hs, mustSign(t, HS256, secrets[0], "", map[string]any{"iss": "you"}), `jwt: token issuer is "you", want "me"`},
		{rs, mustSign(t, HS256, secrets[0], "", nil), `jwt: token algorithm is "HS256", want RS256`},
		{rs, rawToken(`{"alg":"none"}`, `{}`, nil), `jwt: unsigned tokens (alg "none") are never accepted`},
		{rs, "a.b", "jwt: token does not have three dot-separated segments"},
		{hs, mustSign(t, HS256, secrets[1], "", nil), "jwt: token signature does not match"},
	} {
		_, err := mustVerifier(t, tc.cfg).Verify(tc.token)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

func TestVerifierCopiesSecret(t *testing.T) {
	secret := append([]byte(nil), secrets[0]...)
	v := mustVerifier(t, VerifierConfig{Algorithm: HS256, Secret: secret})
	tok := mustSign(t, HS256, secrets[0], "", nil)
	secret[0] ^= 1
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultClock(t *testing.T) {
	v := mustVerifier(t, VerifierConfig{Algorithm: HS256, Secret: secrets[0]})
	live := mustSign(t, HS256, secrets[0], "", map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(live); err != nil {
		t.Fatal(err)
	}
	dead := mustSign(t, HS256, secrets[0], "", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	if _, err := v.Verify(dead); !errors.Is(err, ErrExpired) {
		t.Fatalf("got %v, want ErrExpired", err)
	}
}
