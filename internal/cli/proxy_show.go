package cli

import (
	"bytes"
	"compress/flate"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/internal/wiretrace"
	"github.com/duplexws/duplex/websocket"
)

// deflateParams is what the server's handshake answer agreed on for
// permessage-deflate (RFC 7692 section 7.1).
type deflateParams struct {
	serverNoContext, clientNoContext bool
	serverWindowBits                 int
	clientWindowBits                 int
}

// negotiatedDeflate returns the permessage-deflate agreement of a 101
// answer's headers, or nil when there is none.
func negotiatedDeflate(h http.Header) *deflateParams {
	exts, err := deflate.ParseExtensions(h.Values("Sec-WebSocket-Extensions"))
	if err != nil {
		return nil
	}
	for _, e := range exts {
		if e.Name != deflate.ExtensionName {
			continue
		}
		p := &deflateParams{serverWindowBits: deflate.MaxWindowBits, clientWindowBits: deflate.MaxWindowBits}
		for _, param := range e.Params {
			bits, _ := strconv.Atoi(param.Value)
			switch strings.ToLower(param.Name) {
			case "server_no_context_takeover":
				p.serverNoContext = true
			case "client_no_context_takeover":
				p.clientNoContext = true
			case "server_max_window_bits":
				if bits >= deflate.MinWindowBits && bits <= deflate.MaxWindowBits {
					p.serverWindowBits = bits
				}
			case "client_max_window_bits":
				if bits >= deflate.MinWindowBits && bits <= deflate.MaxWindowBits {
					p.clientWindowBits = bits
				}
			}
		}
		return p
	}
	return nil
}

// deflateTail ends a permessage-deflate message for compress/flate: the
// empty stored block the sender removed (RFC 7692 section 7.2.2), then a
// final empty stored block so that the reader ends cleanly.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// dirView follows one direction of a connection for display: which
// message a frame belongs to, and the inflater's window. It inflates with
// compress/flate, independent of internal/deflate, so that the proxy is a
// second opinion on what our own compressor sends. It is used by the
// direction's reader goroutine only.
type dirView struct {
	conn  int64
	dir   string
	limit int64

	deflate    bool
	noContext  bool   // the sender starts each message with an empty window
	window     int    // bytes of history kept with context takeover
	dict       []byte // the last window bytes of this direction's messages
	windowLost bool   // a message did not inflate: the window is unknown

	msgOp         frame.Opcode // the data message in progress
	msgCompressed bool
	msg           []byte // its compressed payload so far
	msgTooBig     bool
}

func newDirView(conn int64, dir string, pmd *deflateParams, fromServer bool, limit int64) *dirView {
	v := &dirView{conn: conn, dir: dir, limit: limit}
	if pmd != nil {
		v.deflate = true
		if fromServer {
			v.noContext, v.window = pmd.serverNoContext, 1<<pmd.serverWindowBits
		} else {
			v.noContext, v.window = pmd.clientNoContext, 1<<pmd.clientWindowBits
		}
	}
	return v
}

// frameEvent is a frame as it is shown and recorded.
type frameEvent struct {
	at         time.Time
	conn       int64
	dir        string
	h          frame.Header
	payload    []byte       // unmasked
	msgOp      frame.Opcode // the opcode of the message the frame belongs to
	compressed bool         // part of a compressed message
	inflated   []byte       // on the last frame of a compressed message
	inflateErr string       // ... or why it did not inflate
	byProxy    bool         // a close frame of the proxy's own
	dropped    bool         // not passed on: the proxy had closed the connection
}

// observe returns the event of a frame whose payload is wire (masked when
// the header says so; it is not changed).
func (v *dirView) observe(at time.Time, h frame.Header, wire []byte, byProxy bool) *frameEvent {
	payload := wire
	if h.Masked {
		payload = append([]byte(nil), wire...)
		frame.Mask(h.MaskKey, 0, payload)
	}
	ev := &frameEvent{at: at, conn: v.conn, dir: v.dir, h: h, payload: payload, msgOp: h.Opcode, byProxy: byProxy}
	if h.Opcode.IsControl() {
		return ev
	}
	if h.Opcode != frame.OpContinuation {
		v.msgOp = h.Opcode
		v.msgCompressed = v.deflate && h.RSV&frame.RSV1 != 0
		v.msg, v.msgTooBig = v.msg[:0], false
	}
	ev.msgOp, ev.compressed = v.msgOp, v.msgCompressed
	if !v.msgCompressed {
		return ev
	}
	if int64(len(v.msg))+int64(len(payload)) > v.limit {
		v.msgTooBig = true
	} else if !v.msgTooBig {
		v.msg = append(v.msg, payload...)
	}
	if h.Fin {
		ev.inflated, ev.inflateErr = v.inflate()
	}
	return ev
}

