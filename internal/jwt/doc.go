// Package jwt verifies and signs the JSON Web Tokens (RFC 7519) that
// clients present to the gateway, in the compact JWS form (RFC 7515).
// Signatures and the registered claims are checked by
// github.com/golang-jwt/jwt/v5; this package puts stricter checks in
// front of it and keeps a small API for the gateway.
//
// The rules, each closing a known class of attack on JWT libraries:
//
//   - The algorithms are fixed by the Verifier's configuration (one, or an
//     allow-list), never taken from the token. A token whose header "alg"
//     is not allowed is refused with ErrAlgorithm before any key is
//     touched. This closes "alg": "none" and key confusion, where an HS256
//     token is MACed with an RSA public key's PEM bytes in the hope that
//     the verifier uses them as an HMAC secret; HS256 cannot share an
//     allow-list with the public-key algorithms.
//   - A key is checked against the algorithms when the Verifier is built:
//     an EC key for RS256, a P-256 key for ES384, an RSA key under 2048
//     bits or an HMAC secret under 32 bytes (RFC 7518 §3.2) is a
//     configuration error, not a per-token surprise.
//   - Parsing is stricter than golang-jwt's: three unpadded base64url
//     segments without line breaks, JSON objects for header and payload
//     in valid UTF-8 with no name twice, no "crit" header, a "typ" of
//     JWT (or the configured Types), registered claims of their JSON
//     types, at most 8 KiB in all. These checks run first; the payload is
//     decoded before the signature is checked, but nothing of it is
//     returned unless the signature holds.
//   - HMACs are compared in constant time, and an ES signature must be
//     the fixed-size R||S of RFC 7518 §3.4, not ASN.1. High-S ECDSA
//     signatures are accepted: golang-jwt has no low-S option, and common
//     signers (Go's crypto/ecdsa among them) produce high S half the time.
//   - The time claims "exp" and "nbf" are enforced when present, with the
//     configured leeway; "iss" and "aud" when the Verifier is configured
//     with an issuer or audience; "iat" and a maximum lifetime on request.
//   - A key set from a URL is fetched on a ticker and when a token names
//     an unknown "kid" (rate-limited), and the last good set is kept while
//     the endpoint fails.
//
// Every error Verify returns wraps one of the Err values, for errors.Is.
package jwt
