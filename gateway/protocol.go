package gateway

import (
	"encoding/json"
	"strconv"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// Subprotocol is the WebSocket subprotocol of the gateway's JSON protocol,
// described in PROTOCOL.md.
const Subprotocol = "duplex.v1.json"

// Error is an error reply to a command; the connection stays open. Its
// codes are listed in PROTOCOL.md.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "gateway: " + e.Message + " (" + strconv.Itoa(e.Code) + ")" }

// The error replies of PROTOCOL.md.
var (
	ErrInternal          = &Error{100, "internal error"}
	ErrNotConnected      = &Error{101, "not connected"}
	ErrUnknownChannel    = &Error{102, "unknown namespace or invalid channel"}
	ErrPermissionDenied  = &Error{103, "permission denied"}
	ErrMethodNotFound    = &Error{104, "unknown method"}
	ErrAlreadySubscribed = &Error{105, "already subscribed"}
	ErrLimitExceeded     = &Error{106, "too many channels"}
	ErrBadRequest        = &Error{107, "bad request"}
	ErrNotAvailable      = &Error{108, "not available in this namespace"}
	ErrInvalidToken      = &Error{109, "invalid token"}
	ErrNotSubscribed     = &Error{110, "not subscribed"}
	ErrUnrecoverable     = &Error{111, "position from another epoch"}
	ErrAlreadyConnected  = &Error{112, "already connected"}
	ErrUnavailable       = &Error{113, "unavailable: the broker is unreachable; retry later"}
)

// badRequest is ErrBadRequest with a message saying what is wrong.
func badRequest(msg string) *Error { return &Error{ErrBadRequest.Code, "bad request: " + msg} }

// Close codes of PROTOCOL.md: 4000–4499 ask the client to reconnect,
// 4500–4999 not to.
const (
	CloseServerError         websocket.StatusCode = 4000
	CloseConnectTimeout      websocket.StatusCode = 4001
	CloseSlowConsumer        websocket.StatusCode = 4002
	CloseTokenExpired        websocket.StatusCode = 4003
	CloseReconnect           websocket.StatusCode = 4004
	CloseTooManyRequests     websocket.StatusCode = 4005
	CloseConnectionLimit     websocket.StatusCode = 4006
	CloseBadRequest          websocket.StatusCode = 4500
	CloseUnauthorized        websocket.StatusCode = 4501
	CloseDisconnected        websocket.StatusCode = 4502
	CloseSubprotocolRequired websocket.StatusCode = 4505
)

// UnsubscribeServer is the code of an unsubscribe push sent because the
// backend unsubscribed the user.
const UnsubscribeServer = 2000

// command is every client command; fields not used by its method are
// ignored, as are unknown fields, so that newer clients work with older
// servers.
type command struct {
	ID      uint64           `json:"id"`
	Method  string           `json:"method"`
	Token   string           `json:"token"`
	Name    string           `json:"name"`
	Version string           `json:"version"`
	Channel string           `json:"channel"`
	Since   *broker.Position `json:"since"`
	Data    json.RawMessage  `json:"data"`
	Limit   *int             `json:"limit"`
	// Subs, in connect, are the positions of the server-side subscriptions
	// the client had, for recovery.
	Subs    map[string]*broker.Position `json:"subs"`
	Reverse bool                        `json:"reverse"`
	Params  *rpcParams                  `json:"params"`
}

type reply struct {
	ID     uint64 `json:"id"`
	Result any    `json:"result,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

type connectResult struct {
	Client  string `json:"client"`
	User    string `json:"user"`
	Expires int64  `json:"expires,omitempty"`
	Ping    int    `json:"ping"`
	Version string `json:"version"`
	// Data is the connect proxy's data for the client.
	Data json.RawMessage `json:"data,omitempty"`
}

type refreshResult struct {
	Expires int64 `json:"expires"`
}

type subscribeResult struct {
	Epoch        string             `json:"epoch,omitempty"`
	Offset       uint64             `json:"offset,omitempty"`
	Recoverable  bool               `json:"recoverable"`
	Recovered    *bool              `json:"recovered,omitempty"`
	Publications []*json.RawMessage `json:"publications,omitempty"`
	Latest       bool               `json:"latest,omitempty"`
	// Data is the subscribe proxy's data for the client.
	Data json.RawMessage `json:"data,omitempty"`
}

type publishResult struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

type presenceResult struct {
	Clients map[string]*broker.ClientInfo `json:"clients"`
}

type historyResult struct {
	Publications []*json.RawMessage `json:"publications"`
	Offset       uint64             `json:"offset"`
	Epoch        string             `json:"epoch"`
	// Truncated: the reply holds only the publications the reply budget
	// had room for.
	Truncated bool `json:"truncated,omitempty"`
}

type emptyResult struct{}

// encodeReply encodes a reply as one line of the protocol.
func encodeReply(id uint64, result any, e *Error) []byte {
	if _, ok := result.(emptyResult); ok && e == nil {
		// ping's reply, the most frequent one, without reflection.
		b := make([]byte, 0, len(`{"id":,"result":{}}`)+20)
		b = append(b, `{"id":`...)
		b = strconv.AppendUint(b, id, 10)
		return append(b, `,"result":{}}`...)
	}
	b, err := json.Marshal(reply{ID: id, Result: result, Error: e})
	if err != nil {
		// Results are the gateway's own types; failing to encode one is a
		// bug, reported to the client rather than panicking.
		b, _ = json.Marshal(reply{ID: id, Error: ErrInternal})
	}
	return b
}

// appendPublication appends a publication push. It is encoded once per
// publication and shared by every subscriber. Channel names and epochs
// never need escaping (validChannel, base64url epochs).
func appendPublication(b []byte, pub *broker.Publication) []byte {
	b = append(b, `{"push":"pub","channel":"`...)
	b = append(b, pub.Channel...)
	b = append(b, '"')
	if pub.Position.Epoch != "" {
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, pub.Position.Offset, 10)
		b = append(b, `,"epoch":"`...)
		b = append(b, pub.Position.Epoch...)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, pub.Data...)
	if pub.Info != nil {
		b = append(b, `,"info":`...)
		info, _ := json.Marshal(pub.Info) // strings and compact JSON: cannot fail
		b = append(b, info...)
	}
	return append(b, '}')
}

// encodePresenceEvent encodes a join or leave push.
func encodePresenceEvent(kind, channel string, info *broker.ClientInfo) []byte {
	b, _ := json.Marshal(struct {
		Push    string             `json:"push"`
		Channel string             `json:"channel"`
		Info    *broker.ClientInfo `json:"info"`
	}{kind, channel, info})
	return b
}

func encodeGap(channel, epoch string, from, to uint64) []byte {
	b, _ := json.Marshal(struct {
		Push    string `json:"push"`
		Channel string `json:"channel"`
		Epoch   string `json:"epoch"`
		From    uint64 `json:"from"`
		To      uint64 `json:"to"`
	}{"gap", channel, epoch, from, to})
	return b
}

func encodeUnsubscribePush(channel string, code int, reason string) []byte {
	b, _ := json.Marshal(struct {
		Push    string `json:"push"`
		Channel string `json:"channel"`
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
	}{"unsubscribe", channel, code, reason})
	return b
}

// encodeReset is the gap push that says a stream started again under a
// new epoch: what followed the client's position in the old one may be
// lost, and offsets 1 to to of the new one are (to is 0 when nothing of it
// is missing).
func encodeReset(channel, epoch string, to uint64) []byte {
	b, _ := json.Marshal(struct {
		Push    string `json:"push"`
		Channel string `json:"channel"`
		Epoch   string `json:"epoch"`
		From    uint64 `json:"from"`
		To      uint64 `json:"to"`
		Reset   bool   `json:"reset"`
	}{"gap", channel, epoch, 1, to, true})
	return b
}
