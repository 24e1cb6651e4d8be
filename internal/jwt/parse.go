package jwt

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
)

// b64 refuses padding and the standard alphabet, and with Strict also
// non-zero trailing bits, so that a token has only one spelling.
var b64 = base64.RawURLEncoding.Strict()

// decodeSegment decodes one base64url segment of a token. The alphabet is
// checked first because encoding/base64 skips newlines.
func decodeSegment(seg, what string) ([]byte, error) {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fail(ErrMalformed, "token %s is not unpadded base64url", what)
		}
	}
	b, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fail(ErrMalformed, "token %s is not unpadded base64url", what)
	}
	return b, nil
}

// parseObject decodes a JSON object. Of duplicate names the last wins,
// which RFC 7515 §4 allows.
func parseObject(b []byte, what string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil { // m is nil for "null"
		return nil, fail(ErrMalformed, "token %s is not a JSON object", what)
	}
	return m, nil
}

// first returns the first JSON byte of a value: '"', '[', '{', a digit,
// '-', 't', 'f' or 'n'. Values from parseObject are never empty.
func first(v json.RawMessage) byte {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// header is what Verify uses of a token's header.
type header struct {
	alg    string
	kid    string
	hasKid bool
}

func parseHeader(seg string) (header, error) {
	var h header
	b, err := decodeSegment(seg, "header")
	if err != nil {
		return h, err
	}
	fields, err := parseObject(b, "header")
	if err != nil {
		return h, err
	}
	if err := stringField(fields, "alg", &h.alg, "header"); err != nil {
		return h, err
	}
	if _, ok := fields["alg"]; !ok {
		return h, fail(ErrMalformed, "token header has no alg")
	}
	var typ string
	if err := stringField(fields, "typ", &typ, "header"); err != nil {
		return h, err
	}
	if _, ok := fields["typ"]; ok && !strings.EqualFold(typ, "JWT") {
		return h, fail(ErrMalformed, "token header typ is %s, want JWT", quote(typ))
	}
	// crit names extensions the verifier must understand, and it knows none.
	if _, ok := fields["crit"]; ok {
		return h, fail(ErrMalformed, "token header has crit, and no extensions are supported")
	}
	if err := stringField(fields, "kid", &h.kid, "header"); err != nil {
		return h, err
	}
	_, h.hasKid = fields["kid"]
	return h, nil
}

// parseClaims decodes a verified payload.
func parseClaims(b []byte) (*Claims, error) {
	raw, err := parseObject(b, "payload")
	if err != nil {
		return nil, err
	}
	c := &Claims{Raw: raw, Info: raw["info"]}
	// All are checked, in a fixed order so that the error is reproducible.
	for _, err := range []error{
		stringField(raw, "sub", &c.Subject, "claim"),
		dateClaim(raw, "exp", &c.ExpiresAt),
		dateClaim(raw, "nbf", &c.NotBefore),
		dateClaim(raw, "iat", &c.IssuedAt),
		stringField(raw, "iss", &c.Issuer, "claim"),
		audienceClaim(raw, &c.Audience),
		stringField(raw, "channel", &c.Channel, "claim"),
		stringsClaim(raw, "channels", &c.Channels),
	} {
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stringField sets *dst to the string member name of m, if present.
func stringField(m map[string]json.RawMessage, name string, dst *string, what string) error {
	v, ok := m[name]
	if !ok {
		return nil
	}
	// A JSON null would unmarshal into a string without error.
	if first(v) != '"' || json.Unmarshal(v, dst) != nil {
		return fail(ErrMalformed, "token %s %q is not a string", what, name)
	}
	return nil
}

// dateClaim sets *dst to the NumericDate claim name, if present. Floats
// are truncated toward zero.
func dateClaim(m map[string]json.RawMessage, name string, dst *int64) error {
	v, ok := m[name]
	if !ok {
		return nil
	}
	// A valid JSON value that starts so is a JSON number, which rules out
	// the Inf, NaN and hex forms strconv also takes.
	if c := first(v); c != '-' && (c < '0' || c > '9') {
		return fail(ErrMalformed, "token claim %q is not a number", name)
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		*dst = n
		return nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f < -(1<<63) || f >= 1<<63 {
		return fail(ErrMalformed, "token claim %q is out of range", name)
	}
	*dst = int64(f)
	return nil
}

// audienceClaim sets *dst from "aud", a string or an array of strings.
func audienceClaim(m map[string]json.RawMessage, dst *[]string) error {
	v, ok := m["aud"]
	switch {
	case !ok:
		return nil
	case first(v) == '[':
		return stringsClaim(m, "aud", dst)
	case first(v) == '"':
		var s string
		if err := stringField(m, "aud", &s, "claim"); err != nil {
			return err
		}
		*dst = []string{s}
		return nil
	}
	return fail(ErrMalformed, `token claim "aud" is neither a string nor an array of strings`)
}

// stringsClaim sets *dst to the array of strings claim name, if present.
func stringsClaim(m map[string]json.RawMessage, name string, dst *[]string) error {
	v, ok := m[name]
	if !ok {
		return nil
	}
	// Decoding into []any, not []string, catches null elements.
	var list []any
	if first(v) != '[' || json.Unmarshal(v, &list) != nil {
		return fail(ErrMalformed, "token claim %q is not an array of strings", name)
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			return fail(ErrMalformed, "token claim %q is not an array of strings", name)
		}
		out[i] = s
	}
	*dst = out
	return nil
}
