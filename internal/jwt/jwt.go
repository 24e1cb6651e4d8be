package jwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Algorithm names a JWS signature algorithm, as in the header's "alg".
type Algorithm string

// The supported algorithms (RFC 7518 §3.1, RFC 8037 §3.1).
const (
	HS256 Algorithm = "HS256" // HMAC with SHA-256; the key is a shared secret
	RS256 Algorithm = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	ES256 Algorithm = "ES256" // ECDSA on P-256 with SHA-256
	EdDSA Algorithm = "EdDSA" // Ed25519
)

// Errors that Verify's errors wrap, for errors.Is. Their own texts are
// generic; the wrapping errors say what exactly was wrong.
var (
	ErrMalformed   = errors.New("jwt: malformed token")
	ErrAlgorithm   = errors.New("jwt: algorithm not accepted")
	ErrSignature   = errors.New("jwt: invalid signature")
	ErrExpired     = errors.New("jwt: token expired")
	ErrNotYetValid = errors.New("jwt: token not valid yet")
	ErrIssuer      = errors.New("jwt: wrong issuer")
	ErrAudience    = errors.New("jwt: wrong audience")
	ErrUnknownKey  = errors.New("jwt: unknown key")
)

// tokenError gives a precise message while errors.Is still sees the
// sentinel, so that messages read once instead of as a chain.
type tokenError struct {
	kind error
	msg  string
}

func (e *tokenError) Error() string { return "jwt: " + e.msg }
func (e *tokenError) Unwrap() error { return e.kind }

func fail(kind error, format string, args ...any) error {
	return &tokenError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// maxTokenSize bounds the work an unauthenticated client can cause.
const maxTokenSize = 8 << 10

// Claims are the claims of a verified token. The registered claims are
// decoded into fields; all are in Raw. Verify enforces "exp" and "nbf"
// whenever they are present, even as 0.
type Claims struct {
	Subject   string          // "sub"
	ExpiresAt int64           // "exp", unix seconds, 0 when absent
	NotBefore int64           // "nbf", unix seconds, 0 when absent
	IssuedAt  int64           // "iat", unix seconds, 0 when absent
	Issuer    string          // "iss"
	Audience  []string        // "aud", a string or an array in JSON
	Channel   string          // "channel": the channel a subscribe token is for
	Channels  []string        // "channels": the channels a connection token grants
	Info      json.RawMessage // "info": arbitrary JSON shown to other clients, nil when absent
	// Raw holds every claim of the payload, the ones above included, for
	// checks of custom claims.
	Raw map[string]json.RawMessage
}

// VerifierConfig configures a Verifier. Algorithm and exactly one key
// source are required: Secret for HS256, PublicKeyPEM for the others, or
// JWKS for any. An empty source counts as unset.
type VerifierConfig struct {
	// Algorithm is the only algorithm accepted; tokens naming another
	// in their header are refused.
	Algorithm Algorithm
	// Secret is the HMAC key for HS256, at least 32 bytes. Tokens' "kid"
	// is then ignored.
	Secret []byte
	// PublicKeyPEM is the key for RS256, ES256 or EdDSA: a PEM block of
	// type "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1) or
	// "CERTIFICATE", whose public key is used; later blocks are ignored.
	// RSA keys need at least 2048 bits, ECDSA keys must be on P-256.
	// Tokens' "kid" is then ignored.
	PublicKeyPEM []byte
	// JWKS is a JSON Web Key Set ({"keys": [...]}), an alternative to
	// Secret and PublicKeyPEM. Keys whose type, "alg", "use" or
	// "key_ops" does not fit Algorithm are ignored. A token's "kid" header selects its key;
	// a token without one is accepted only when the set has exactly one
	// usable key.
	JWKS []byte
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew allowed when checking "exp" and "nbf".
	// The default is 0: a token is expired from its "exp" second on.
	Leeway time.Duration
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// Verifier checks tokens against one algorithm and its keys. It is safe
// for concurrent use.
type Verifier struct {
	alg      Algorithm
	key      any            // the single key; nil when keys come from a JWKS
	keys     map[string]any // JWKS keys by "kid"
	sole     any            // the JWKS key used for tokens without "kid", if the set has one key
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
}

// NewVerifier checks cfg and its keys and returns a Verifier for them.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{
		alg:      cfg.Algorithm,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   cfg.Leeway,
		now:      cfg.Now,
	}
	if err := checkAlgorithm(cfg.Algorithm); err != nil {
		return nil, err
	}
	if v.leeway < 0 {
		return nil, fmt.Errorf("jwt: Leeway is negative (%v)", v.leeway)
	}
	if v.now == nil {
		v.now = time.Now
	}

	// Empty counts as unset: a config loader may well give []byte("").
	sources := 0
	for _, b := range [][]byte{cfg.Secret, cfg.PublicKeyPEM, cfg.JWKS} {
		if len(b) > 0 {
			sources++
		}
	}
	var err error
	switch {
	case sources > 1:
		err = errors.New("jwt: set only one of Secret, PublicKeyPEM and JWKS")
	case sources == 0 && cfg.Algorithm == HS256:
		err = errors.New("jwt: HS256 needs a key: set Secret or JWKS")
	case sources == 0:
		err = fmt.Errorf("jwt: %s needs a key: set PublicKeyPEM or JWKS", cfg.Algorithm)
	case len(cfg.JWKS) > 0:
		v.keys, v.sole, err = parseJWKS(cfg.Algorithm, cfg.JWKS)
	case cfg.Algorithm == HS256 && len(cfg.Secret) > 0:
		if err = checkSecret(cfg.Secret); err != nil {
			err = fmt.Errorf("jwt: %v", err)
		}
		v.key = append([]byte(nil), cfg.Secret...) // the caller may reuse its slice
	case cfg.Algorithm == HS256:
		err = errors.New("jwt: HS256 takes Secret or JWKS, not PublicKeyPEM")
	case len(cfg.Secret) > 0:
		err = fmt.Errorf("jwt: Secret is for HS256; %s takes PublicKeyPEM or JWKS", cfg.Algorithm)
	default:
		v.key, err = parsePublicKeyPEM(cfg.Algorithm, cfg.PublicKeyPEM)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks the token's form, algorithm and signature, then its time
// claims, issuer and audience, and returns its claims. Tokens over 8 KiB
// are refused unread. Every error wraps one of the Err values; the claims
// are nil with an error.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if len(token) > maxTokenSize {
		return nil, fail(ErrMalformed, "token is %d bytes, over the limit of %d", len(token), maxTokenSize)
	}
	dot1 := strings.IndexByte(token, '.')
	dot2 := strings.LastIndexByte(token, '.')
	if dot1 < 0 || dot1 == dot2 || strings.IndexByte(token[dot1+1:dot2], '.') >= 0 {
		return nil, fail(ErrMalformed, "token does not have three dot-separated segments")
	}

	hdr, err := parseHeader(token[:dot1])
	if err != nil {
		return nil, err
	}
	if Algorithm(hdr.alg) != v.alg {
		if strings.EqualFold(hdr.alg, "none") {
			return nil, fail(ErrAlgorithm, "unsigned tokens (alg %q) are never accepted", hdr.alg)
		}
		return nil, fail(ErrAlgorithm, "token algorithm is %s, want %s", quote(hdr.alg), v.alg)
	}
	key, err := v.keyFor(hdr)
	if err != nil {
		return nil, err
	}
	payload, err := decodeSegment(token[dot1+1:dot2], "payload")
	if err != nil {
		return nil, err
	}
	sig, err := decodeSegment(token[dot2+1:], "signature")
	if err != nil {
		return nil, err
	}
	if !verifySignature(v.alg, key, token[:dot2], sig) {
		return nil, fail(ErrSignature, "token signature does not match")
	}
	// Only now, with the payload authenticated, are the claims read.
	c, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	return c, nil
}

