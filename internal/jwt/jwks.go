package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
)

// jwk holds the members of a JSON Web Key (RFC 7517) that verification
// uses; private members, if any, are left alone.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    *string  `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	K      string   `json:"k"`
}

// parseJWKS returns the keys of a JWKS document usable with alg, by kid,
// and the only one of them when there is exactly one. Keys of other types
// or meant for other uses are skipped; a usable key that is malformed or
// too weak is an error, as a set without usable keys is.
func parseJWKS(alg Algorithm, data []byte) (map[string]any, any, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("jwt: JWKS is not a JSON key set: %v", err)
	}
	if doc.Keys == nil {
		return nil, nil, errors.New(`jwt: JWKS has no "keys" array`)
	}
	keys := make(map[string]any)
	var sole any
	n := 0
	for i, raw := range doc.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, nil, fmt.Errorf("jwt: JWKS key %d is malformed: %v", i, err)
		}
		if !k.usable(alg) {
			continue
		}
		name := strconv.Itoa(i)
		if k.Kid != nil {
			name = fmt.Sprintf("%d (kid %q)", i, *k.Kid)
		}
		key, err := k.key()
		if err != nil {
			return nil, nil, fmt.Errorf("jwt: JWKS key %s: %v", name, err)
		}
		n++
		sole = key
		if k.Kid == nil {
			continue // reachable only as the sole key
		}
		if _, dup := keys[*k.Kid]; dup {
			return nil, nil, fmt.Errorf("jwt: JWKS has two %s keys with kid %q", alg, *k.Kid)
		}
		keys[*k.Kid] = key
	}
	switch n {
	case 0:
		return nil, nil, fmt.Errorf("jwt: JWKS has no key for %s", alg)
	case 1:
		return keys, sole, nil
	}
	return keys, nil, nil
}

// usable reports whether k is a signature key of the type alg needs.
func (k *jwk) usable(alg Algorithm) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	if k.KeyOps != nil && !slices.Contains(k.KeyOps, "verify") {
		return false
	}
	if k.Alg != "" && k.Alg != string(alg) {
		return false
	}
	switch alg {
	case HS256:
		return k.Kty == "oct"
	case RS256:
		return k.Kty == "RSA"
	case ES256:
		return k.Kty == "EC" && k.Crv == "P-256"
	case EdDSA:
		return k.Kty == "OKP" && k.Crv == "Ed25519"
	}
	return false
}

// key decodes the key of a usable k, as verifySignature takes it.
func (k *jwk) key() (any, error) {
	switch k.Kty {
	case "oct":
		secret, err := member("k", k.K, 0)
		if err != nil {
			return nil, err
		}
		return secret, checkSecret(secret)
	case "RSA":
		n, err := member("n", k.N, 0)
		if err != nil {
			return nil, err
		}
		e, err := member("e", k.E, 0)
		if err != nil {
			return nil, err
		}
		if len(e) > 4 {
			return nil, fmt.Errorf(`"e" is %d bytes, too large`, len(e))
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		return pub, checkRSA(pub)
	case "EC":
		// RFC 7518 §6.2.1.2: the coordinates have the full field length.
		x, err := member("x", k.X, 32)
		if err != nil {
			return nil, err
		}
		y, err := member("y", k.Y, 32)
		if err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, errors.New("the point is not on P-256")
		}
		return pub, nil
	case "OKP":
		x, err := member("x", k.X, ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

// member decodes the base64url member name of a JWK, which must be size
// bytes long unless size is 0.
func member(name, value string, size int) ([]byte, error) {
	if value == "" {
		return nil, fmt.Errorf("%q is missing", name)
	}
	b, err := b64.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("%q is not unpadded base64url", name)
	}
	if size > 0 && len(b) != size {
		return nil, fmt.Errorf("%q is %d bytes, not %d", name, len(b), size)
	}
	return b, nil
}
