package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

const (
	// minRSABits follows NIST SP 800-131A: shorter moduli are factorable
	// by a determined attacker.
	minRSABits = 2048
	// minSecret is the length of the SHA-256 output, the least RFC 7518
	// §3.2 allows for an HS256 key.
	minSecret = 32
)

func checkAlgorithm(alg Algorithm) error {
	switch alg {
	case HS256, RS256, ES256, EdDSA:
		return nil
	case "":
		return errors.New("jwt: Algorithm is not set")
	}
	return fmt.Errorf("jwt: algorithm %q is not supported; use HS256, RS256, ES256 or EdDSA", string(alg))
}

// checkSecret and checkRSA return errors without the "jwt: " prefix, for
// their callers to place.
func checkSecret(secret []byte) error {
	if len(secret) < minSecret {
		return fmt.Errorf("HS256 secret is %d bytes, at least %d are required", len(secret), minSecret)
	}
	return nil
}

// parsePublicKeyPEM reads the first PEM block of data as a public key for
// alg; a certificate chain thus yields its leaf's key.
func parsePublicKeyPEM(alg Algorithm, data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("jwt: PublicKeyPEM holds no PEM block")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("jwt: PublicKeyPEM holds a %s; give the public key", block.Type)
		}
		return nil, fmt.Errorf("jwt: PublicKeyPEM holds a %q block, not PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt: bad %s block in PublicKeyPEM: %v", block.Type, err)
	}
	return checkPublicKey(alg, pub)
}

// checkPublicKey returns pub if it is a sound key for alg.
func checkPublicKey(alg Algorithm, pub any) (any, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg == RS256 {
			if err := checkRSA(k); err != nil {
				return nil, fmt.Errorf("jwt: %v", err)
			}
			return k, nil
		}
	case *ecdsa.PublicKey:
		if alg == ES256 {
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("jwt: ES256 needs a P-256 key, not %s", k.Params().Name)
			}
			return k, nil
		}
	case ed25519.PublicKey:
		if alg == EdDSA {
			// ed25519.Verify panics on a key of another length.
			if len(k) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("jwt: Ed25519 key is %d bytes, not %d", len(k), ed25519.PublicKeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("jwt: %s needs %s, not %s", alg, keyKind(alg), keyName(pub))
}

func checkRSA(k *rsa.PublicKey) error {
	if n := k.N.BitLen(); n < minRSABits {
		return fmt.Errorf("RSA key is %d bits, at least %d are required", n, minRSABits)
	}
	if k.E < 3 || k.E%2 == 0 {
		return fmt.Errorf("RSA key has an invalid public exponent %d", k.E)
	}
	return nil
}

// keyKind describes the key alg needs, for error messages.
func keyKind(alg Algorithm) string {
	switch alg {
	case HS256:
		return "a secret"
	case RS256:
		return "an RSA key"
	case ES256:
		return "an ECDSA P-256 key"
	case EdDSA:
		return "an Ed25519 key"
	}
	return "no key"
}

// keyName describes a key the caller gave, for error messages.
func keyName(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "an RSA public key"
	case *rsa.PrivateKey:
		return "an RSA private key"
	case *ecdsa.PublicKey:
		return "an ECDSA public key"
	case *ecdsa.PrivateKey:
		return "an ECDSA private key"
	case ed25519.PublicKey:
		return "an Ed25519 public key"
	case ed25519.PrivateKey:
		return "an Ed25519 private key"
	case []byte:
		return "a secret"
	case nil:
		return "nil"
	}
	return fmt.Sprintf("a %T", key)
}

// verifySignature reports whether sig signs input under key, whose type
// NewVerifier has matched to alg.
func verifySignature(alg Algorithm, key any, input string, sig []byte) bool {
	switch alg {
	case HS256:
		mac := hmac.New(sha256.New, key.([]byte))
		mac.Write([]byte(input))
		return hmac.Equal(sig, mac.Sum(nil))
	case RS256:
		digest := sha256.Sum256([]byte(input))
		return rsa.VerifyPKCS1v15(key.(*rsa.PublicKey), crypto.SHA256, digest[:], sig) == nil
	case ES256:
		// RFC 7518 §3.4: R and S as 32-byte big-endian integers, not ASN.1.
		if len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256([]byte(input))
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(key.(*ecdsa.PublicKey), digest[:], r, s)
	case EdDSA:
		return ed25519.Verify(key.(ed25519.PublicKey), []byte(input), sig)
	}
	return false
}

// ParsePrivateKeyPEM parses a private key for Sign from PEM: a "PRIVATE
// KEY" (PKCS #8), "RSA PRIVATE KEY" (PKCS #1) or "EC PRIVATE KEY" (SEC 1)
// block. An "EC PARAMETERS" block before the key, as openssl ecparam
// writes, is skipped. It returns an *rsa.PrivateKey, an *ecdsa.PrivateKey
// or an ed25519.PrivateKey. Encrypted keys are not supported.
func ParsePrivateKeyPEM(data []byte) (any, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("jwt: no private key PEM block found")
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if _, ok := block.Headers["DEK-Info"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("jwt: the private key is encrypted; decrypt it first")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("jwt: PEM block %q is not PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("jwt: bad %s block: %v", block.Type, err)
		}
		switch key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return key, nil
		}
		return nil, fmt.Errorf("jwt: private keys of type %T are not supported", key)
	}
}
