package frame

// Close codes this package reports in its errors (RFC 6455 section 7.4.1).
const (
	CodeProtocolError = 1002
	CodeInvalidData   = 1007
	CodeTooBig        = 1009
)

// Error is a violation of the protocol found on the wire. Code is the close
// code the endpoint must send when it fails the connection because of it.
type Error struct {
	Code   uint16
	Reason string // short, ASCII, fits a close frame
}

func (e *Error) Error() string { return "websocket: " + e.Reason }

// The errors are allocated once so that reporting them costs nothing.
var (
	ErrNonMinimalLength   = &Error{CodeProtocolError, "frame length not minimally encoded"}
	ErrLengthOverflow     = &Error{CodeProtocolError, "frame length has its most significant bit set"}
	ErrReservedBits       = &Error{CodeProtocolError, "reserved bits set"}
	ErrReservedOpcode     = &Error{CodeProtocolError, "reserved opcode"}
	ErrFragmentedControl  = &Error{CodeProtocolError, "fragmented control frame"}
	ErrControlTooLong     = &Error{CodeProtocolError, "control frame payload over 125 bytes"}
	ErrUnmasked           = &Error{CodeProtocolError, "client frame not masked"}
	ErrMasked             = &Error{CodeProtocolError, "server frame masked"}
	ErrContinuation       = &Error{CodeProtocolError, "continuation frame without a message to continue"}
	ErrUnfinishedMessage  = &Error{CodeProtocolError, "new data frame inside an unfinished message"}
	ErrClosePayloadLength = &Error{CodeProtocolError, "close payload of 1 byte"}
	ErrCloseCode          = &Error{CodeProtocolError, "invalid close code"}
	ErrCloseReasonUTF8    = &Error{CodeInvalidData, "invalid UTF-8 in close reason"}
	ErrInvalidUTF8        = &Error{CodeInvalidData, "invalid UTF-8 in text message"}
)
