package websocket

import (
	"errors"
	"strconv"

	"github.com/duplexws/duplex/internal/frame"
)

// MessageType is the type of a data message.
type MessageType int

const (
	// MessageText is a message of UTF-8 text. Its content is validated.
	MessageText MessageType = MessageType(frame.OpText)
	// MessageBinary is a message of arbitrary bytes.
	MessageBinary MessageType = MessageType(frame.OpBinary)
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// StatusCode is a close code (RFC 6455 section 7.4), named after the IANA
// WebSocket Close Code Number Registry.
type StatusCode int

// The codes an endpoint may send, and the reserved ones it may see reported
// locally (never on the wire).
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	statusReserved        StatusCode = 1004
	// StatusNoStatusRcvd is reported when the peer's close frame had no
	// code. It is never sent.
	StatusNoStatusRcvd StatusCode = 1005
	// StatusAbnormalClosure is reported by CloseStatus when the connection
	// ended without a close frame. It is never sent.
	StatusAbnormalClosure         StatusCode = 1006
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	// StatusTLSHandshake is reserved for reporting a failed TLS handshake.
	// It is never sent.
	StatusTLSHandshake StatusCode = 1015
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:           "NormalClosure",
	StatusGoingAway:               "GoingAway",
	StatusProtocolError:           "ProtocolError",
	StatusUnsupportedData:         "UnsupportedData",
	statusReserved:                "Reserved",
	StatusNoStatusRcvd:            "NoStatusRcvd",
	StatusAbnormalClosure:         "AbnormalClosure",
	StatusInvalidFramePayloadData: "InvalidFramePayloadData",
	StatusPolicyViolation:         "PolicyViolation",
	StatusMessageTooBig:           "MessageTooBig",
	StatusMandatoryExtension:      "MandatoryExtension",
	StatusInternalError:           "InternalError",
	StatusTLSHandshake:            "TLSHandshake",
}

func (c StatusCode) String() string {
	if s, ok := statusNames[c]; ok {
		return s
	}
	return "StatusCode(" + strconv.Itoa(int(c)) + ")"
}

// CloseError is the close frame the peer sent: its code and reason. Read and
// the other methods return it, possibly wrapped, once the peer has closed.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return "websocket: closed by peer with " + strconv.Itoa(int(e.Code)) + " (" + e.Code.String() + ")"
	}
	return "websocket: closed by peer with " + strconv.Itoa(int(e.Code)) + " (" + e.Code.String() + "): " + e.Reason
}

// CloseStatus returns the code of the peer's close frame found in err's chain
// with errors.As, or -1 when there is none.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// ProtocolError reports that this endpoint failed the connection because
// the peer broke RFC 6455 or exceeded a limit. Code is the close code this
// endpoint sent: StatusProtocolError for a framing violation,
// StatusInvalidFramePayloadData for invalid UTF-8, StatusMessageTooBig for a
// message over the read limit, StatusPolicyViolation for a peer over another
// limit (errors.Is tells which: ErrMessageTimeout, ErrTooManyFragments,
// ErrRateLimited).
type ProtocolError struct {
	Code   StatusCode
	Reason string

	err error // the limit exceeded, if one was
}

func (e *ProtocolError) Error() string { return "websocket: " + e.Reason }

// Unwrap returns the limit the peer exceeded (ErrMessageTimeout,
// ErrTooManyFragments, ErrRateLimited), or nil.
func (e *ProtocolError) Unwrap() error { return e.err }

// errFromFrame converts an error of the wire core into a ProtocolError.
func errFromFrame(err *frame.Error) *ProtocolError {
	return &ProtocolError{Code: StatusCode(err.Code), Reason: err.Reason}
}
