package cli

import (
	"reflect"
	"testing"
	"time"
)

// TestServeAuthConfig: the auth keys of issue 13 reach gateway.Auth.
func TestServeAuthConfig(t *testing.T) {
	cfg, err := serveConfigFrom(t, `auth:
  algorithms: [RS256, PS256]
  jwks_url: https://idp.example/.well-known/jwks.json
  jwks_refresh: 5m
  jwks_min_refresh: 30s
  types: [at+jwt]
  leeway: 5s
  require_iat: true
  max_lifetime: 1h
`)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	a := g.Auth
	if !reflect.DeepEqual(a.Algorithms, []string{"RS256", "PS256"}) || a.JWKSURL != "https://idp.example/.well-known/jwks.json" ||
		a.JWKSRefreshInterval != 5*time.Minute || a.JWKSMinRefreshInterval != 30*time.Second ||
		!reflect.DeepEqual(a.Types, []string{"at+jwt"}) || a.Leeway != 5*time.Second || !a.RequireIssuedAt || a.MaxLifetime != time.Hour {
		t.Fatalf("auth %+v", a)
	}
}
