// Package deflate implements the permessage-deflate extension of RFC 7692
// for the websocket package: the negotiation of its parameters in
// Sec-WebSocket-Extensions (sections 5 and 7.1), and per-connection
// compressors and decompressors (section 7.2) built for many connections:
// the heavy DEFLATE state is pooled and shared, and a connection with
// context takeover keeps only its history window between messages.
//
// Memory: with context takeover at 15 bits, an idle connection holds 16 KiB
// of history to compress (CompressorConfig.History) and the 32 KiB window
// the peer may refer to when inflating: about 48 KiB, measured at 49.4 KB
// per pair. Without context takeover it holds a few hundred bytes. Each
// message in flight borrows an encoder (about 400 KiB) or an inflater
// (about 70 KiB) from pools; steady-state compression and inflation into a
// caller's buffer allocate nothing.
//
// Files: extensions.go parses the header, negotiate.go the parameters;
// compress.go and decompress.go hold the per-connection types; lz77.go and
// huffman.go are the encoder, inflate.go the decoder.
//
// Everything here is sans-I/O apart from the io.Reader a MessageReader
// inflates from, starts no goroutines, and is not safe for concurrent use
// unless a type says otherwise.
package deflate

import (
	"errors"
	"strings"
)

// Extension is one element of a Sec-WebSocket-Extensions header: an
// extension name and its parameters, in the order they appeared (RFC 6455
// section 9.1).
type Extension struct {
	Name   string
	Params []Param
}

// Param is one extension parameter. Value is the unquoted value, valid only
// when HasValue is set.
type Param struct {
	Name     string
	Value    string
	HasValue bool
}

// ErrMalformedExtensions reports a Sec-WebSocket-Extensions header that does
// not follow the grammar of RFC 6455 section 9.1.
var ErrMalformedExtensions = errors.New("websocket: malformed Sec-WebSocket-Extensions header")

// ParseExtensions parses the values of every Sec-WebSocket-Extensions header
// line of a request or a response, in order, following RFC 6455 section 9.1:
//
//	extension-list = 1#extension
//	extension      = token *( ";" param )
//	param          = token [ "=" ( token / quoted-string ) ]
//
// Spaces and tabs are allowed around the separators, empty list elements are
// ignored (RFC 9110 section 5.6.1), and a quoted value must unquote to a
// token. Any other deviation makes the whole header unusable and returns
// ErrMalformedExtensions. No header, or only empty elements, gives nil.
func ParseExtensions(values []string) ([]Extension, error) {
	var exts []Extension
	for _, v := range values {
		p := parser{s: v}
		for {
			p.skipSpace()
			if p.done() {
				break
			}
			if p.peek() == ',' { // an empty list element
				p.i++
				continue
			}
			ext, err := p.extension()
			if err != nil {
				return nil, err
			}
			exts = append(exts, ext)
			p.skipSpace()
			if p.done() {
				break
			}
			if p.peek() != ',' {
				return nil, ErrMalformedExtensions
			}
			p.i++
		}
	}
	return exts, nil
}

// parser walks one header value.
type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

func (p *parser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) token() (string, error) {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", ErrMalformedExtensions
	}
	return p.s[start:p.i], nil
}

// extension parses an extension up to, not including, the next ',' or the
// end of the value.
func (p *parser) extension() (Extension, error) {
	name, err := p.token()
	if err != nil {
		return Extension{}, err
	}
	ext := Extension{Name: name}
	for {
		p.skipSpace()
		if p.done() || p.peek() == ',' {
			return ext, nil
		}
		if p.peek() != ';' {
			return Extension{}, ErrMalformedExtensions
		}
		p.i++
		p.skipSpace()
		param, err := p.param()
		if err != nil {
			return Extension{}, err
		}
		ext.Params = append(ext.Params, param)
	}
}

func (p *parser) param() (Param, error) {
	name, err := p.token()
	if err != nil {
		return Param{}, err
	}
	param := Param{Name: name}
	p.skipSpace()
	if p.done() || p.peek() != '=' {
		return param, nil
	}
	p.i++
	p.skipSpace()
	if p.done() {
		return Param{}, ErrMalformedExtensions
	}
	if p.peek() == '"' {
		param.Value, err = p.quotedString()
		// Section 9.1: the unescaped value must itself be a token.
		if err == nil && !isToken(param.Value) {
			err = ErrMalformedExtensions
		}
	} else {
		param.Value, err = p.token()
	}
	if err != nil {
		return Param{}, err
	}
	param.HasValue = true
	return param, nil
}

// quotedString parses a quoted-string (RFC 9110 section 5.6.4) and returns
// its unescaped content.
func (p *parser) quotedString() (string, error) {
	p.i++ // the opening quote
	start := p.i
	escaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if escaped {
				v = unescape(v)
			}
			return v, nil
		case c == '\\':
			if p.i+1 >= len(p.s) || !isQuotedPairChar(p.s[p.i+1]) {
				return "", ErrMalformedExtensions
			}
			escaped = true
			p.i += 2
		case isQdtext(c):
			p.i++
		default:
			return "", ErrMalformedExtensions
		}
	}
	return "", ErrMalformedExtensions // unterminated
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// isQdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80
}

// isQuotedPairChar: HTAB / SP / VCHAR / obs-text.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80
}

// String formats e the way it appears in a header: "name; p1; p2=value".
// Values are written bare: ParseExtensions accepts only token values, so
// they never need quoting.
func (e Extension) String() string {
	var b strings.Builder
	b.WriteString(e.Name)
	for _, p := range e.Params {
		b.WriteString("; ")
		b.WriteString(p.Name)
		if p.HasValue {
			b.WriteByte('=')
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

// FormatExtensions formats a list of extensions as one header value.
func FormatExtensions(exts []Extension) string {
	var b strings.Builder
	for i, e := range exts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}
