// Package httptoken reads HTTP header values that are comma-separated
// token lists (RFC 9110 section 5.6.1), such as Connection and Upgrade.
// The websocket package's handshakes and duplex proxy use it.
package httptoken

import (
	"net/http"
	"strings"
)

// Has reports whether any value of header name, read as a comma-separated
// token list, holds token, compared without case.
func Has(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
