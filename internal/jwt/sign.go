package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// Sign returns a compact token carrying claims, signed under alg with key,
// whose header names kid when kid is not empty. key is a secret []byte of
// at least 32 bytes for HS256, an *rsa.PrivateKey of at least 2048 bits
// for RS256, a P-256 *ecdsa.PrivateKey for ES256 and an
// ed25519.PrivateKey for EdDSA; ParsePrivateKeyPEM reads the last three.
// The claims are encoded with encoding/json, nil as {}; dates are unix
// seconds. Sign refuses to make a token over the 8 KiB Verify accepts.
func Sign(alg Algorithm, key any, kid string, claims map[string]any) (string, error) {
	if err := checkAlgorithm(alg); err != nil {
		return "", err
	}
	if err := checkSigningKey(alg, key); err != nil {
		return "", err
	}
	hdr, err := json.Marshal(struct {
		Alg Algorithm `json:"alg"`
		Kid string    `json:"kid,omitempty"`
		Typ string    `json:"typ"`
	}{alg, kid, "JWT"})
	if err != nil {
		return "", fmt.Errorf("jwt: encoding the header: %v", err)
	}
	if claims == nil {
		claims = map[string]any{} // not the "null" a nil map encodes to
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwt: claims are not encodable as JSON: %v", err)
	}
	input := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	sig, err := signInput(alg, key, input)
	if err != nil {
		return "", fmt.Errorf("jwt: signing with %s: %v", alg, err)
	}
	token := input + "." + b64.EncodeToString(sig)
	if len(token) > maxTokenSize {
		return "", fmt.Errorf("jwt: token would be %d bytes, over the limit of %d", len(token), maxTokenSize)
	}
	return token, nil
}

// checkSigningKey checks that key suits alg, as NewVerifier does for
// public keys, so that Sign makes no token a Verifier would refuse.
func checkSigningKey(alg Algorithm, key any) error {
	ok := false
	switch k := key.(type) {
	case []byte:
		if ok = alg == HS256; ok {
			if err := checkSecret(k); err != nil {
				return fmt.Errorf("jwt: %v", err)
			}
		}
	case *rsa.PrivateKey:
		if ok = alg == RS256; ok {
			if err := checkRSA(&k.PublicKey); err != nil {
				return fmt.Errorf("jwt: %v", err)
			}
		}
	case *ecdsa.PrivateKey:
		if ok = alg == ES256; ok && k.Curve != elliptic.P256() {
			return fmt.Errorf("jwt: ES256 needs a P-256 key, not %s", k.Params().Name)
		}
	case ed25519.PrivateKey:
		// ed25519.Sign panics on a key of another length.
		if ok = alg == EdDSA; ok && len(k) != ed25519.PrivateKeySize {
			return fmt.Errorf("jwt: Ed25519 private key is %d bytes, not %d", len(k), ed25519.PrivateKeySize)
		}
	}
	if !ok {
		return fmt.Errorf("jwt: %s signs with %s, not %s", alg, signingKind(alg), keyName(key))
	}
	return nil
}

// signingKind describes the key Sign needs for alg, for error messages.
func signingKind(alg Algorithm) string {
	switch alg {
	case HS256:
		return "a []byte secret"
	case RS256:
		return "an *rsa.PrivateKey"
	case ES256:
		return "an *ecdsa.PrivateKey"
	}
	return "an ed25519.PrivateKey"
}

func signInput(alg Algorithm, key any, input string) ([]byte, error) {
	switch alg {
	case HS256:
		mac := hmac.New(sha256.New, key.([]byte))
		mac.Write([]byte(input))
		return mac.Sum(nil), nil
	case RS256:
		digest := sha256.Sum256([]byte(input))
		return rsa.SignPKCS1v15(nil, key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	case ES256:
		digest := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}
	return ed25519.Sign(key.(ed25519.PrivateKey), []byte(input)), nil
}
