package websocket

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/duplexws/duplex/internal/httptoken"
)

// keyGUID is appended to the client's key to compute Sec-WebSocket-Accept
// (RFC 6455 section 1.3).
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(keyGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// headerHasToken reports whether any value of header name, read as a
// comma-separated token list, holds token, compared without case
// (RFC 7230 section 3.2.6).
var headerHasToken = httptoken.Has

// headerTokens returns the tokens of every value of header name.
func headerTokens(h http.Header, name string) []string {
	var tokens []string
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tokens = append(tokens, t)
			}
		}
	}
	return tokens
}

// validKey reports whether key is the base64 encoding of 16 bytes
// (section 4.2.1, item 5).
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) == 16
}

// isToken reports whether s is an HTTP token (RFC 7230 section 3.2.6), as
// subprotocol names must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
