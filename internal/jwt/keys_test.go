package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPublicKeyPEMForms(t *testing.T) {
	rsaKey := signingKey(RS256, 0).(*rsa.PrivateKey)
	for _, tc := range []struct {
		name string
		alg  Algorithm
		key  any
		pem  []byte
	}{
		{"RSA PKIX", RS256, rsaKey, pemPublic(t, &rsaKey.PublicKey)},
		{"RSA PKCS1", RS256, rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})},
		{"RSA certificate", RS256, rsaKey, pemCertificate(t, rsaKey)},
		{"RSA certificate chain", RS256, rsaKey, append(pemCertificate(t, rsaKey), pemCertificate(t, signingKey(ES256, 0))...)},
		{"EC certificate", ES256, signingKey(ES256, 0), pemCertificate(t, signingKey(ES256, 0))},
		{"Ed25519 certificate", EdDSA, signingKey(EdDSA, 0), pemCertificate(t, signingKey(EdDSA, 0))},
		{"text around", EdDSA, signingKey(EdDSA, 0), append([]byte("key:\n"), pemPublic(t, publicOf(signingKey(EdDSA, 0)))...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustVerifier(t, VerifierConfig{Algorithm: tc.alg, PublicKeyPEM: tc.pem})
			if _, err := v.Verify(mustSign(t, tc.alg, tc.key, "", nil)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	short := genRSA(1024)
	p384 := genEC(elliptic.P384())
	rsaPEM := pemPublic(t, publicOf(signingKey(RS256, 0)))
	ecPEM := pemPublic(t, publicOf(signingKey(ES256, 0)))
	edPEM := pemPublic(t, publicOf(signingKey(EdDSA, 0)))
	privPEM := pemPKCS8(t, signingKey(ES256, 0))
	for _, tc := range []struct {
		name string
		cfg  VerifierConfig
		want string // a part of the message
	}{
		{"no algorithm", VerifierConfig{Secret: secrets[0]}, "Algorithm is not set"},
		{"alg none", VerifierConfig{Algorithm: "none", Secret: secrets[0]}, `algorithm "none" is not supported`},
		{"HS512", VerifierConfig{Algorithm: "HS512", Secret: secrets[0]}, `"HS512" is not supported`},
		{"Algorithm and Algorithms", VerifierConfig{Algorithm: RS256, Algorithms: []Algorithm{PS256}, PublicKeyPEM: rsaPEM}, "not both"},
		{"HS256 in an allow-list", VerifierConfig{Algorithms: []Algorithm{RS256, HS256}, JWKS: jwks(t, jwkOf(t, "", signingKey(RS256, 0)))}, "HS256 cannot be allowed with other algorithms"},
		{"key fits one algorithm of two", VerifierConfig{Algorithms: []Algorithm{RS256, ES256}, PublicKeyPEM: rsaPEM}, "ES256 needs an ECDSA P-256 key, not an RSA public key"},
		{"P-256 key for ES384", VerifierConfig{Algorithm: ES384, PublicKeyPEM: ecPEM}, "ES384 needs a P-384 key, not P-256"},
		{"bad JWKS URL", VerifierConfig{Algorithm: RS256, JWKSURL: "file:///etc/keys"}, "not an http or https URL"},
		{"negative lifetime", VerifierConfig{Algorithm: HS256, Secret: secrets[0], MaxLifetime: -time.Second}, "is negative"},
		{"no key", VerifierConfig{Algorithm: HS256}, "HS256 needs a key: set Secret or JWKS"},
		{"no public key", VerifierConfig{Algorithm: ES256, Secret: []byte{}, PublicKeyPEM: []byte{}}, "ES256 needs a key: set PublicKeyPEM, JWKS or JWKSURL"},
		{"two keys", VerifierConfig{Algorithm: RS256, PublicKeyPEM: rsaPEM, JWKS: jwks(t, jwkOf(t, "", signingKey(RS256, 0)))}, "set only one of"},
		{"HS256 with PEM", VerifierConfig{Algorithm: HS256, PublicKeyPEM: rsaPEM}, "HS256 takes Secret or JWKS"},
		{"RS256 with secret", VerifierConfig{Algorithm: RS256, Secret: rsaPEM}, "Secret is for HS256"},
		{"empty secret", VerifierConfig{Algorithm: HS256, Secret: []byte{}}, "HS256 needs a key"},
		{"short secret", VerifierConfig{Algorithm: HS256, Secret: []byte("secret")}, "secret is 6 bytes"},
		{"short RSA key", VerifierConfig{Algorithm: RS256, PublicKeyPEM: pemPublic(t, &short.PublicKey)}, "RSA key is 1024 bits, at least 2048"},
		{"short RSA key, PKCS1", VerifierConfig{Algorithm: RS256, PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&short.PublicKey)})}, "1024 bits"},
		{"short RSA key, certificate", VerifierConfig{Algorithm: RS256, PublicKeyPEM: pemCertificate(t, short)}, "1024 bits"},
		{"short RSA key, JWKS", VerifierConfig{Algorithm: RS256, JWKS: jwks(t, jwkOf(t, "old", short))}, `JWKS key 0 (kid "old"): RSA key is 1024 bits`},
		{"EC key for RS256", VerifierConfig{Algorithm: RS256, PublicKeyPEM: ecPEM}, "RS256 needs an RSA key, not an ECDSA public key"},
		{"RSA key for ES256", VerifierConfig{Algorithm: ES256, PublicKeyPEM: rsaPEM}, "ES256 needs an ECDSA P-256 key, not an RSA public key"},
		{"Ed25519 key for ES256", VerifierConfig{Algorithm: ES256, PublicKeyPEM: edPEM}, "not an Ed25519 public key"},
		{"EC key for EdDSA", VerifierConfig{Algorithm: EdDSA, PublicKeyPEM: ecPEM}, "EdDSA needs an Ed25519 key"},
		{"P-384 key for ES256", VerifierConfig{Algorithm: ES256, PublicKeyPEM: pemPublic(t, &p384.PublicKey)}, "needs a P-256 key, not P-384"},
		{"private key PEM", VerifierConfig{Algorithm: ES256, PublicKeyPEM: privPEM}, "holds a PRIVATE KEY; give the public key"},
		{"other PEM", VerifierConfig{Algorithm: ES256, PublicKeyPEM: []byte("-----BEGIN FOO-----\n-----END FOO-----\n")}, `holds a "FOO" block`},
		{"not PEM", VerifierConfig{Algorithm: ES256, PublicKeyPEM: []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")}, "no PEM block"},
		{"bad DER", VerifierConfig{Algorithm: ES256, PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})}, "bad PUBLIC KEY block in PublicKeyPEM"},
		{"negative leeway", VerifierConfig{Algorithm: HS256, Secret: secrets[0], Leeway: -time.Second}, "Leeway (-1s) or MaxLifetime (0s) is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.cfg)
			if err == nil {
				t.Fatalf("accepted: %+v", v)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "jwt: ") || strings.Count(msg, "jwt:") != 1 {
				t.Errorf("error %q, want one jwt: prefix and %q", msg, tc.want)
			}
		})
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	rsaKey := signingKey(RS256, 0).(*rsa.PrivateKey)
	ecKey := signingKey(ES256, 0).(*ecdsa.PrivateKey)
	edKey := signingKey(EdDSA, 0).(ed25519.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")
	for _, tc := range []struct {
		name string
		alg  Algorithm
		pem  []byte
		want any
	}{
		{"RSA PKCS8", RS256, pemPKCS8(t, rsaKey), rsaKey},
		{"RSA PKCS1", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey},
		{"EC PKCS8", ES256, pemPKCS8(t, ecKey), ecKey},
		{"EC SEC1", ES256, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ecKey},
		{"EC SEC1 after parameters", ES256, append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), ecKey},
		{"Ed25519 PKCS8", EdDSA, pemPKCS8(t, edKey), edKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParsePrivateKeyPEM(tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			if k, ok := key.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !k.Equal(tc.want) {
				t.Fatalf("got %T, not the key encoded", key)
			}
			v := mustVerifier(t, keyConfig(t, tc.alg, 0))
			if _, err := v.Verify(mustSign(t, tc.alg, key, "", nil)); err != nil {
				t.Fatal(err)
			}
		})
	}

	for _, tc := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no private key PEM block"},
		{"parameters only", ecParams, "no private key PEM block"},
		{"public key", pemPublic(t, &ecKey.PublicKey), `"PUBLIC KEY" is not PRIVATE KEY`},
		{"encrypted PKCS8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		{"encrypted PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), "encrypted"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), "bad EC PRIVATE KEY block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParsePrivateKeyPEM(tc.pem)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "jwt: ") {
				t.Fatalf("got %T, %v; want an error with %q", key, err, tc.want)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		alg  Algorithm
		key  any
		want string
	}{
		{"alg none", "none", secrets[0], `algorithm "none" is not supported`},
		{"no alg", "", secrets[0], "Algorithm is not set"},
		{"short secret", HS256, []byte("secret"), "secret is 6 bytes"},
		{"string secret", HS256, string(secrets[0]), "HS256 signs with a []byte secret, not a string"},
		{"RSA key for HS256", HS256, signingKey(RS256, 0), "HS256 signs with a []byte secret, not an RSA private key"},
		{"public key", RS256, publicOf(signingKey(RS256, 0)), "RS256 signs with an *rsa.PrivateKey, not an RSA public key"},
		{"short RSA key", RS256, genRSA(1024), "RSA key is 1024 bits"},
		{"P-384 key", ES256, genEC(elliptic.P384()), "needs a P-256 key, not P-384"},
		{"Ed25519 for ES256", ES256, signingKey(EdDSA, 0), "ES256 signs with an *ecdsa.PrivateKey, not an Ed25519 private key"},
		{"Ed25519 seed", EdDSA, ed25519.PrivateKey(make([]byte, 32)), "Ed25519 private key is 32 bytes"},
		{"nil key", EdDSA, nil, "EdDSA signs with an ed25519.PrivateKey, not nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Sign(tc.alg, tc.key, "", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, %v; want an error with %q", tok, err, tc.want)
			}
		})
	}
	if _, err := Sign(HS256, secrets[0], "", map[string]any{"f": func() {}}); err == nil {
		t.Error("unencodable claims accepted")
	}
	if _, err := Sign(HS256, secrets[0], "", map[string]any{"pad": strings.Repeat("x", 7000)}); err == nil {
		t.Error("Sign made a token over 8 KiB")
	}
}

func TestSignHeader(t *testing.T) {
	for _, tc := range []struct {
		kid, want string
	}{
		{"", `{"alg":"EdDSA","typ":"JWT"}`},
		{"2026-11", `{"alg":"EdDSA","kid":"2026-11","typ":"JWT"}`},
	} {
		tok := mustSign(t, EdDSA, signingKey(EdDSA, 0), tc.kid, nil)
		segs := strings.Split(tok, ".")
		hdr, _ := b64.DecodeString(segs[0])
		payload, _ := b64.DecodeString(segs[1])
		if string(hdr) != tc.want || string(payload) != "{}" {
			t.Errorf("header %s, payload %s; want %s, {}", hdr, payload, tc.want)
		}
	}
	// Ed25519 and HMAC signatures are deterministic; ES256's are not.
	a := mustSign(t, EdDSA, signingKey(EdDSA, 0), "", map[string]any{"sub": "x"})
	b := mustSign(t, EdDSA, signingKey(EdDSA, 0), "", map[string]any{"sub": "x"})
	if !reflect.DeepEqual(a, b) {
		t.Errorf("EdDSA tokens differ: %s, %s", a, b)
	}
}
