package jwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// Algorithm names a JWS signature algorithm, as in the header's "alg".
type Algorithm string

// The supported algorithms (RFC 7518 §3.1, RFC 8037 §3.1).
const (
	HS256 Algorithm = "HS256" // HMAC with SHA-256; the key is a shared secret
	RS256 Algorithm = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
	RS384 Algorithm = "RS384" // RSASSA-PKCS1-v1_5 with SHA-384
	RS512 Algorithm = "RS512" // RSASSA-PKCS1-v1_5 with SHA-512
	PS256 Algorithm = "PS256" // RSASSA-PSS with SHA-256
	PS384 Algorithm = "PS384" // RSASSA-PSS with SHA-384
	PS512 Algorithm = "PS512" // RSASSA-PSS with SHA-512
	ES256 Algorithm = "ES256" // ECDSA on P-256 with SHA-256
	ES384 Algorithm = "ES384" // ECDSA on P-384 with SHA-384
	ES512 Algorithm = "ES512" // ECDSA on P-521 with SHA-512
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
	ErrIssuedAt    = errors.New("jwt: bad issue time")
	ErrLifetime    = errors.New("jwt: token lives too long")
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

// VerifierConfig configures a Verifier. One of Algorithm and Algorithms,
// and exactly one key source are required: Secret for HS256, PublicKeyPEM
// for the others, or JWKS or JWKSURL for any. An empty source counts as
// unset.
type VerifierConfig struct {
	// Algorithm is the only algorithm accepted; tokens naming another
	// in their header are refused.
	Algorithm Algorithm
	// Algorithms is an allow-list, in place of Algorithm, for key sets
	// whose keys use several algorithms (RS256 and PS256, say). HS256
	// cannot be mixed with the others: a public key must never be usable
	// as an HMAC secret.
	Algorithms []Algorithm
	// Secret is the HMAC key for HS256, at least 32 bytes. Tokens' "kid"
	// is then ignored.
	Secret []byte
	// PublicKeyPEM is the key for the public-key algorithms: a PEM block
	// of type "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1) or
	// "CERTIFICATE", whose public key is used; later blocks are ignored.
	// RSA keys need at least 2048 bits, ECDSA keys the curve of their
	// algorithm. It must suit every algorithm allowed. Tokens' "kid" is
	// then ignored.
	PublicKeyPEM []byte
	// JWKS is a JSON Web Key Set ({"keys": [...]}), an alternative to
	// Secret and PublicKeyPEM. Keys whose type, "alg", "use" or
	// "key_ops" fits no allowed algorithm are ignored. A token's "kid"
	// header selects its key; a token without one is accepted only when
	// the set has exactly one usable key for the token's algorithm.
	JWKS []byte
	// JWKSURL is where to fetch the JWKS from (an identity provider's
	// jwks_uri), the other alternative. The set is fetched by NewVerifier,
	// again every JWKSRefreshInterval and when a token names an unknown
	// "kid", and kept when a fetch fails. Close stops the refreshing.
	JWKSURL string
	// JWKSRefreshInterval is how often JWKSURL is fetched. Default: 15
	// minutes.
	JWKSRefreshInterval time.Duration
	// JWKSMinRefreshInterval is the least time between two fetches that
	// tokens with an unknown "kid" cause, so that a flood of made-up kids
	// cannot turn into a flood of requests. Default: 1 minute.
	JWKSMinRefreshInterval time.Duration
	// JWKSTimeout bounds one fetch of JWKSURL. Default: 10 seconds.
	JWKSTimeout time.Duration
	// Logger receives the failures of JWKS fetches. Default:
	// slog.Default().
	Logger *slog.Logger

	// Types are the header "typ" values accepted, compared without case
	// and without an "application/" prefix; with Types set, a token
	// without "typ" is refused. ["at+jwt"] accepts RFC 9068 access
	// tokens. Default: "typ" may be absent or "JWT".
	Types []string
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew allowed when checking "exp", "nbf" and
	// "iat". The default is 0: a token is expired from its "exp" second
	// on.
	Leeway time.Duration
	// RequireIssuedAt refuses tokens without "iat" or whose "iat" is
	// later than now plus Leeway. Default: false, "iat" is not checked.
	RequireIssuedAt bool
	// MaxLifetime, when set, refuses tokens without "exp" and tokens whose
	// "exp" is more than MaxLifetime after their "iat" (after now, for
	// tokens without "iat"). Default: 0, no limit.
	MaxLifetime time.Duration
	// Now returns the current time. The default is time.Now.
	Now func() time.Time
}

// Verifier checks tokens against its algorithms and keys. It is safe for
// concurrent use. A Verifier with a JWKSURL must be closed.
type Verifier struct {
	algs        []Algorithm
	key         any      // the single key; nil when keys come from a set
	set         *keySets // a static JWKS
	remote      *remoteSet
	types       []string // lower case; nil: "typ" absent or "jwt"
	issuer      string
	audience    string
	leeway      time.Duration
	requireIat  bool
	maxLifetime time.Duration
	now         func() time.Time
	parser      *gojwt.Parser
}

// NewVerifier checks cfg and its keys and returns a Verifier for them.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		leeway:      cfg.Leeway,
		requireIat:  cfg.RequireIssuedAt,
		maxLifetime: cfg.MaxLifetime,
		now:         cfg.Now,
	}
	var err error
	if v.algs, err = allowedAlgorithms(cfg); err != nil {
		return nil, err
	}
	if v.leeway < 0 || v.maxLifetime < 0 {
		return nil, fmt.Errorf("jwt: Leeway (%v) or MaxLifetime (%v) is negative", v.leeway, v.maxLifetime)
	}
	for _, t := range cfg.Types {
		v.types = append(v.types, strings.TrimPrefix(strings.ToLower(t), "application/"))
	}
	if v.now == nil {
		v.now = time.Now
	}
	if err := v.setKeys(cfg); err != nil {
		return nil, err
	}
	names := make([]string, len(v.algs))
	for i, a := range v.algs {
		names[i] = string(a)
	}
	// The library checks again what the checks in front of it have
	// checked (algorithm, base64), and then signature and claims.
	opts := []gojwt.ParserOption{
		gojwt.WithValidMethods(names),
		gojwt.WithStrictDecoding(),
		gojwt.WithLeeway(v.leeway),
		gojwt.WithTimeFunc(v.now),
	}
	if v.issuer != "" {
		opts = append(opts, gojwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, gojwt.WithAudience(v.audience))
	}
	if v.requireIat {
		opts = append(opts, gojwt.WithIssuedAt())
	}
	if v.maxLifetime > 0 {
		opts = append(opts, gojwt.WithExpirationRequired())
	}
	v.parser = gojwt.NewParser(opts...)
	return v, nil
}

