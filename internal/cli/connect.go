package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/websocket"
)

// Bounds of duplex connect's own waits.
const (
	pingTimeout       = 10 * time.Second // /ping
	writeErrorTimeout = 5 * time.Second  // for the reader to say why a write failed
	maxShownBytes     = 4096             // of a message, in a terminal
)

// opened is a connection duplex connect has opened, and its terminals.
type opened struct {
	session         *session
	resp            *http.Response
	stdin           io.Reader
	inFile, outFile *os.File // nil when not a terminal
	release         func()   // after the connection has closed: ends an HTTP/2 connection
}

// open dials with d as the flags say and returns the session, not yet
// reading. The caller closes its connection.
func (f *connectFlags) open(cmd *cobra.Command, d *dialer) (*opened, error) {
	stdin, stdout := cmd.InOrStdin(), cmd.OutOrStdout()
	con := &console{out: stdout, log: cmd.ErrOrStderr()}
	inFile, inTerminal := terminalFile(stdin)
	outFile, outTerminal := terminalFile(stdout)
	var trace *tracer
	if f.trace {
		trace = newTracer(con)
	}
	netDial := (&net.Dialer{}).DialContext
	var conn *websocket.Conn
	var resp *http.Response
	var err error
	release := func() {}
	if d.http2 != http2Off {
		tr := d.h2Transport(netDial, trace, 0)
		release = func() { tr.Close() }
		var fellBack error
		conn, resp, fellBack, err = d.dialH2(cmd.Context(), tr,
			func(opts *websocket.DialOptions) { opts.PingInterval = f.pingInterval },
			func() (*websocket.DialOptions, string) { return d.options(netDial, trace) })
		if fellBack != nil && err == nil {
			con.printf("-- connected over HTTP/1.1: the server does not take WebSockets over HTTP/2 (%v)", fellBack)
		}
	} else {
		opts, dialURL := d.options(netDial, trace)
		opts.PingInterval = f.pingInterval
		conn, resp, err = d.dial(cmd.Context(), opts, dialURL)
	}
	if err != nil {
		release()
		return nil, handshakeError(err, resp)
	}
	conn.SetReadLimit(f.readLimit)
	return &opened{
		session: &session{
			conn:        conn,
			con:         con,
			trace:       trace,
			interactive: inTerminal && outTerminal && !f.once,
			lineType:    websocket.MessageText,
			readDone:    make(chan struct{}),
			activity:    make(chan struct{}, 1),
		},
		resp: resp, stdin: stdin, inFile: inFile, outFile: outFile,
		release: release,
	}, nil
}

func runConnect(cmd *cobra.Command, rawURL string, f *connectFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	if len(f.channels) > 0 {
		return runConnectGateway(cmd, rawURL, f)
	}
	d, err := f.dial.dialer(rawURL)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	var message []byte // --once: all of stdin, read before connecting
	if f.once {
		if message, err = readAllInput(ctx, cmd.InOrStdin()); err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		message = []byte(strings.TrimSuffix(strings.TrimSuffix(string(message), "\n"), "\r"))
	}
	o, err := f.open(cmd, d)
	if err != nil {
		return err
	}
	defer o.release()
	s, conn := o.session, o.session.conn
	defer conn.CloseNow()
	if f.binary {
		s.lineType = websocket.MessageBinary
	}
	if f.once {
		return s.once(ctx, message)
	}

	lines, stopInput, err := s.startInput(o.stdin, o.inFile, o.outFile)
	if err != nil {
		return err
	}
	defer stopInput()
	if s.interactive {
		s.banner(d.url.String(), o.resp)
	}
	go s.readLoop()
	defer func() {
		conn.CloseNow() // when a failed write ended the session, the reader may still run
		<-s.readDone
	}()
	return s.converse(ctx, lines, f.wait)
}

// startInput starts reading lines: in a terminal from the line editor,
// which takes over the terminal and the console, else from stdin. stop
// ends the reading and gives the terminal back.
func (s *session) startInput(stdin io.Reader, inFile, outFile *os.File) (lines *lineInput, stop func(), err error) {
	in, interrupt, release := interruptibleInput(stdin)
	if !s.interactive {
		lines = startLineInput(pipeLines(in), interrupt)
		return lines, func() { lines.stop(); release() }, nil
	}
	inTerm, ok := in.(*os.File) // inFile, or the same terminal opened again
	if !ok {
		inTerm = inFile
	}
	editor, err := newLineEditor(inTerm, outFile)
	if err != nil {
		release()
		return nil, nil, err
	}
	s.con.use(editor)
	lines = startLineInput(editor.ReadLine, interrupt)
	return lines, func() { lines.stop(); editor.restore(); release() }, nil
}

