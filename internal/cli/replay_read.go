package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// recordLine is any line of a recording: the fields of handshakeRecord,
// frameRecord and eventRecord together.
type recordLine struct {
	Type           string         `json:"type"`
	Time           time.Time      `json:"time"`
	Conn           int64          `json:"conn"`
	Request        requestRecord  `json:"request"`
	Response       responseRecord `json:"response"`
	Dir            string         `json:"dir"`
	Opcode         string         `json:"opcode"`
	Fin            bool           `json:"fin"`
	RSV1           bool           `json:"rsv1"`
	Text           *string        `json:"text"`
	Base64         []byte         `json:"base64"`
	Inflated       *string        `json:"inflated"`
	InflatedBase64 []byte         `json:"inflated_base64"`
	InflateError   string         `json:"inflate_error"`
	CloseCode      int            `json:"close_code"`
	CloseReason    string         `json:"close_reason"`
	ByProxy        bool           `json:"by_proxy"`
	Dropped        bool           `json:"dropped"`
}

// replayMessage is a data message of a recording.
type replayMessage struct {
	at      time.Duration // from the start of the recording
	typ     websocket.MessageType
	data    []byte
	unknown string // why the content is not known (it did not inflate)
}

// replayConn is one connection of a recording.
type replayConn struct {
	n       int64
	at      time.Duration // from the start of the recording
	request requestRecord
	status  int
	sends   []replayMessage // the client's messages
	answers []replayMessage // the server's messages

	clientClose       *websocket.CloseError // the client's close frame, if it sent one first
	serverClose       websocket.StatusCode  // the server's close code, if it closed first
	serverClosedFirst bool
}

// messageBuilder puts one direction's frames together into messages.
type messageBuilder struct {
	cur        *replayMessage
	compressed bool
}

func (b *messageBuilder) add(l *recordLine, start time.Time) (*replayMessage, error) {
	switch l.Opcode {
	case "text", "binary":
		typ := websocket.MessageText
		if l.Opcode == "binary" {
			typ = websocket.MessageBinary
		}
		b.cur = &replayMessage{at: l.Time.Sub(start), typ: typ}
		b.compressed = l.RSV1
	case "continuation":
		if b.cur == nil {
			return nil, errors.New("a continuation frame with no message before it")
		}
	default:
		return nil, nil
	}
	m := b.cur
	if !b.compressed {
		if l.Text != nil {
			m.data = append(m.data, *l.Text...)
		} else {
			m.data = append(m.data, l.Base64...)
		}
	}
	if !l.Fin {
		return nil, nil
	}
	b.cur = nil
	if b.compressed {
		switch {
		case l.Inflated != nil:
			m.data = []byte(*l.Inflated)
		case l.InflateError != "":
			m.unknown = l.InflateError
		default:
			m.data = l.InflatedBase64
		}
	}
	if m.data == nil {
		m.data = []byte{}
	}
	return m, nil
}

// readRecording reads a recording into its connections, in the order
// they started.
func readRecording(r io.Reader) ([]*replayConn, error) {
	dec := json.NewDecoder(r)
	conns := map[int64]*replayConn{}
	builders := map[int64]*[2]messageBuilder{}
	var order []*replayConn
	var start time.Time
	for line := 1; ; line++ {
		var l recordLine
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("object %d: %v", line, err)
		}
		if start.IsZero() {
			start = l.Time
		}
		switch l.Type {
		case "handshake":
			rc := &replayConn{n: l.Conn, at: l.Time.Sub(start), request: l.Request, status: l.Response.Status}
			conns[l.Conn] = rc
			builders[l.Conn] = new([2]messageBuilder)
			order = append(order, rc)
			continue
		case "frame":
		default:
			continue
		}
		rc := conns[l.Conn]
		if rc == nil {
			return nil, fmt.Errorf("object %d: a frame of connection %d before its handshake", line, l.Conn)
		}
		if l.ByProxy || (l.Dropped && l.Dir == "in") {
			continue // the server never had it
		}
		if l.Opcode == "close" {
			switch {
			case l.Dir == "in" && rc.clientClose == nil && !rc.serverClosedFirst:
				// A close frame without a code (1005) cannot be sent
				// again as it was: 1000 is sent instead.
				code := websocket.StatusCode(l.CloseCode)
				if code == 0 {
					code = websocket.StatusNoStatusRcvd
				}
				rc.clientClose = &websocket.CloseError{Code: code, Reason: l.CloseReason}
			case l.Dir == "out" && rc.clientClose == nil && !rc.serverClosedFirst:
				rc.serverClosedFirst = true
				rc.serverClose = websocket.StatusCode(l.CloseCode)
			}
			continue
		}
		b := &builders[l.Conn][0]
		if l.Dir == "out" {
			b = &builders[l.Conn][1]
		}
		m, err := b.add(&l, start.Add(rc.at))
		if err != nil {
			return nil, fmt.Errorf("object %d: %v", line, err)
		}
		if m == nil {
			continue
		}
		if l.Dir == "in" {
			if m.unknown != "" {
				return nil, fmt.Errorf("object %d: the client's message cannot be replayed: %s", line, m.unknown)
			}
			rc.sends = append(rc.sends, *m)
		} else {
			rc.answers = append(rc.answers, *m)
		}
	}
	if len(order) == 0 {
		return nil, errors.New("no handshake in it: not a recording of duplex proxy --record")
	}
	return order, nil
}