// allowedAlgorithms returns the configured algorithms, checked.
func allowedAlgorithms(cfg VerifierConfig) ([]Algorithm, error) {
	algs := cfg.Algorithms
	switch {
	case cfg.Algorithm != "" && len(algs) > 0:
		return nil, errors.New("jwt: set Algorithm or Algorithms, not both")
	case cfg.Algorithm != "":
		algs = []Algorithm{cfg.Algorithm}
	case len(algs) == 0:
		return nil, errors.New("jwt: Algorithm is not set")
	}
	for _, a := range algs {
		if err := checkAlgorithm(a); err != nil {
			return nil, err
		}
	}
	if len(algs) > 1 && slices.Contains(algs, HS256) {
		return nil, errors.New("jwt: HS256 cannot be allowed with other algorithms")
	}
	return slices.Compact(slices.Clone(algs)), nil
}

// setKeys reads the one key source of cfg.
func (v *Verifier) setKeys(cfg VerifierConfig) error {
	// Empty counts as unset: a config loader may well give []byte("").
	sources := 0
	for _, b := range [][]byte{cfg.Secret, cfg.PublicKeyPEM, cfg.JWKS, []byte(cfg.JWKSURL)} {
		if len(b) > 0 {
			sources++
		}
	}
	hs := v.algs[0] == HS256
	var err error
	switch {
	case sources > 1:
		err = errors.New("jwt: set only one of Secret, PublicKeyPEM, JWKS and JWKSURL")
	case sources == 0 && hs:
		err = errors.New("jwt: HS256 needs a key: set Secret or JWKS")
	case sources == 0:
		err = fmt.Errorf("jwt: %s needs a key: set PublicKeyPEM, JWKS or JWKSURL", v.algs[0])
	case len(cfg.JWKS) > 0:
		v.set, err = parseJWKS(v.algs, cfg.JWKS)
	case cfg.JWKSURL != "":
		v.remote, err = newRemoteSet(cfg, v.algs)
	case hs && len(cfg.Secret) > 0:
		if err = checkSecret(cfg.Secret); err != nil {
			err = fmt.Errorf("jwt: %v", err)
		}
		v.key = append([]byte(nil), cfg.Secret...) // the caller may reuse its slice
	case hs:
		err = errors.New("jwt: HS256 takes Secret or JWKS, not PublicKeyPEM")
	case len(cfg.Secret) > 0:
		err = fmt.Errorf("jwt: Secret is for HS256; %s takes PublicKeyPEM or JWKS", v.algs[0])
	default:
		v.key, err = parsePublicKeyPEM(v.algs, cfg.PublicKeyPEM)
	}
	return err
}

// Close stops the refreshing of a JWKSURL and waits for it to end. It is a
// no-op for other Verifiers, and may be called more than once.
func (v *Verifier) Close() {
	if v != nil && v.remote != nil {
		v.remote.close()
	}
}

