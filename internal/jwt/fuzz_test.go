package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Fuzz keys are derived from fixed strings, so that the committed corpus
// in testdata/fuzz/FuzzVerify can hold tokens that verify.
func fuzzEdKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("duplex jwt fuzz Ed25519"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func fuzzECKey(t testing.TB) *ecdsa.PrivateKey {
	d := sha256.Sum256([]byte("duplex jwt fuzz P-256"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fuzzVerifiers(t testing.TB) []*Verifier {
	ed, ec := fuzzEdKey(), fuzzECKey(t)
	return []*Verifier{
		mustVerifier(t, VerifierConfig{Algorithm: HS256, Secret: secrets[0], Now: fixedNow}),
		mustVerifier(t, VerifierConfig{Algorithm: HS256, JWKS: jwks(t, jwkOf(t, "a", secrets[0]), jwkOf(t, "b", secrets[1])), Now: fixedNow}),
		mustVerifier(t, VerifierConfig{Algorithm: EdDSA, PublicKeyPEM: pemPublic(t, ed.Public()), Now: fixedNow, Issuer: "iss", Audience: "aud"}),
		mustVerifier(t, VerifierConfig{Algorithm: EdDSA, JWKS: jwks(t, jwkOf(t, "a", ed), jwkOf(t, "b", edKeys()[0])), Now: fixedNow}),
		mustVerifier(t, VerifierConfig{Algorithm: ES256, PublicKeyPEM: pemPublic(t, &ec.PublicKey), Now: fixedNow}),
		mustVerifier(t, keyConfig(t, RS256, 0)),
	}
}

var sentinels = []error{ErrMalformed, ErrAlgorithm, ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrUnknownKey}

func FuzzVerify(f *testing.F) {
	vs := fuzzVerifiers(f)
	claims := map[string]any{
		"sub": "u", "exp": testNow.Unix() + 60, "iss": "iss", "aud": []string{"aud"},
		"channels": []string{"a"}, "info": map[string]any{"n": 1},
	}
	for _, alg := range algorithms {
		f.Add(mustSign(f, alg, signingKey(alg, 0), "", claims))
	}
	f.Add(mustSign(f, EdDSA, fuzzEdKey(), "a", claims))
	f.Add(mustSign(f, ES256, fuzzECKey(f), "", nil))
	f.Add(hsToken(`{"alg":"HS256","kid":"b"}`, `{"exp":1.5e9,"nbf":2e9,"aud":"x"}`, secrets[1]))
	f.Add(rawToken(`{"alg":"none"}`, `{"sub":"admin"}`, nil))

	f.Fuzz(func(t *testing.T, token string) {
		for i, v := range vs {
			c, err := v.Verify(token)
			if err != nil {
				if c != nil {
					t.Fatalf("verifier %d: claims with error %v", i, err)
				}
				if !isSentinel(err) {
					t.Fatalf("verifier %d: error %q wraps no sentinel", i, err)
				}
				continue
			}
			if len(token) > maxTokenSize {
				t.Fatalf("verifier %d accepted a %d-byte token", i, len(token))
			}
			again, err := v.Verify(token)
			if err != nil || !reflect.DeepEqual(c, again) {
				t.Fatalf("verifier %d: second Verify gave %+v, %v; first %+v", i, again, err, c)
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestFuzzCorpus checks that the committed corpus still does its job:
// files named valid-* hold tokens one of the fuzz verifiers accepts, so
// that fuzzing starts on the accepting paths; the rest hold tokens that
// all refuse.
func TestFuzzCorpus(t *testing.T) {
	vs := fuzzVerifiers(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join(dir, file.Name()))
		if err != nil {
			t.Fatal(err)
		}
		header, value, ok := strings.Cut(strings.TrimSpace(string(data)), "\n")
		token, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(value, "string("), ")"))
		if !ok || header != "go test fuzz v1" || err != nil {
			t.Fatalf("%s is not a corpus file of one string", file.Name())
		}
		accepted := 0
		for _, v := range vs {
			if _, err := v.Verify(token); err == nil {
				accepted++
			}
		}
		if valid := strings.HasPrefix(file.Name(), "valid-"); valid != (accepted > 0) {
			t.Errorf("%s: accepted by %d verifiers", file.Name(), accepted)
		}
	}
}