// readAllInput reads r to its end, or until ctx ends.
func readAllInput(ctx context.Context, r io.Reader) ([]byte, error) {
	in, interrupt, release := interruptibleInput(r)
	defer release()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(in)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		if interrupt != nil {
			interrupt()
			<-done
		}
		return nil, ctx.Err()
	}
}

// handshakeError adds to a failed dial what the server said, if anything.
func handshakeError(err error, resp *http.Response) error {
	if resp == nil || resp.Body == nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if text := strings.TrimSpace(string(body)); text != "" {
		return fmt.Errorf("%w: %s", err, strconv.Quote(text))
	}
	return err
}

// session is one connection of duplex connect.
type session struct {
	conn        *websocket.Conn
	con         *console
	trace       *tracer // nil without --trace
	interactive bool
	lineType    websocket.MessageType // the type lines are sent as

	readDone chan struct{} // closed when readLoop ends
	readErr  error         // why readLoop ended; read once readDone is closed
	activity chan struct{} // a message came

	// onMessage, when set, handles the messages that come in place of
	// received: the gateway mode's.
	onMessage func(typ websocket.MessageType, p []byte)
}

// readLoop prints messages as they come until the connection ends.
func (s *session) readLoop() {
	defer close(s.readDone)
	for {
		typ, p, err := s.conn.Read(context.Background()) // the connection ends by Close
		if err != nil {
			s.readErr = err
			return
		}
		if s.onMessage != nil {
			s.onMessage(typ, p)
		} else {
			s.received(typ, p)
		}
		select {
		case s.activity <- struct{}{}:
		default:
		}
	}
}

// converse sends the lines of in until in or the connection ends, or ctx
// does, and returns what the exit status should reflect.
func (s *session) converse(ctx context.Context, in *lineInput, wait time.Duration) error {
	for {
		select {
		case <-s.readDone:
			return s.ended()
		case <-ctx.Done():
			return s.close(websocket.StatusNormalClosure, "")
		case line, ok := <-in.lines:
			if !ok {
				if s.interactive {
					return s.close(websocket.StatusNormalClosure, "")
				}
				if in.err != io.EOF {
					s.con.printf("reading stdin: %v", in.err)
				}
				return s.linger(ctx, wait)
			}
			var done bool
			var err error
			if s.interactive {
				done, err = s.command(ctx, line)
			} else {
				done, err = s.send(ctx, s.lineType, []byte(line))
			}
			if done {
				return err
			}
		}
	}
}

// linger waits, after stdin has ended, until no message has come for
// wait, then closes.
func (s *session) linger(ctx context.Context, wait time.Duration) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.activity:
			t.Reset(wait)
		case <-t.C:
			return s.close(websocket.StatusNormalClosure, "")
		case <-s.readDone:
			return s.ended()
		case <-ctx.Done():
			return s.close(websocket.StatusNormalClosure, "")
		}
	}
}

// once sends message, prints the first message that comes back, and
// closes.
func (s *session) once(ctx context.Context, message []byte) error {
	s.sending(s.lineType, message)
	if err := s.conn.Write(ctx, s.lineType, message); err != nil {
		return err
	}
	typ, p, err := s.conn.Read(ctx)
	switch {
	case err == nil:
		s.received(typ, p)
	case ctx.Err() != nil:
	default:
		s.readErr = err
		return s.ended()
	}
	return closeResult(s.conn.Close(websocket.StatusNormalClosure, ""))
}