// Verify checks the token's form, algorithm and signature, then its time
// claims, issuer and audience, and returns its claims. Tokens over 8 KiB
// are refused unread. Every error wraps one of the Err values; the claims
// are nil with an error.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if len(token) > maxTokenSize {
		return nil, fail(ErrMalformed, "token is %d bytes, over the limit of %d", len(token), maxTokenSize)
	}
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		return nil, fail(ErrMalformed, "token does not have three dot-separated segments")
	}
	hdr, err := v.parseHeader(segs[0])
	if err != nil {
		return nil, err
	}
	alg := Algorithm(hdr.alg)
	if !slices.Contains(v.algs, alg) {
		if strings.EqualFold(hdr.alg, "none") {
			return nil, fail(ErrAlgorithm, "unsigned tokens (alg %q) are never accepted", hdr.alg)
		}
		return nil, fail(ErrAlgorithm, "token algorithm is %s, want %s", quote(hdr.alg), v.algNames())
	}
	payload, err := decodeSegment(segs[1], "payload")
	if err != nil {
		return nil, err
	}
	if err := checkSegment(segs[2], "signature"); err != nil {
		return nil, err
	}
	// The payload is read before its signature is checked, as golang-jwt
	// does too; nothing of it is used unless the signature holds.
	c, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	_, err = v.parser.ParseWithClaims(token, &libClaims{c}, func(*gojwt.Token) (any, error) {
		return v.keyFor(alg, hdr)
	})
	if err != nil {
		return nil, v.refusal(err, c)
	}
	if err := v.checkLifetime(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (v *Verifier) algNames() string {
	names := make([]string, len(v.algs))
	for i, a := range v.algs {
		names[i] = string(a)
	}
	return strings.Join(names, " or ")
}

// keyFor picks the key for a token whose header is hdr.
func (v *Verifier) keyFor(alg Algorithm, hdr header) (any, error) {
	switch {
	case v.key != nil:
		return v.key, nil
	case v.set != nil:
		return v.set.key(alg, hdr)
	}
	return v.remote.key(alg, hdr)
}

// refusal turns an error of golang-jwt into one of ours. Ours, from the
// strict parsing and key lookup it calls back, pass through; the claims
// errors are put in a fixed order, as the library reports them all.
func (v *Verifier) refusal(err error, c *Claims) error {
	var te *tokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, gojwt.ErrTokenSignatureInvalid):
		return fail(ErrSignature, "token signature does not match")
	case errors.Is(err, gojwt.ErrTokenExpired):
		return fail(ErrExpired, "token expired at %s", formatUnix(c.ExpiresAt))
	case v.maxLifetime > 0 && c.Raw["exp"] == nil:
		return fail(ErrLifetime, "token has no exp, and tokens may live at most %v", v.maxLifetime)
	case errors.Is(err, gojwt.ErrTokenNotValidYet):
		return fail(ErrNotYetValid, "token not valid before %s", formatUnix(c.NotBefore))
	case errors.Is(err, gojwt.ErrTokenUsedBeforeIssued):
		return fail(ErrIssuedAt, "token issued at %s, in the future", formatUnix(c.IssuedAt))
	case v.issuer != "" && c.Issuer != v.issuer:
		return fail(ErrIssuer, "token issuer is %s, want %q", quote(c.Issuer), v.issuer)
	case v.audience != "" && !slices.Contains(c.Audience, v.audience):
		return fail(ErrAudience, "token audience does not include %q", v.audience)
	}
	return fail(ErrMalformed, "token refused: %v", err)
}

// checkLifetime applies the checks golang-jwt has no option for: "iat"
// required, and the longest life.
func (v *Verifier) checkLifetime(c *Claims) error {
	_, hasIat := c.Raw["iat"]
	if v.requireIat && !hasIat {
		return fail(ErrIssuedAt, "token has no iat")
	}
	if v.maxLifetime <= 0 {
		return nil
	}
	start := v.now()
	if hasIat {
		start = unixTime(c.IssuedAt)
	}
	if life := unixTime(c.ExpiresAt).Sub(start); life > v.maxLifetime {
		return fail(ErrLifetime, "token lives %v, at most %v is allowed", life, v.maxLifetime)
	}
	return nil
}

// libClaims carries Claims through golang-jwt, which asks it for the
// registered claims. parseClaims has decoded them already, strictly.
type libClaims struct{ c *Claims }

// UnmarshalJSON keeps the claims that parseClaims decoded from the same
// payload.
func (l *libClaims) UnmarshalJSON([]byte) error { return nil }

func (l *libClaims) date(name string, sec int64) (*gojwt.NumericDate, error) {
	if _, ok := l.c.Raw[name]; !ok {
		return nil, nil
	}
	return gojwt.NewNumericDate(unixTime(sec)), nil
}

func (l *libClaims) GetExpirationTime() (*gojwt.NumericDate, error) {
	return l.date("exp", l.c.ExpiresAt)
}
func (l *libClaims) GetNotBefore() (*gojwt.NumericDate, error) {
	return l.date("nbf", l.c.NotBefore)
}
func (l *libClaims) GetIssuedAt() (*gojwt.NumericDate, error) {
	return l.date("iat", l.c.IssuedAt)
}
func (l *libClaims) GetIssuer() (string, error)  { return l.c.Issuer, nil }
func (l *libClaims) GetSubject() (string, error) { return l.c.Subject, nil }
func (l *libClaims) GetAudience() (gojwt.ClaimStrings, error) {
	return gojwt.ClaimStrings(l.c.Audience), nil
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
