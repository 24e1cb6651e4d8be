package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
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

// family is the kind of key an algorithm takes.
func family(alg Algorithm) string {
	switch alg {
	case HS256:
		return "oct"
	case RS256, RS384, RS512, PS256, PS384, PS512:
		return "RSA"
	case ES256, ES384, ES512:
		return "EC"
	case EdDSA:
		return "OKP"
	}
	return ""
}

// curve is the curve of an ES algorithm (RFC 7518 §3.4), nil for others.
func curve(alg Algorithm) elliptic.Curve {
	switch alg {
	case ES256:
		return elliptic.P256()
	case ES384:
		return elliptic.P384()
	case ES512:
		return elliptic.P521()
	}
	return nil
}

func checkAlgorithm(alg Algorithm) error {
	if alg == "" {
		return errors.New("jwt: Algorithm is not set")
	}
	if family(alg) == "" {
		return fmt.Errorf("jwt: algorithm %q is not supported; use HS256, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA", string(alg))
	}
	return nil
}

// checkSecret and checkRSA return errors without the "jwt: " prefix, for
// their callers to place.
func checkSecret(secret []byte) error {
	if len(secret) < minSecret {
		return fmt.Errorf("HS256 secret is %d bytes, at least %d are required", len(secret), minSecret)
	}
	return nil
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

// parsePublicKeyPEM reads the first PEM block of data as a public key for
// every alg of algs; a certificate chain thus yields its leaf's key.
func parsePublicKeyPEM(algs []Algorithm, data []byte) (any, error) {
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
	for _, alg := range algs {
		if err := checkPublicKey(alg, pub); err != nil {
			return nil, fmt.Errorf("jwt: %v", err)
		}
	}
	return pub, nil
}

// checkPublicKey checks that pub is a sound key for alg. Its errors have
// no "jwt: " prefix.
func checkPublicKey(alg Algorithm, pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if family(alg) == "RSA" {
			return checkRSA(k)
		}
	case *ecdsa.PublicKey:
		if c := curve(alg); c != nil {
			if k.Curve != c {
				return fmt.Errorf("%s needs a %s key, not %s", alg, c.Params().Name, k.Params().Name)
			}
			return nil
		}
	case ed25519.PublicKey:
		if alg == EdDSA {
			// ed25519.Verify panics on a key of another length.
			if len(k) != ed25519.PublicKeySize {
				return fmt.Errorf("Ed25519 key is %d bytes, not %d", len(k), ed25519.PublicKeySize)
			}
			return nil
		}
	}
	return fmt.Errorf("%s needs %s, not %s", alg, keyKind(alg), keyName(pub))
}

// keyKind describes the key alg needs, for error messages.
func keyKind(alg Algorithm) string {
	switch family(alg) {
	case "oct":
		return "a secret"
	case "RSA":
		return "an RSA key"
	case "EC":
		return "an ECDSA " + curve(alg).Params().Name + " key"
	}
	return "an Ed25519 key"
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
