package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"
)

// testNow is the clock of the tests' Verifiers.
var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// Keys are generated once per test binary: RSA generation is slow, above
// all under the race detector.
var (
	rsaKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
		return [2]*rsa.PrivateKey{genRSA(2048), genRSA(2048)}
	})
	ecKeys = sync.OnceValue(func() [2]*ecdsa.PrivateKey {
		return [2]*ecdsa.PrivateKey{genEC(elliptic.P256()), genEC(elliptic.P256())}
	})
	edKeys = sync.OnceValue(func() [2]ed25519.PrivateKey {
		return [2]ed25519.PrivateKey{genEd(), genEd()}
	})
	secrets = [2][]byte{
		[]byte("0123456789abcdef0123456789abcdef"),
		[]byte("fedcba9876543210fedcba9876543210"),
	}
)

func genRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func genEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func genEd() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

var algorithms = []Algorithm{HS256, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA}

// The ES384 and ES512 keys, one each: those tests need no second key.
var (
	p384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return genEC(elliptic.P384()) })
	p521Key = sync.OnceValue(func() *ecdsa.PrivateKey { return genEC(elliptic.P521()) })
)

// signingKey returns the i'th (0 or 1) test key for alg, as Sign takes it.
func signingKey(alg Algorithm, i int) any {
	switch alg {
	case HS256:
		return secrets[i]
	case RS256, RS384, RS512, PS256, PS384, PS512:
		return rsaKeys()[i]
	case ES256:
		return ecKeys()[i]
	case ES384:
		if i == 0 {
			return p384Key()
		}
		return genEC(elliptic.P384())
	case ES512:
		if i == 0 {
			return p521Key()
		}
		return genEC(elliptic.P521())
	}
	return edKeys()[i]
}

// publicOf returns the verification key of a signing key.
func publicOf(key any) any {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return key
}

// keyConfig returns a VerifierConfig for the i'th key of alg, with the
// key as Secret for HS256 and as PKIX PEM otherwise.
func keyConfig(t testing.TB, alg Algorithm, i int) VerifierConfig {
	cfg := VerifierConfig{Algorithm: alg, Now: fixedNow}
	if alg == HS256 {
		cfg.Secret = secrets[i]
	} else {
		cfg.PublicKeyPEM = pemPublic(t, publicOf(signingKey(alg, i)))
	}
	return cfg
}

func pemPublic(t testing.TB, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func pemCertificate(t testing.TB, priv any) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "duplex test"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, publicOf(priv), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// pemPKCS8 encodes a private key as a PKCS #8 "PRIVATE KEY" block.
func pemPKCS8(t testing.TB, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf returns the public JWK of a signing key, with kid when not empty.
func jwkOf(t testing.TB, kid string, key any) map[string]any {
	m := map[string]any{}
	if kid != "" {
		m["kid"] = kid
	}
	switch k := publicOf(key).(type) {
	case []byte:
		m["kty"], m["k"] = "oct", enc(k)
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", enc(k.N.Bytes()), enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(b) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", k.Params().Name, enc(b[1:1+size]), enc(b[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", enc(k)
	default:
		t.Fatalf("no JWK for %T", k)
	}
	return m
}

func jwks(t testing.TB, keys ...map[string]any) []byte {
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustSign(t testing.TB, alg Algorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	tok, err := Sign(alg, key, kid, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustVerifier(t testing.TB, cfg VerifierConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawToken assembles a token from a header and payload given as JSON and
// a signature given as bytes, bypassing Sign's checks.
func rawToken(header, payload string, sig []byte) string {
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + enc(sig)
}

// hsToken MACs a header and payload given as JSON with secret, so that
// the tests can build validly signed tokens that Sign would not make.
func hsToken(header, payload string, secret []byte) string {
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + enc(mac.Sum(nil))
}
