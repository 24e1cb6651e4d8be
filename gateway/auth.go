package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
)

// Auth configures token verification. Tokens are JWTs whose algorithm is
// fixed here and never taken from the token.
type Auth struct {
	// Algorithm is "HS256", "RS256", "RS384", "RS512", "PS256", "PS384",
	// "PS512", "ES256", "ES384", "ES512" or "EdDSA". Default: empty, no
	// token verifies (only anonymous connections, when allowed), unless
	// Algorithms is set.
	Algorithm string
	// Algorithms is an allow-list in place of Algorithm, for key sets
	// that mix algorithms (RS256 and PS256, say); HS256 cannot be mixed
	// with others. Default: none.
	Algorithms []string
	// Secret is the HMAC key, for HS256.
	Secret []byte
	// PublicKeyPEM is the public key (or certificate) for the public-key
	// algorithms.
	PublicKeyPEM []byte
	// JWKS is a JSON Web Key Set, an alternative to PublicKeyPEM; the
	// token's "kid" header picks the key.
	JWKS []byte
	// JWKSURL is where to fetch a JSON Web Key Set from (an identity
	// provider's jwks_uri), the other alternative. It is fetched at New,
	// every JWKSRefreshInterval and when a token names an unknown "kid"
	// (at most once per JWKSMinRefreshInterval); when a fetch fails, the
	// keys fetched last stay in use. Shutdown stops the fetching.
	JWKSURL string
	// JWKSRefreshInterval is how often JWKSURL is fetched. Default: 15
	// minutes.
	JWKSRefreshInterval time.Duration
	// JWKSMinRefreshInterval is the least time between fetches caused by
	// unknown kids. Default: 1 minute.
	JWKSMinRefreshInterval time.Duration
	// Types are the header "typ" values accepted; with Types set, a token
	// without "typ" is refused. ["at+jwt"] takes RFC 9068 access tokens.
	// Default: "typ" absent or "JWT".
	Types []string
	// Issuer and Audience, when set, must match the token's "iss" and be
	// in its "aud".
	Issuer, Audience string
	// Leeway tolerates clock skew on "exp", "nbf" and "iat", at connect
	// and on the live expiry of a connection. Default: 0.
	Leeway time.Duration
	// RequireIssuedAt refuses tokens without "iat" or with an "iat" in
	// the future (beyond Leeway). Default: false.
	RequireIssuedAt bool
	// MaxLifetime, when set, refuses tokens without "exp" or whose "exp"
	// is more than MaxLifetime after their "iat" (after now without
	// "iat"). Default: 0, no limit.
	MaxLifetime time.Duration

	// AllowAnonymous accepts connect without a token, as user "".
	// Default: false.
	AllowAnonymous bool
}

// newVerifier returns the verifier a, or nil when a names no algorithm.
func newVerifier(a Auth, log *slog.Logger) (*jwt.Verifier, error) {
	if a.Algorithm == "" && len(a.Algorithms) == 0 {
		return nil, nil
	}
	algs := make([]jwt.Algorithm, len(a.Algorithms))
	for i, name := range a.Algorithms {
		algs[i] = jwt.Algorithm(name)
	}
	return jwt.NewVerifier(jwt.VerifierConfig{
		Algorithm:              jwt.Algorithm(a.Algorithm),
		Algorithms:             algs,
		Secret:                 a.Secret,
		PublicKeyPEM:           a.PublicKeyPEM,
		JWKS:                   a.JWKS,
		JWKSURL:                a.JWKSURL,
		JWKSRefreshInterval:    a.JWKSRefreshInterval,
		JWKSMinRefreshInterval: a.JWKSMinRefreshInterval,
		Logger:                 log,
		Types:                  a.Types,
		Issuer:                 a.Issuer,
		Audience:               a.Audience,
		Leeway:                 a.Leeway,
		RequireIssuedAt:        a.RequireIssuedAt,
		MaxLifetime:            a.MaxLifetime,
	})
}

// errAnonymous refuses a connect without a token when anonymous
// connections are not allowed.
var errAnonymous = errors.New("anonymous connections are not allowed")

// errNoVerifier refuses a token when no algorithm is configured.
var errNoVerifier = errors.New("tokens are not accepted: no auth algorithm configured")

