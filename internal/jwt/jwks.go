package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// keySet holds the keys of a JWKS usable with one algorithm.
type keySet struct {
	byKid map[string]any
	sole  any // the key for tokens without "kid", when the set has one key
	n     int
}

// keySets holds a JWKS's usable keys by algorithm.
type keySets map[Algorithm]*keySet

func (s keySets) key(alg Algorithm, hdr header) (any, error) {
	set := s[alg]
	if set == nil {
		set = &keySet{}
	}
	if !hdr.hasKid {
		if set.n != 1 {
			return nil, fail(ErrUnknownKey, "token has no kid, and the key set has %d %s keys", set.n, alg)
		}
		return set.sole, nil
	}
	key, ok := set.byKid[hdr.kid]
	if !ok {
		return nil, fail(ErrUnknownKey, "no %s key with kid %s", alg, quote(hdr.kid))
	}
	return key, nil
}

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

// parseJWKS returns the keys of a JWKS document usable with algs. Keys of
// other types or meant for other uses are skipped; a usable key that is
// malformed or too weak is an error, as a set without usable keys is.
func parseJWKS(algs []Algorithm, data []byte) (*keySets, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwt: JWKS is not a JSON key set: %v", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`jwt: JWKS has no "keys" array`)
	}
	sets := keySets{}
	usable := 0
	for i, raw := range doc.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("jwt: JWKS key %d is malformed: %v", i, err)
		}
		var key any
		for _, alg := range algs {
			if !k.usable(alg) {
				continue
			}
			name := strconv.Itoa(i)
			if k.Kid != nil {
				name = fmt.Sprintf("%d (kid %q)", i, *k.Kid)
			}
			if key == nil {
				var err error
				if key, err = k.key(alg); err != nil {
					return nil, fmt.Errorf("jwt: JWKS key %s: %v", name, err)
				}
				usable++
			}
			set := sets[alg]
			if set == nil {
				set = &keySet{byKid: map[string]any{}}
				sets[alg] = set
			}
			set.n++
			set.sole = key
			if k.Kid == nil {
				continue // reachable only as the sole key
			}
			if _, dup := set.byKid[*k.Kid]; dup {
				return nil, fmt.Errorf("jwt: JWKS has two %s keys with kid %q", alg, *k.Kid)
			}
			set.byKid[*k.Kid] = key
		}
	}
	if usable == 0 {
		names := make([]string, len(algs))
		for i, a := range algs {
			names[i] = string(a)
		}
		return nil, fmt.Errorf("jwt: JWKS has no key for %s", strings.Join(names, " or "))
	}
	return &sets, nil
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
	if k.Kty != family(alg) {
		return false
	}
	switch k.Kty {
	case "EC":
		return k.Crv == curve(alg).Params().Name
	case "OKP":
		return k.Crv == "Ed25519"
	}
	return true
}

// key decodes the key of k, usable with alg, as golang-jwt takes it.
func (k *jwk) key(alg Algorithm) (any, error) {
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
		c := curve(alg)
		size := (c.Params().BitSize + 7) / 8
		x, err := member("x", k.X, size)
		if err != nil {
			return nil, err
		}
		y, err := member("y", k.Y, size)
		if err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("the point is not on %s", c.Params().Name)
		}
		return pub, nil
	}
	x, err := member("x", k.X, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(x), nil
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