// command carries out a line typed at the prompt. It reports whether the
// session is over, and how it ended.
func (s *session) command(ctx context.Context, line string) (done bool, err error) {
	switch {
	case line == "":
		return false, nil
	case strings.HasPrefix(line, "//"):
		return s.send(ctx, s.lineType, []byte(line[1:]))
	case !strings.HasPrefix(line, "/"):
		return s.send(ctx, s.lineType, []byte(line))
	}
	name, arg, _ := strings.Cut(line[1:], " ")
	arg = strings.TrimSpace(arg)
	switch name {
	case "ping":
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		start := time.Now()
		if err := s.conn.Ping(pctx); err != nil {
			s.con.printf("ping: %v", err)
			return false, nil
		}
		s.con.printf("pong after %v", time.Since(start).Round(time.Microsecond))
	case "close":
		code, reason, err := parseCloseArgs(arg)
		if err != nil {
			s.con.printf("%v", err)
			return false, nil
		}
		return true, s.close(code, reason)
	case "binary":
		p, err := decodeBinary(arg)
		if err != nil {
			s.con.printf("%v", err)
			return false, nil
		}
		return s.send(ctx, websocket.MessageBinary, p)
	case "help":
		s.con.printf("/ping | /close [code] [reason] | /binary <hex|base64> | //text sends /text | Ctrl-D closes")
	default:
		s.con.printf("unknown command /%s: /help lists them; //%s sends the line", name, name)
	}
	return false, nil
}

// parseCloseArgs parses the arguments of /close: [code] [reason].
func parseCloseArgs(arg string) (websocket.StatusCode, string, error) {
	code := websocket.StatusNormalClosure
	if first, rest, _ := strings.Cut(arg, " "); first != "" {
		n, err := strconv.Atoi(first)
		if err != nil {
			return 0, "", fmt.Errorf("/close [code] [reason]: %q is not a code", first)
		}
		if n < 0 || n > 0xffff || !frame.ValidCloseCode(uint16(n)) {
			return 0, "", fmt.Errorf("/close: %d may not be sent; use 1000-1003, 1007-1011 or 3000-4999", n)
		}
		code, arg = websocket.StatusCode(n), strings.TrimSpace(rest)
	}
	if len(arg) > frame.MaxCloseReason || !utf8.ValidString(arg) {
		return 0, "", fmt.Errorf("/close: the reason must be UTF-8 of at most %d bytes", frame.MaxCloseReason)
	}
	return code, arg, nil
}

// decodeBinary decodes the argument of /binary: hex if it is hex, else
// base64, padded or not, standard or URL-safe.
func decodeBinary(arg string) ([]byte, error) {
	arg = strings.Join(strings.Fields(arg), "")
	if p, err := hex.DecodeString(arg); err == nil {
		return p, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if p, err := enc.DecodeString(arg); err == nil {
			return p, nil
		}
	}
	return nil, errors.New("/binary wants hex or base64")
}

// send writes a message. It reports whether the session is over, as when
// the connection has ended, and how.
func (s *session) send(ctx context.Context, typ websocket.MessageType, p []byte) (done bool, err error) {
	s.sending(typ, p)
	return s.write(ctx, typ, p)
}

// write writes a message without printing it, and reports as send does.
func (s *session) write(ctx context.Context, typ websocket.MessageType, p []byte) (done bool, err error) {
	err = s.conn.Write(ctx, typ, p)
	if err == nil {
		return false, nil
	}
	if s.interactive {
		s.con.printf("not sent: %v", err)
	}
	if ctx.Err() != nil {
		return true, s.close(websocket.StatusNormalClosure, "")
	}
	// The reader knows why the connection ended, such as the server's
	// close frame; it ends soon after a write fails.
	select {
	case <-s.readDone:
		return true, s.ended()
	case <-time.After(writeErrorTimeout):
		return true, err
	}
}

// close performs the closing handshake and returns what the exit status
// should reflect.
func (s *session) close(code websocket.StatusCode, reason string) error {
	err := s.conn.Close(code, reason)
	<-s.readDone
	if err == nil && s.interactive {
		s.con.printf("closed with %s; the server answered", describeCode(code))
	}
	return closeResult(err)
}

// closeResult turns the result of this side's Close into what the exit
// status should reflect: success when the server answered, its close when
// it had closed first.
func closeResult(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return closedByServer(ce)
	}
	return err
}

// ended returns what the exit status should reflect once the reader has
// ended by itself: the server's close, or the failure.
func (s *session) ended() error {
	var ce *websocket.CloseError
	if errors.As(s.readErr, &ce) {
		if s.interactive {
			s.con.printf("closed by the server with %s %q", describeCode(ce.Code), ce.Reason)
		}
		return closedByServer(ce)
	}
	return s.readErr
}

