package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// Sign returns a compact token carrying claims, signed under alg with key,
// whose header names kid when kid is not empty. key is a secret []byte of
// at least 32 bytes for HS256, an *rsa.PrivateKey of at least 2048 bits
// for the RS and PS algorithms, an *ecdsa.PrivateKey on the algorithm's
// curve for the ES ones and an ed25519.PrivateKey for EdDSA;
// ParsePrivateKeyPEM reads the last three. The claims are encoded with
// encoding/json, nil as {}; dates are unix seconds. Sign refuses to make a
// token over the 8 KiB Verify accepts.
func Sign(alg Algorithm, key any, kid string, claims map[string]any) (string, error) {
	if err := checkAlgorithm(alg); err != nil {
		return "", err
	}
	if err := checkSigningKey(alg, key); err != nil {
		return "", err
	}
	if claims == nil {
		claims = map[string]any{} // not the "null" a nil map encodes to
	}
	t := gojwt.NewWithClaims(gojwt.GetSigningMethod(string(alg)), gojwt.MapClaims(claims))
	if kid != "" {
		t.Header["kid"] = kid
	}
	token, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("jwt: signing with %s: %v", alg, err)
	}
	if len(token) > maxTokenSize {
		return "", fmt.Errorf("jwt: token would be %d bytes, over the limit of %d", len(token), maxTokenSize)
	}
	return token, nil
}

// checkSigningKey checks that key suits alg, as NewVerifier does for
// public keys, so that Sign makes no token a Verifier would refuse.
func checkSigningKey(alg Algorithm, key any) error {
	var pub any
	var fam string
	switch k := key.(type) {
	case []byte:
		if alg == HS256 {
			if err := checkSecret(k); err != nil {
				return fmt.Errorf("jwt: %v", err)
			}
			return nil
		}
	case *rsa.PrivateKey:
		pub, fam = &k.PublicKey, "RSA"
	case *ecdsa.PrivateKey:
		pub, fam = &k.PublicKey, "EC"
	case ed25519.PrivateKey:
		// ed25519.Sign panics on a key of another length.
		if alg == EdDSA && len(k) != ed25519.PrivateKeySize {
			return fmt.Errorf("jwt: Ed25519 private key is %d bytes, not %d", len(k), ed25519.PrivateKeySize)
		}
		pub, fam = k.Public(), "OKP"
	}
	if pub == nil || fam != family(alg) {
		return fmt.Errorf("jwt: %s signs with %s, not %s", alg, signingKind(alg), keyName(key))
	}
	if err := checkPublicKey(alg, pub); err != nil {
		return fmt.Errorf("jwt: %v", err)
	}
	return nil
}

// signingKind describes the key Sign needs for alg, for error messages.
func signingKind(alg Algorithm) string {
	switch family(alg) {
	case "oct":
		return "a []byte secret"
	case "RSA":
		return "an *rsa.PrivateKey"
	case "EC":
		return "an *ecdsa.PrivateKey"
	}
	return "an ed25519.PrivateKey"
}
