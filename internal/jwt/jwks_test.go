package jwt

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

// with returns a copy of a JWK with members changed; a nil value removes one.
func with(jwk map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(jwk))
	for k, v := range jwk {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestJWKSSelection(t *testing.T) {
	rsa0, rsa1 := signingKey(RS256, 0), signingKey(RS256, 1)
	ec0, ed0 := signingKey(ES256, 0), signingKey(EdDSA, 0)
	for _, tc := range []struct {
		name string
		alg  Algorithm
		set  []map[string]any
		key  any // signs the token
		kid  string
		want error
	}{
		{"sole key without kid", RS256, []map[string]any{jwkOf(t, "", rsa0)}, rsa0, "", nil},
		{"sole key, token without kid", RS256, []map[string]any{jwkOf(t, "a", rsa0)}, rsa0, "", nil},
		{"sole key, other kid", RS256, []map[string]any{jwkOf(t, "a", rsa0)}, rsa0, "b", ErrUnknownKey},
		{"sole key without kid, token with kid", RS256, []map[string]any{jwkOf(t, "", rsa0)}, rsa0, "a", ErrUnknownKey},
		{"other types ignored", RS256, []map[string]any{jwkOf(t, "e", ec0), jwkOf(t, "d", ed0), jwkOf(t, "s", secrets[0]), jwkOf(t, "r", rsa0)}, rsa0, "", nil},
		{"kid of another type", RS256, []map[string]any{jwkOf(t, "e", ec0), jwkOf(t, "r", rsa0)}, rsa0, "e", ErrUnknownKey},
		{"encryption key ignored", RS256, []map[string]any{with(jwkOf(t, "a", rsa1), "use", "enc"), with(jwkOf(t, "b", rsa0), "use", "sig")}, rsa0, "", nil},
		{"key_ops without verify ignored", RS256, []map[string]any{with(jwkOf(t, "a", rsa1), "key_ops", []string{"encrypt"}), with(jwkOf(t, "b", rsa0), "key_ops", []string{"verify"})}, rsa0, "", nil},
		{"other alg ignored", RS256, []map[string]any{with(jwkOf(t, "a", rsa1), "alg", "PS256"), with(jwkOf(t, "b", rsa0), "alg", "RS256")}, rsa0, "", nil},
		{"P-384 ignored", ES256, []map[string]any{with(jwkOf(t, "a", ec0), "crv", "P-384"), jwkOf(t, "b", ec0)}, ec0, "b", nil},
		{"X25519 ignored", EdDSA, []map[string]any{with(jwkOf(t, "a", ed0), "crv", "X25519"), jwkOf(t, "b", ed0)}, ed0, "", nil},
		{"private members ignored", EdDSA, []map[string]any{with(jwkOf(t, "a", ed0), "d", enc(ed0.(ed25519.PrivateKey).Seed()))}, ed0, "a", nil},
		{"oct", HS256, []map[string]any{jwkOf(t, "s0", secrets[0]), jwkOf(t, "s1", secrets[1])}, secrets[1], "s1", nil},
		{"oct, wrong key", HS256, []map[string]any{jwkOf(t, "s0", secrets[0]), jwkOf(t, "s1", secrets[1])}, secrets[1], "s0", ErrSignature},
		{"RSA key in an HS256 set", HS256, []map[string]any{jwkOf(t, "r", rsa0), jwkOf(t, "s", secrets[0])}, secrets[0], "", nil},
		{"keys without kid unreachable", EdDSA, []map[string]any{jwkOf(t, "", ed0), jwkOf(t, "", signingKey(EdDSA, 1))}, ed0, "", ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, VerifierConfig{Algorithm: tc.alg, JWKS: jwks(t, tc.set...)})
			_, err := v.Verify(mustSign(t, tc.alg, tc.key, tc.kid, nil))
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestJWKSErrors(t *testing.T) {
	rsa0, ec0, ed0 := jwkOf(t, "a", signingKey(RS256, 0)), jwkOf(t, "a", signingKey(ES256, 0)), jwkOf(t, "a", signingKey(EdDSA, 0))
	for _, tc := range []struct {
		name string
		alg  Algorithm
		doc  string
		want string
	}{
		{"not JSON", RS256, `{`, "JWKS is not a JSON key set"},
		{"array", RS256, `[]`, "JWKS is not a JSON key set"},
		{"no keys", RS256, `{}`, `JWKS has no "keys" array`},
		{"empty", RS256, `{"keys":[]}`, "JWKS has no key for RS256"},
		{"only other types", RS256, string(jwks(t, ec0, ed0)), "JWKS has no key for RS256"},
		{"key not an object", RS256, `{"keys":[1]}`, "JWKS key 0 is malformed"},
		{"kid not a string", RS256, `{"keys":[{"kty":"RSA","kid":1}]}`, "JWKS key 0 is malformed"},
		{"duplicate kid", RS256, string(jwks(t, rsa0, rsa0)), `two RS256 keys with kid "a"`},
		{"RSA without n", RS256, string(jwks(t, with(rsa0, "n", nil))), `"n" is missing`},
		{"RSA n padded", RS256, string(jwks(t, with(rsa0, "n", rsa0["n"].(string)+"="))), `"n" is not unpadded base64url`},
		{"RSA e huge", RS256, string(jwks(t, with(rsa0, "e", enc(make([]byte, 9))))), `"e" is 9 bytes`},
		{"RSA e even", RS256, string(jwks(t, with(rsa0, "e", "AQAA"))), "invalid public exponent 65536"},
		{"EC x short", ES256, string(jwks(t, with(ec0, "x", enc(make([]byte, 31))))), `"x" is 31 bytes, not 32`},
		{"EC off curve", ES256, string(jwks(t, with(ec0, "y", enc(make([]byte, 32))))), "not on P-256"},
		{"OKP x short", EdDSA, string(jwks(t, with(ed0, "x", enc(make([]byte, 31))))), `"x" is 31 bytes, not 32`},
		{"oct short", HS256, string(jwks(t, jwkOf(t, "s", []byte("short")))), `JWKS key 0 (kid "s"): HS256 secret is 5 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{Algorithm: tc.alg, JWKS: []byte(tc.doc)})
			if err == nil {
				t.Fatalf("accepted: %+v", v)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Count(msg, "jwt:") != 1 {
				t.Errorf("error %q, want one jwt: prefix and %q", msg, tc.want)
			}
		})
	}
}