// inflate inflates the message collected, with the window of the messages
// before it when the sender takes its context over.
func (v *dirView) inflate() ([]byte, string) {
	defer func() { v.msg = v.msg[:0] }()
	switch {
	case v.msgTooBig:
		v.windowLost = !v.noContext
		return nil, fmt.Sprintf("not inflated: the message is over --read-limit %d", v.limit)
	case v.windowLost:
		return nil, "not inflated: an earlier message in this direction did not inflate, so the window it refers to is unknown"
	}
	var dict []byte
	if !v.noContext {
		dict = v.dict
	}
	fr := flate.NewReaderDict(io.MultiReader(bytes.NewReader(v.msg), bytes.NewReader(deflateTail)), dict)
	out, err := io.ReadAll(io.LimitReader(fr, v.limit+1))
	if err == nil && int64(len(out)) > v.limit {
		err = fmt.Errorf("inflates to over --read-limit %d", v.limit)
	}
	if err != nil {
		v.windowLost = !v.noContext
		return nil, "inflate failed: " + err.Error()
	}
	if !v.noContext {
		v.dict = append(v.dict, out...)
		if len(v.dict) > v.window {
			v.dict = append([]byte(nil), v.dict[len(v.dict)-v.window:]...)
		}
	}
	return out, ""
}

// shown is the payload a filter's has= looks into: the inflated message
// on the last frame of a compressed one, else the unmasked payload.
func (ev *frameEvent) shown() []byte {
	if ev.compressed {
		return ev.inflated
	}
	return ev.payload
}

// frameFilter is what --filter chooses. Values of one key are
// alternatives; all keys given must match.
type frameFilter struct {
	conns []int64
	dirs  []string
	ops   []string
	has   []string
}

// parseFrameFilter parses the --filter terms.
func parseFrameFilter(terms []string) (frameFilter, error) {
	var f frameFilter
	for _, term := range terms {
		key, value, ok := strings.Cut(term, "=")
		if !ok || value == "" {
			return f, fmt.Errorf("--filter wants KEY=VALUE (conn, dir, op or has), not %q", term)
		}
		switch key {
		case "conn":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 1 {
				return f, fmt.Errorf("--filter conn= wants a connection number from 1, not %q", value)
			}
			f.conns = append(f.conns, n)
		case "dir":
			if value != "in" && value != "out" {
				return f, fmt.Errorf("--filter dir= wants in or out, not %q", value)
			}
			f.dirs = append(f.dirs, value)
		case "op":
			switch value {
			case "text", "binary", "continuation", "close", "ping", "pong", "data", "control":
			default:
				return f, fmt.Errorf("--filter op= wants text, binary, continuation, close, ping, pong, data or control, not %q", value)
			}
			f.ops = append(f.ops, value)
		case "has":
			f.has = append(f.has, value)
		default:
			return f, fmt.Errorf("--filter key must be conn, dir, op or has, not %q", key)
		}
	}
	return f, nil
}

func (f frameFilter) matchConn(n int64) bool { return len(f.conns) == 0 || slices.Contains(f.conns, n) }

func (f frameFilter) match(ev *frameEvent) bool {
	if !f.matchConn(ev.conn) || (len(f.dirs) > 0 && !slices.Contains(f.dirs, ev.dir)) {
		return false
	}
	if len(f.ops) > 0 {
		class := "data"
		if ev.h.Opcode.IsControl() {
			class = "control"
		}
		if !slices.Contains(f.ops, ev.h.Opcode.String()) && !slices.Contains(f.ops, class) {
			return false
		}
	}
	if len(f.has) > 0 {
		shown := ev.shown()
		if !slices.ContainsFunc(f.has, func(s string) bool { return bytes.Contains(shown, []byte(s)) }) {
			return false
		}
	}
	return true
}

// framePrinter prints what the proxy sees, one line per frame (a JSON
// payload indented with --json may take more). It is safe for concurrent
// use: each connection's two readers print through it.
type framePrinter struct {
	mu       sync.Mutex
	w        io.Writer
	json     bool
	maxShown int // bytes of a payload printed; 0 for all
	quiet    bool
	filter   frameFilter
}

func newFramePrinter(w io.Writer, json bool, maxShown int, quiet bool, filter frameFilter) *framePrinter {
	return &framePrinter{w: w, json: json, maxShown: maxShown, quiet: quiet, filter: filter}
}

// clockStamp is the time at the start of each line.
func clockStamp(t time.Time) string { return t.Format("15:04:05.000000") }

func (p *framePrinter) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, s+"\n")
}

// handshake prints the request as it went to the server and its answer,
// credentials hidden.
func (p *framePrinter) handshake(at time.Time, conn int64, client string, req *http.Request, resp *http.Response) {
	if p.quiet || !p.filter.matchConn(conn) {
		return
	}
	var b strings.Builder
	prefix := fmt.Sprintf("%s #%d ", clockStamp(at), conn)
	fmt.Fprintf(&b, "%sin  %s %s HTTP/1.1 (from %s)\n", prefix, req.Method, req.URL.RequestURI(), client)
	fmt.Fprintf(&b, "%sin  Host: %s\n", prefix, req.Host)
	for _, line := range headerLines(req.Header) {
		fmt.Fprintf(&b, "%sin  %s\n", prefix, line)
	}
	fmt.Fprintf(&b, "%sout %s %s\n", prefix, resp.Proto, resp.Status)
	for _, line := range headerLines(resp.Header) {
		fmt.Fprintf(&b, "%sout %s\n", prefix, line)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, b.String())
}

