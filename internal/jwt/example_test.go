package jwt_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/duplexws/duplex/internal/jwt"
)

func ExampleSign() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	token, err := jwt.Sign(jwt.HS256, secret, "", map[string]any{
		"sub":      "alice",
		"channels": []string{"news"},
		"exp":      1795000000,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(token)
	// Output:
	// eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjaGFubmVscyI6WyJuZXdzIl0sImV4cCI6MTc5NTAwMDAwMCwic3ViIjoiYWxpY2UifQ.8YBUcC6LMF0zDqx_0h1FsE0Fj8TxSBVdcpYvOAJfR10
}

func ExampleVerifier_Verify() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v, err := jwt.NewVerifier(jwt.VerifierConfig{
		Algorithm: jwt.HS256,
		Secret:    secret,
		Audience:  "gateway",
		Now:       func() time.Time { return now }, // for a reproducible example
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	token, _ := jwt.Sign(jwt.HS256, secret, "", map[string]any{
		"sub":      "alice",
		"aud":      "gateway",
		"channels": []string{"news", "chat:7"},
		"info":     map[string]any{"name": "Alice"},
		"exp":      now.Add(time.Hour).Unix(),
	})
	claims, err := v.Verify(token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(claims.Subject, claims.Channels, string(claims.Info))

	expired, _ := jwt.Sign(jwt.HS256, secret, "", map[string]any{
		"sub": "alice",
		"aud": "gateway",
		"exp": now.Add(-time.Minute).Unix(),
	})
	_, err = v.Verify(expired)
	fmt.Println(errors.Is(err, jwt.ErrExpired), err)

	// The algorithm comes from the configuration, never from the token.
	_, err = v.Verify("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	fmt.Println(errors.Is(err, jwt.ErrAlgorithm), err)
	// Output:
	// alice [news chat:7] {"name":"Alice"}
	// true jwt: token expired at 2026-11-21T09:59:00Z
	// true jwt: unsigned tokens (alg "none") are never accepted
}