// authenticate verifies a connection token.
func (s *Server) authenticate(ctx context.Context, token string, header http.Header) (*Credentials, error) {
	if h := s.cfg.Hooks.Authenticate; h != nil {
		return h(ctx, token, header)
	}
	if token == "" {
		if !s.cfg.Auth.AllowAnonymous {
			return nil, errAnonymous
		}
		return &Credentials{}, nil
	}
	claims, err := s.verify(token)
	if err != nil {
		return nil, err
	}
	if claims.Subject == "" {
		return nil, errors.New("token has no sub claim")
	}
	if claims.Channel != "" {
		// Both kinds of token share the key; a subscribe token must not
		// open a connection.
		return nil, errors.New("a channel token is not a connection token")
	}
	creds := &Credentials{User: claims.Subject, Info: claims.Info, Channels: claims.Channels}
	if claims.ExpiresAt != 0 {
		creds.ExpiresAt = time.Unix(claims.ExpiresAt, 0)
	}
	return creds, nil
}

func (s *Server) verify(token string) (*jwt.Claims, error) {
	if s.verifier == nil {
		return nil, errNoVerifier
	}
	return s.verifier.Verify(token)
}

// verifyChannelToken checks a channel token: signed like connection tokens,
// for this channel and this user.
func (s *Server) verifyChannelToken(token, channel, user string) error {
	claims, err := s.verify(token)
	if err != nil {
		return err
	}
	if claims.Channel != channel {
		return errors.New("token is for another channel")
	}
	if claims.Subject != user {
		return errors.New("token is for another user")
	}
	return nil
}

// isExpired reports whether err is a token's expiry, which the client cures
// by getting a new token rather than giving up.
func isExpired(err error) bool { return errors.Is(err, jwt.ErrExpired) }

// tokenRefusals are the kinds of refused token, whose generic texts are
// what clients are told; the precise message, which may name the
// configured issuer or audience or the keys' ids, goes to the log only.
var tokenRefusals = []error{
	jwt.ErrMalformed, jwt.ErrAlgorithm, jwt.ErrSignature, jwt.ErrExpired,
	jwt.ErrNotYetValid, jwt.ErrIssuedAt, jwt.ErrLifetime, jwt.ErrIssuer,
	jwt.ErrAudience, jwt.ErrUnknownKey,
}

// authReason is what a client is told of a refused token. The details
// of a token refusal are logged instead.
func (s *Server) authReason(err error) string {
	for _, kind := range tokenRefusals {
		if errors.Is(err, kind) {
			s.log.Info("token refused", "err", err)
			return strings.TrimPrefix(kind.Error(), "jwt: ")
		}
	}
	return err.Error()
}

// expiryDeadline is when a connection whose credentials expire at exp is
// closed: exp plus the leeway a token at connect gets too, so that a
// token accepted within the leeway is not closed at once.
func (s *Server) expiryDeadline(exp time.Time) int64 {
	if exp.IsZero() {
		return 0
	}
	return exp.Add(s.cfg.Auth.Leeway).UnixNano()
}

// regrant applies a refreshed token's grants: its "info" from now on (in
// publications, and in presence from its next refresh), and its
// "channels" in place of the old ones. A subscription that only the old
// token's channels allowed ends with an unsubscribe push; one that the
// namespace allows anyway stays, without the rights the grant gave
// (publishing where that needs a token).
func (sess *session) regrant(creds *Credentials) {
	granted := make(map[string]bool, len(creds.Channels))
	for _, c := range creds.Channels {
		granted[c] = true
	}
	var revoked []string
	sess.mu.Lock()
	if sess.info != nil {
		info := *sess.info
		info.Info = creds.Info
		sess.info = &info
	}
	for channel, sub := range sess.subs {
		if !sub.viaToken || !sess.channels[channel] || granted[channel] {
			continue
		}
		if sub.ns.Subscribe == PermissionToken {
			revoked = append(revoked, channel)
		} else {
			sub.viaToken = false
		}
	}
	sess.channels = granted
	sess.mu.Unlock()
	for _, channel := range revoked {
		sess.serverUnsubscribe(channel, "the refreshed token no longer grants this channel")
	}
}
