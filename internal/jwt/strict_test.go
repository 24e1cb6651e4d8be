package jwt

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// macText MACs the exact text header.payload, line breaks included.
func macText(headerSeg, payloadSeg string) string {
	mac := hmac.New(sha256.New, secrets[0])
	mac.Write([]byte(headerSeg + "." + payloadSeg))
	return headerSeg + "." + payloadSeg + "." + enc(mac.Sum(nil))
}

// TestStricterThanGolangJWT keeps the differential cases: tokens, validly
// signed, that golang-jwt alone accepts with the options Verify gives it,
// and the checks in front of it refuse. Each case first proves that the
// library accepts it, so the case fails if one of our checks goes. (exp
// and nbf of the wrong type, which the library refuses as well, are in
// TestRefusals.)
func TestStricterThanGolangJWT(t *testing.T) {
	v := mustVerifier(t, keyConfig(t, HS256, 0))
	lib := gojwt.NewParser(gojwt.WithValidMethods([]string{"HS256"}), gojwt.WithStrictDecoding(), gojwt.WithTimeFunc(fixedNow))
	h := enc([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := enc([]byte(`{"sub":"user-1","exp":` + "1900000000" + `}`))
	good := macText(h, p)
	sig := strings.Split(good, ".")[2]
	for _, tc := range []struct{ name, token string }{
		{"unknown crit", hsToken(`{"alg":"HS256","crit":["x"],"x":1}`, `{}`, secrets[0])},
		{"line break in header", macText(h[:5]+"\n"+h[5:], p)},
		{"CRLF in payload", macText(h, p[:5]+"\r\n"+p[5:])},
		{"line break in signature", h + "." + p + "." + sig[:5] + "\n" + sig[5:]},
		{"payload null", hsToken(`{"alg":"HS256"}`, `null`, secrets[0])},
		{"sub a number", hsToken(`{"alg":"HS256"}`, `{"sub":42}`, secrets[0])},
		{"channels a string", hsToken(`{"alg":"HS256"}`, `{"sub":"u","channels":"admin"}`, secrets[0])},
		{"duplicate sub", hsToken(`{"alg":"HS256"}`, `{"sub":"admin","sub":"user-1"}`, secrets[0])},
		{"duplicate alg", hsToken(`{"alg":"none","alg":"HS256"}`, `{}`, secrets[0])},
		{"duplicate name in info", hsToken(`{"alg":"HS256"}`, `{"info":{"role":"admin","role":"user"}}`, secrets[0])},
		{"duplicate name in array of objects", hsToken(`{"alg":"HS256"}`, `{"x":[{"a":1,"a":2}]}`, secrets[0])},
		{"invalid UTF-8 in sub", hsToken(`{"alg":"HS256"}`, "{\"sub\":\"ad\xffmin\"}", secrets[0])},
		{"lone high surrogate", hsToken(`{"alg":"HS256"}`, `{"sub":"a\ud800"}`, secrets[0])},
		{"lone low surrogate", hsToken(`{"alg":"HS256"}`, `{"sub":"a\udc00b"}`, secrets[0])},
		{"reversed surrogates", hsToken(`{"alg":"HS256"}`, `{"sub":"\udc00\ud800"}`, secrets[0])},
		{"typ JWE", hsToken(`{"alg":"HS256","typ":"JWE"}`, `{}`, secrets[0])},
		{"kid a number", hsToken(`{"alg":"HS256","kid":7}`, `{}`, secrets[0])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := lib.Parse(tc.token, func(*gojwt.Token) (any, error) { return secrets[0], nil }); err != nil {
				t.Fatalf("golang-jwt refuses it too (%v): not a differential case", err)
			}
			c, err := v.Verify(tc.token)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %+v, %v; want ErrMalformed", c, err)
			}
		})
	}
	// Escapes that look like surrogates but are not are fine.
	for _, payload := range []string{`{"sub":"\ud83d\ude00"}`, `{"sub":"\\ud800"}`, `{"a":{"x":1},"b":{"x":2}}`, `{"a":[1,{"b":1},{"b":2}]}`} {
		if _, err := v.Verify(hsToken(`{"alg":"HS256"}`, payload, secrets[0])); err != nil {
			t.Errorf("%s refused: %v", payload, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	rsa0 := signingKey(RS256, 0)
	cfg := VerifierConfig{Algorithms: []Algorithm{RS256, PS256}, PublicKeyPEM: pemPublic(t, publicOf(rsa0)), Now: fixedNow}
	v := mustVerifier(t, cfg)
	for _, alg := range []Algorithm{RS256, PS256} {
		if _, err := v.Verify(mustSign(t, alg, rsa0, "", nil)); err != nil {
			t.Errorf("%s refused: %v", alg, err)
		}
	}
	for _, alg := range []Algorithm{RS384, PS512} {
		if _, err := v.Verify(mustSign(t, alg, rsa0, "", nil)); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("%s: got %v, want ErrAlgorithm", alg, err)
		}
	}
	// An RS256 signature relabelled PS256 is allowed by name only.
	segs := strings.Split(mustSign(t, RS256, rsa0, "", nil), ".")
	relabelled := enc([]byte(`{"alg":"PS256","typ":"JWT"}`)) + "." + segs[1] + "." + segs[2]
	if _, err := v.Verify(relabelled); !errors.Is(err, ErrSignature) {
		t.Errorf("relabelled: got %v, want ErrSignature", err)
	}

	// In a key set, a key whose "alg" is RS256 does not verify PS256.
	set := jwks(t, with(jwkOf(t, "a", rsa0), "alg", "RS256"))
	v = mustVerifier(t, VerifierConfig{Algorithms: []Algorithm{RS256, PS256}, JWKS: set, Now: fixedNow})
	if _, err := v.Verify(mustSign(t, RS256, rsa0, "a", nil)); err != nil {
		t.Errorf("RS256 refused: %v", err)
	}
	if _, err := v.Verify(mustSign(t, PS256, rsa0, "a", nil)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("PS256 with an RS256 key: got %v, want ErrUnknownKey", err)
	}
}

func TestTypes(t *testing.T) {
	plain := keyConfig(t, HS256, 0)
	access := plain
	access.Types = []string{"at+jwt"}
	for _, tc := range []struct {
		cfg  VerifierConfig
		typ  string // "" for none
		want error
	}{
		{plain, "", nil},
		{plain, "JWT", nil},
		{plain, "at+jwt", ErrMalformed},
		{access, "at+jwt", nil},
		{access, "AT+JWT", nil},
		{access, "application/at+jwt", nil},
		{access, "JWT", ErrMalformed},
		{access, "", ErrMalformed},
	} {
		hdr := `{"alg":"HS256"}`
		if tc.typ != "" {
			hdr = `{"alg":"HS256","typ":"` + tc.typ + `"}`
		}
		_, err := mustVerifier(t, tc.cfg).Verify(hsToken(hdr, `{}`, secrets[0]))
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("types %v, typ %q: got %v, want %v", tc.cfg.Types, tc.typ, err, tc.want)
		}
	}
}

func TestIssuedAtAndLifetime(t *testing.T) {
	at := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	iat := keyConfig(t, HS256, 0)
	iat.RequireIssuedAt, iat.Leeway = true, 5*time.Second
	life := keyConfig(t, HS256, 0)
	life.MaxLifetime = time.Hour
	for _, tc := range []struct {
		name   string
		cfg    VerifierConfig
		claims map[string]any
		want   error
	}{
		{"iat past", iat, map[string]any{"iat": at(-time.Hour)}, nil},
		{"iat within leeway", iat, map[string]any{"iat": at(5 * time.Second)}, nil},
		{"iat future", iat, map[string]any{"iat": at(6 * time.Second)}, ErrIssuedAt},
		{"no iat", iat, map[string]any{"sub": "u"}, ErrIssuedAt},
		{"iat unchecked by default", keyConfig(t, HS256, 0), map[string]any{"iat": at(time.Hour)}, nil},
		{"an hour from iat", life, map[string]any{"iat": at(-time.Minute), "exp": at(59 * time.Minute)}, nil},
		{"over an hour from iat", life, map[string]any{"iat": at(-time.Minute), "exp": at(59*time.Minute + time.Second)}, ErrLifetime},
		{"an hour from now without iat", life, map[string]any{"exp": at(time.Hour)}, nil},
		{"over an hour from now without iat", life, map[string]any{"exp": at(time.Hour + time.Second)}, ErrLifetime},
		{"no exp", life, map[string]any{"iat": at(0)}, ErrLifetime},
		{"expired beats lifetime", life, map[string]any{"iat": at(-3 * time.Hour), "exp": at(-time.Second)}, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustVerifier(t, tc.cfg).Verify(mustSign(t, HS256, secrets[0], "", tc.claims))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
