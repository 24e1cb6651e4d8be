package redis

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/duplexws/duplex/gateway/broker"
)

// What travels through Redis is bytes for Go to read, not JSON: a
// ClientInfo's Info and a publication's Data come back byte for byte, and
// the Lua scripts find the user of a presence member by its length prefix.
//
// A ClientInfo is "-" for nil, else
//
//	<len>:<user><len>:<client>, then "-" for a nil Info or <len>:<info>
//
// with decimal lengths. A publication's body is its ClientInfo followed by
// its Data. A pub/sub message is one of
//
//	P<offset> <epoch> <body>   a publication (offset 0 and no epoch without history)
//	J<ClientInfo>              a join
//	L<ClientInfo>              a leave
//	C<data>                    a control message

// Message kinds, the first byte of a pub/sub message.
const (
	kindPublication = 'P'
	kindJoin        = 'J'
	kindLeave       = 'L'
	kindControl     = 'C'
)

var errMalformed = errors.New("redis broker: malformed message")

func appendLengthPrefixed[T ~string | ~[]byte](b []byte, s T) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func appendInfo(b []byte, info *broker.ClientInfo) []byte {
	if info == nil {
		return append(b, '-')
	}
	b = appendLengthPrefixed(b, info.User)
	b = appendLengthPrefixed(b, info.Client)
	if info.Info == nil {
		return append(b, '-')
	}
	return appendLengthPrefixed(b, info.Info)
}

// appendBody appends a publication's body.
func appendBody(b []byte, info *broker.ClientInfo, data json.RawMessage) []byte {
	return append(appendInfo(b, info), data...)
}

// cutLengthPrefixed splits "<len>:<s><rest>".
func cutLengthPrefixed(m string) (s, rest string, err error) {
	n, after, ok := strings.Cut(m, ":")
	if !ok {
		return "", "", errMalformed
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(after) {
		return "", "", errMalformed
	}
	return after[:l], after[l:], nil
}

// parseInfo decodes a ClientInfo at the start of m and returns the rest.
func parseInfo(m string) (*broker.ClientInfo, string, error) {
	if strings.HasPrefix(m, "-") {
		return nil, m[1:], nil
	}
	user, m, err := cutLengthPrefixed(m)
	if err != nil {
		return nil, "", err
	}
	client, m, err := cutLengthPrefixed(m)
	if err != nil {
		return nil, "", err
	}
	// The strings are cloned so that a retained ClientInfo does not pin
	// the whole message.
	info := &broker.ClientInfo{Client: strings.Clone(client), User: strings.Clone(user)}
	if strings.HasPrefix(m, "-") {
		return info, m[1:], nil
	}
	raw, m, err := cutLengthPrefixed(m)
	if err != nil {
		return nil, "", err
	}
	info.Info = json.RawMessage(raw)
	return info, m, nil
}

// parseBody decodes a publication's body.
func parseBody(channel, body string, pos broker.Position) (*broker.Publication, error) {
	info, data, err := parseInfo(body)
	if err != nil {
		return nil, err
	}
	return &broker.Publication{Channel: channel, Position: pos, Info: info, Data: json.RawMessage(data)}, nil
}

// parsePublication decodes a pub/sub message "P<offset> <epoch> <body>"
// without its kind byte.
func parsePublication(channel, m string) (*broker.Publication, error) {
	off, m, ok := strings.Cut(m, " ")
	if !ok {
		return nil, errMalformed
	}
	offset, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return nil, errMalformed
	}
	epoch, body, ok := strings.Cut(m, " ")
	if !ok {
		return nil, errMalformed
	}
	return parseBody(channel, body, broker.Position{Offset: offset, Epoch: strings.Clone(epoch)})
}

// parseEntryOffset returns the offset of a stream entry ID "<offset>-0".
func parseEntryOffset(id string) (uint64, error) {
	off, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return 0, errMalformed
	}
	return n, nil
}
