package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
)

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
