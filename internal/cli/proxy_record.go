package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/internal/wiretrace"
)

// recorder writes --record: one JSON object per line. It is safe for
// concurrent use.
type recorder struct {
	mu       sync.Mutex
	enc      *json.Encoder
	firstErr error
}

func newRecorder(w io.Writer) *recorder { return &recorder{enc: json.NewEncoder(w)} }

// The objects of a recording. Their fields are the format duplex replay
// reads; new fields may be added, none renamed.
type (
	handshakeRecord struct {
		Type     string         `json:"type"` // "handshake"
		Time     time.Time      `json:"time"`
		Conn     int64          `json:"conn"`
		Client   string         `json:"client"`
		Request  requestRecord  `json:"request"`
		Response responseRecord `json:"response"`
	}
	requestRecord struct {
		Method  string      `json:"method"`
		URI     string      `json:"uri"`
		Host    string      `json:"host"`
		Headers http.Header `json:"headers"`
	}
	responseRecord struct {
		Status  int         `json:"status"`
		Reason  string      `json:"reason"`
		Headers http.Header `json:"headers"`
	}
	frameRecord struct {
		Type           string    `json:"type"` // "frame"
		Time           time.Time `json:"time"`
		Conn           int64     `json:"conn"`
		Dir            string    `json:"dir"` // "in": client to server; "out": server to client
		Opcode         string    `json:"opcode"`
		Fin            bool      `json:"fin"`
		RSV1           bool      `json:"rsv1"`
		Masked         bool      `json:"masked"`
		Length         int64     `json:"length"`
		Text           *string   `json:"text,omitempty"`   // the payload, unmasked, when it is text
		Base64         []byte    `json:"base64,omitempty"` // ... or else, in base64
		Inflated       *string   `json:"inflated,omitempty"`
		InflatedBase64 []byte    `json:"inflated_base64,omitempty"`
		InflateError   string    `json:"inflate_error,omitempty"`
		CloseCode      int       `json:"close_code,omitempty"`
		CloseReason    string    `json:"close_reason,omitempty"`
		ByProxy        bool      `json:"by_proxy,omitempty"`
		Dropped        bool      `json:"dropped,omitempty"` // not passed on
	}
	eventRecord struct {
		Type  string    `json:"type"` // "event"
		Time  time.Time `json:"time"`
		Conn  int64     `json:"conn"`
		Event string    `json:"event"`
	}
)

func (r *recorder) write(v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr != nil {
		return
	}
	r.firstErr = r.enc.Encode(v)
}

// err returns the first error writing the recording met.
func (r *recorder) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstErr
}

func (r *recorder) handshake(at time.Time, conn int64, client string, req *http.Request, resp *http.Response) {
	r.write(handshakeRecord{
		Type: "handshake", Time: at, Conn: conn, Client: client,
		Request:  requestRecord{Method: req.Method, URI: req.URL.RequestURI(), Host: req.Host, Headers: redactedHeader(req.Header)},
		Response: responseRecord{Status: resp.StatusCode, Reason: strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode))), Headers: redactedHeader(resp.Header)},
	})
}

func (r *recorder) frame(ev *frameEvent) {
	rec := frameRecord{
		Type: "frame", Time: ev.at, Conn: ev.conn, Dir: ev.dir, Opcode: ev.h.Opcode.String(),
		Fin: ev.h.Fin, RSV1: ev.h.RSV&frame.RSV1 != 0, Masked: ev.h.Masked, Length: ev.h.Length,
		InflateError: ev.inflateErr, ByProxy: ev.byProxy, Dropped: ev.dropped,
	}
	if ev.msgOp == frame.OpText && !ev.compressed && isText(ev.payload) {
		s := string(ev.payload)
		rec.Text = &s
	} else {
		rec.Base64 = ev.payload
	}
	if ev.inflated != nil || (ev.compressed && ev.h.Fin && ev.inflateErr == "") {
		if ev.msgOp == frame.OpText && isText(ev.inflated) {
			s := string(ev.inflated)
			rec.Inflated = &s
		} else {
			rec.InflatedBase64 = ev.inflated
		}
	}
	if ev.h.Opcode == frame.OpClose {
		if code, reason, err := frame.ParseClosePayload(ev.payload); err == nil && code != frame.CodeNoStatus {
			rec.CloseCode, rec.CloseReason = int(code), string(reason)
		}
	}
	r.write(rec)
}

// isText reports whether b is valid UTF-8, which a JSON string carries as
// it is.
func isText(b []byte) bool { return utf8.Valid(b) }

// redactedHeader returns h with the values of credential headers hidden.
func redactedHeader(h http.Header) http.Header {
	out := http.Header{}
	for name, values := range h {
		for _, v := range values {
			if name == "User-Agent" && v == "" {
				continue
			}
			_, shown, _ := strings.Cut(wiretrace.RedactHeader(name+": "+v), ": ")
			out[name] = append(out[name], shown)
		}
	}
	return out
}
