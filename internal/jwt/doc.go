// Package jwt verifies and signs the JSON Web Tokens (RFC 7519) that
// clients present to the gateway, in the compact JWS form (RFC 7515).
//
// The rules, each closing a known class of attack on JWT libraries:
//
//   - The algorithm is fixed by the Verifier's configuration, never taken
//     from the token. A token whose header "alg" differs is refused with
//     ErrAlgorithm before any key is touched. This closes "alg": "none" and
//     key confusion, where an HS256 token is MACed with an RSA public key's
//     PEM bytes in the hope that the verifier uses them as an HMAC secret.
//   - A key is checked against the algorithm when the Verifier is built:
//     an EC key for RS256, an RSA key under 2048 bits or an HMAC secret
//     under 32 bytes (RFC 7518 §3.2) is a configuration error, not a
//     per-token surprise.
//   - Parsing is strict: three unpadded base64url segments, JSON objects for
//     header and payload, no "crit" header, at most 8 KiB in all.
//   - The signature is checked before any claim is read, HMACs are compared
//     in constant time, and an ES256 signature must be the 64-byte R||S of
//     RFC 7518 §3.4, not ASN.1.
//   - The time claims "exp" and "nbf" are enforced when present; "iss" and
//     "aud" when the Verifier is configured with an issuer or audience.
//
// Every error Verify returns wraps one of the Err values, for errors.Is.
package jwt
