package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The checks in this file run before golang-jwt sees a token. Each refuses
// something the library accepts: a differential test of 217 tokens found
// these the only places where the two disagreed (see strict_test.go).

// b64 refuses padding and the standard alphabet, and with Strict also
// non-zero trailing bits, so that a token has only one spelling.
var b64 = base64.RawURLEncoding.Strict()

// checkSegment refuses a segment with a byte outside the base64url
// alphabet. encoding/base64, and so golang-jwt, skips '\r' and '\n'.
func checkSegment(seg, what string) error {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fail(ErrMalformed, "token %s is not unpadded base64url", what)
		}
	}
	return nil
}

func decodeSegment(seg, what string) ([]byte, error) {
	if err := checkSegment(seg, what); err != nil {
		return nil, err
	}
	b, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fail(ErrMalformed, "token %s is not unpadded base64url", what)
	}
	return b, nil
}

// parseObject decodes a JSON object strictly: encoding/json replaces
// invalid UTF-8 and lone surrogates with U+FFFD and lets the last of
// duplicate names win, so two readers of one token could see different
// claims (RFC 7515 §4 and RFC 8725 §3.2 let us refuse it instead).
func parseObject(b []byte, what string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) || loneSurrogate(b) {
		return nil, fail(ErrMalformed, "token %s is not valid UTF-8", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil { // m is nil for "null"
		return nil, fail(ErrMalformed, "token %s is not a JSON object", what)
	}
	if name, dup := duplicateName(b); dup {
		return nil, fail(ErrMalformed, "token %s has %s twice", what, quote(name))
	}
	return m, nil
}

// duplicateName reports a name that occurs twice in one object, at any
// depth, of the valid JSON text b.
func duplicateName(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		names  map[string]bool
		object bool
		atName bool // the next token of an object is a name
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false // the end; b is known to be valid
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].object && stack[top].atName {
			if name, ok := tok.(string); ok {
				if stack[top].names[name] {
					return name, true
				}
				stack[top].names[name] = true
				stack[top].atName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			stack = append(stack, frame{names: map[string]bool{}, object: tok == json.Delim('{'), atName: true})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			top--
		}
		if top >= 0 && stack[top].object {
			stack[top].atName = true // a value ended
		}
	}
}

// loneSurrogate reports a \u escape of a UTF-16 surrogate not in a
// high-low pair, which encoding/json silently turns into U+FFFD.
func loneSurrogate(b []byte) bool {
	surrogate := func(i int) (uint64, bool) { // the escape at b[i:], if any
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		return n, err == nil && n >= 0xD800 && n <= 0xDFFF
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		n, ok := surrogate(i)
		if !ok {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		if n >= 0xDC00 { // a low surrogate first
			return true
		}
		low, ok := surrogate(i + 6)
		if !ok || low < 0xDC00 {
			return true
		}
		i += 11
	}
	return false
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

func (v *Verifier) parseHeader(seg string) (header, error) {
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
	if err := v.checkType(typ, fields["typ"] != nil); err != nil {
		return h, err
	}
	// crit names extensions the verifier must understand, and it knows
	// none (RFC 7515 §4.1.11); golang-jwt ignores crit.
	if _, ok := fields["crit"]; ok {
		return h, fail(ErrMalformed, "token header has crit, and no extensions are supported")
	}
	if err := stringField(fields, "kid", &h.kid, "header"); err != nil {
		return h, err
	}
	_, h.hasKid = fields["kid"]
	return h, nil
}

// checkType checks the header's "typ" against the configured Types,
// compared without case and without an "application/" prefix (RFC 7515
// §4.1.9).
func (v *Verifier) checkType(typ string, present bool) error {
	if !present {
		if v.types != nil {
			return fail(ErrMalformed, "token header has no typ, want one of %s", strings.Join(v.types, ", "))
		}
		return nil
	}
	t := strings.ToLower(typ)
	t = strings.TrimPrefix(t, "application/")
	allowed := v.types
	if allowed == nil {
		allowed = []string{"jwt"}
	}
	for _, a := range allowed {
		if t == a {
			return nil
		}
	}
	return fail(ErrMalformed, "token header typ is %s, want %s", quote(typ), strings.Join(allowed, " or "))
}

// parseClaims decodes a payload.
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
// are truncated toward zero. golang-jwt treats a null or a string "exp"
// as absent; here it is an error.
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