// keyFor picks the key for a token whose header is hdr.
func (v *Verifier) keyFor(hdr header) (any, error) {
	if v.key != nil {
		return v.key, nil
	}
	if !hdr.hasKid {
		if v.sole == nil {
			return nil, fail(ErrUnknownKey, "token has no kid, and the key set has several %s keys", v.alg)
		}
		return v.sole, nil
	}
	key, ok := v.keys[hdr.kid]
	if !ok {
		return nil, fail(ErrUnknownKey, "no %s key with kid %s", v.alg, quote(hdr.kid))
	}
	return key, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	now := v.now()
	if _, ok := c.Raw["exp"]; ok && !now.Before(unixTime(c.ExpiresAt).Add(v.leeway)) {
		return fail(ErrExpired, "token expired at %s", formatUnix(c.ExpiresAt))
	}
	if _, ok := c.Raw["nbf"]; ok && now.Add(v.leeway).Before(unixTime(c.NotBefore)) {
		return fail(ErrNotYetValid, "token not valid before %s", formatUnix(c.NotBefore))
	}
	if v.issuer != "" && c.Issuer != v.issuer {
		return fail(ErrIssuer, "token issuer is %s, want %q", quote(c.Issuer), v.issuer)
	}
	if v.audience != "" && !slices.Contains(c.Audience, v.audience) {
		return fail(ErrAudience, "token audience does not include %q", v.audience)
	}
	return nil
}

// unixTime converts a date claim, clamping it to ±2^40 seconds (some
// 35,000 years) so that absurd values cannot overflow time.Time.
func unixTime(sec int64) time.Time {
	const limit = 1 << 40
	sec = max(-limit, min(sec, limit))
	return time.Unix(sec, 0)
}

func formatUnix(sec int64) string {
	return unixTime(sec).UTC().Format(time.RFC3339)
}

// quote quotes a string from a token for an error message, cut short so
// that a hostile token cannot flood the logs.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
