package frame

import "unicode/utf8"

// Close codes with a meaning of their own in this package.
const (
	CodeNoStatus = 1005 // the peer's close frame carried no code (never sent)
)

// MaxCloseReason is the longest close reason that fits a control frame.
const MaxCloseReason = MaxControlPayload - 2

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000–1003, 1007–1011 and 3000–4999 (section 7.4). 1004, 1005, 1006
// and 1015 are reserved, 1012–2999 are unassigned to RFC 6455 endpoints,
// and 0–999 and 5000 and up are not used.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1011:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClosePayload decodes the payload of a close frame (section 5.5.1).
// An empty payload gives CodeNoStatus. A 1-byte payload, an invalid code and
// a reason that is not UTF-8 are errors.
func ParseClosePayload(p []byte) (code uint16, reason []byte, err error) {
	switch {
	case len(p) == 0:
		return CodeNoStatus, nil, nil
	case len(p) == 1:
		return 0, nil, ErrClosePayloadLength
	}
	code = uint16(p[0])<<8 | uint16(p[1])
	if !ValidCloseCode(code) {
		return 0, nil, ErrCloseCode
	}
	reason = p[2:]
	if !utf8.Valid(reason) {
		return 0, nil, ErrCloseReasonUTF8
	}
	return code, reason, nil
}

// AppendClosePayload appends a close payload for code and reason to dst.
// CodeNoStatus gives an empty payload. The caller checks the code and the
// length of the reason.
func AppendClosePayload(dst []byte, code uint16, reason string) []byte {
	if code == CodeNoStatus {
		return dst
	}
	dst = append(dst, byte(code>>8), byte(code))
	return append(dst, reason...)
}