// headerLines returns h as sorted "Name: value" lines, credentials hidden.
func headerLines(h http.Header) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			if name == "User-Agent" && v == "" {
				continue
			}
			lines = append(lines, wiretrace.RedactHeader(name+": "+v))
		}
	}
	return lines
}

// frame prints ev unless the filter leaves it out.
func (p *framePrinter) frame(ev *frameEvent) {
	if p.quiet || !p.filter.match(ev) {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %-3s %s", clockStamp(ev.at), ev.conn, ev.dir, ev.h.Opcode)
	if ev.h.Fin {
		b.WriteString(" fin")
	}
	if ev.h.RSV&frame.RSV1 != 0 {
		b.WriteString(" rsv1")
	}
	if ev.h.RSV&(frame.RSV2|frame.RSV3) != 0 {
		fmt.Fprintf(&b, " rsv=%#x", ev.h.RSV>>4)
	}
	fmt.Fprintf(&b, " len=%d", ev.h.Length)
	if ev.byProxy {
		b.WriteString(" (sent by the proxy)")
	}
	if ev.dropped {
		b.WriteString(" (not passed on: the proxy has closed)")
	}
	if s := p.payloadText(ev); s != "" {
		b.WriteString(": " + s)
	}
	p.println(b.String())
}

// payloadText formats a frame's payload for its line.
func (p *framePrinter) payloadText(ev *frameEvent) string {
	switch {
	case ev.h.Opcode == frame.OpClose:
		code, reason, err := frame.ParseClosePayload(ev.payload)
		switch {
		case err != nil:
			return fmt.Sprintf("invalid close payload %x (%v)", ev.payload, err)
		case code == frame.CodeNoStatus:
			return "no code"
		case len(reason) == 0:
			return "code=" + describeCode(websocket.StatusCode(code))
		}
		return fmt.Sprintf("code=%s reason=%q", describeCode(websocket.StatusCode(code)), reason)
	case ev.h.Opcode.IsControl():
		return hex.EncodeToString(ev.payload) // at most 125 bytes
	case ev.compressed && !ev.h.Fin:
		return "(compressed; inflated on the last frame)"
	case ev.compressed && ev.inflateErr != "":
		return ev.inflateErr
	case ev.compressed:
		return fmt.Sprintf("(inflated to %d bytes) %s", len(ev.inflated), p.body(ev.msgOp, ev.inflated))
	}
	return p.body(ev.msgOp, ev.payload)
}

// body formats a data payload: text as it is (JSON indented with --json),
// binary in hex.
func (p *framePrinter) body(op frame.Opcode, b []byte) string {
	more := ""
	if p.maxShown > 0 && len(b) > p.maxShown {
		cut := p.maxShown
		if op == frame.OpText {
			for cut > 0 && !utf8.RuneStart(b[cut]) {
				cut-- // not inside a character
			}
		}
		b, more = b[:cut], fmt.Sprintf("… (%d more bytes)", len(b)-cut)
	}
	if op != frame.OpText {
		return hex.EncodeToString(b) + more
	}
	if p.json && more == "" && json.Valid(b) {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") == nil {
			return out.String()
		}
	}
	return string(b) + more
}

// event prints a line about a connection.
func (p *framePrinter) event(at time.Time, conn int64, text string) {
	if p.quiet || !p.filter.matchConn(conn) {
		return
	}
	p.println(fmt.Sprintf("%s #%d -- %s", clockStamp(at), conn, text))
}

// httpLine prints a request passed on that is not a WebSocket upgrade.
func (p *framePrinter) httpLine(at time.Time, method, uri string, status int) {
	if p.quiet {
		return
	}
	p.println(fmt.Sprintf("%s http %s %s -> %d %s", clockStamp(at), method, uri, status, http.StatusText(status)))
}

// showFrame prints and records a frame, stamped with the time it is
// shown: the two directions' readers show frames concurrently, and a
// stamp taken under showMu keeps the times printed and recorded in the
// order of the lines.
func (p *proxy) showFrame(ev *frameEvent) {
	p.showMu.Lock()
	defer p.showMu.Unlock()
	ev.at = time.Now()
	p.printer.frame(ev)
	if p.rec != nil {
		p.rec.frame(ev)
	}
}

// event prints and records a line about connection n.
func (p *proxy) event(n int64, text string) {
	p.showMu.Lock()
	defer p.showMu.Unlock()
	now := time.Now()
	p.printer.event(now, n, text)
	if p.rec != nil {
		p.rec.write(eventRecord{Type: "event", Time: now, Conn: n, Event: text})
	}
}