// describeCode formats a close code with its name, when it has one.
func describeCode(code websocket.StatusCode) string {
	if name := code.String(); !strings.HasPrefix(name, "StatusCode(") {
		return fmt.Sprintf("%d (%s)", code, name)
	}
	return strconv.Itoa(int(code))
}

// closedByServer returns the error for the server's close frame: none for
// 1000, else one that carries the documented exit status.
func closedByServer(ce *websocket.CloseError) error {
	code := closeExitStatus(ce.Code)
	if code == exitOK {
		return nil
	}
	return &exitStatusError{code: code, err: ce}
}

// closeExitStatus maps the code of the server's close frame to the exit
// status, as duplex connect --help documents.
func closeExitStatus(code websocket.StatusCode) int {
	switch {
	case code == websocket.StatusNormalClosure:
		return exitOK
	case code > 1000 && code <= 1015:
		return 10 + int(code-1000)
	case code >= 3000 && code <= 4999:
		return 3
	}
	return exitError
}

// banner says, in a terminal, what the connection agreed on.
func (s *session) banner(url string, resp *http.Response) {
	var agreed []string
	if p := s.conn.Subprotocol(); p != "" {
		agreed = append(agreed, "subprotocol "+p)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		agreed = append(agreed, "extensions "+ext)
	}
	line := "connected to " + url
	if len(agreed) > 0 {
		line += " (" + strings.Join(agreed, "; ") + ")"
	}
	s.con.printf("%s", line)
	s.con.printf("type a message and Enter to send; /help lists the commands; Ctrl-D closes")
}

// received prints a message that came: in a terminal, a line with the
// time, the direction and the message; in pipe mode, the message alone on
// stdout, and with --trace a line on stderr that sums it up.
func (s *session) received(typ websocket.MessageType, p []byte) {
	var wire wireMessage
	ok := false
	if s.trace != nil {
		wire, ok = s.trace.nextReceived()
	}
	if s.interactive {
		s.con.printf("< %s", describeMessage(typ, p, wire, ok, true))
		return
	}
	if s.trace != nil {
		s.con.printf("<< message: %s", describeMessage(typ, p, wire, ok, false))
	}
	if typ == websocket.MessageBinary {
		s.con.data([]byte(hex.EncodeToString(p)))
	} else {
		s.con.data(p)
	}
}

// sending prints a message about to go: in a terminal, a line as for a
// message received; in pipe mode with --trace, a line on stderr, above the
// lines of its frames. It prints before the message goes, lest the echo
// be printed first.
func (s *session) sending(typ websocket.MessageType, p []byte) {
	switch {
	case s.interactive:
		s.con.printf("> %s", describeMessage(typ, p, wireMessage{}, false, true))
	case s.trace != nil:
		s.con.printf(">> message: %s", describeMessage(typ, p, wireMessage{}, false, false))
	}
}

// describeMessage formats a message: its type, its size, how it crossed
// the wire when that is known and differs, and with content its content,
// text with control characters escaped and binary in hex, up to
// maxShownBytes.
func describeMessage(typ websocket.MessageType, p []byte, wire wireMessage, wireKnown, content bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %d B", typ, len(p))
	if wireKnown && (wire.compressed || wire.frames > 1) {
		var notes []string
		if wire.compressed {
			notes = append(notes, fmt.Sprintf("%d B on the wire, compressed", wire.wire))
		}
		if wire.frames > 1 {
			notes = append(notes, fmt.Sprintf("%d frames", wire.frames))
		}
		b.WriteString(" (" + strings.Join(notes, ", ") + ")")
	}
	if len(p) == 0 || !content {
		return b.String()
	}
	shown := p[:min(len(p), maxShownBytes)]
	b.WriteString(": ")
	if typ == websocket.MessageBinary {
		b.WriteString(hex.EncodeToString(shown))
	} else {
		text := strings.ToValidUTF8(string(shown), "") // a cut rune at the end
		if strings.IndexFunc(text, unicode.IsControl) >= 0 {
			text = strconv.Quote(text)
		}
		b.WriteString(text)
	}
	if len(shown) < len(p) {
		fmt.Fprintf(&b, " … (%d more bytes)", len(p)-len(shown))
	}
	return b.String()
}
