package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// maxExecLine is the longest line of a program's output sent as one
// message; a longer line is sent in pieces of this size.
const maxExecLine = 1 << 20

// execChunk is the most a program's output read at once holds: with
// --binary, the largest message.
const execChunk = 32 << 10

// execServer runs a program for each WebSocket connection and bridges the
// two: the state of duplex exec.
type execServer struct {
	path       string   // the program, as found in PATH at start
	args       []string // its arguments
	binary     bool
	maxProcs   int
	maxMemory  uint64        // 0: no limit
	maxTime    time.Duration // 0: no limit
	grace      time.Duration
	readLimit  int64
	passHeader []string
	accept     websocket.AcceptOptions
	tls        bool
	logger     *slog.Logger
	stderr     io.Writer // safe for concurrent use, one line per Write

	procs atomic.Int64 // programs running, or about to
	conns atomic.Int64 // connections numbered so far
}

// serve is the connHandler of duplex exec.
func (s *execServer) serve(stop context.Context, w http.ResponseWriter, r *http.Request) {
	if s.procs.Add(1) > int64(s.maxProcs) {
		s.procs.Add(-1)
		s.logger.Warn("handshake refused: --max-procs programs are running", "remote", r.RemoteAddr, "path", r.URL.Path, "max_procs", s.maxProcs)
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("duplex exec: all %d programs (--max-procs) are running; try again later", s.maxProcs), http.StatusServiceUnavailable)
		return
	}
	defer s.procs.Add(-1) // once the program and its group are gone
	c, err := websocket.Accept(w, r, &s.accept)
	if err != nil {
		s.logger.Warn("handshake refused", "remote", r.RemoteAddr, "path", r.URL.Path, "error", err)
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(s.readLimit)
	id := s.conns.Add(1)
	release := closeOnStop(stop, c)
	start := time.Now()
	attrs := []any{"conn", id, "remote", r.RemoteAddr, "path", r.URL.Path}
	end := s.bridge(id, c, r, attrs)
	if release() {
		end.closedBy = "server"
		end.code, end.reason = websocket.StatusGoingAway, goingAway
	}
	attrs = append(attrs, "duration", time.Since(start).Round(time.Millisecond))
	s.logger.Info("connection closed", append(attrs, end.attrs()...)...)
}

// execEnd is how a connection and its program ended.
type execEnd struct {
	pid      int
	program  string // the program's end: "exit status 3", "signal: killed"
	closedBy string // "client", "server" or "" when the connection broke
	code     websocket.StatusCode
	reason   string
	err      error // what ended the client's side, when it was not a close
}

func (e *execEnd) attrs() []any {
	a := []any{"pid", e.pid, "program", e.program}
	if e.closedBy != "" {
		a = append(a, "closed_by", e.closedBy, "code", int(e.code), "reason", e.reason)
	}
	if e.err != nil {
		a = append(a, "error", e.err)
	}
	return a
}

// bridge runs the program for connection id and carries messages between
// the two until one side ends; then it ends the other. When the client
// leaves, the program's group is ended (SIGTERM, then SIGKILL after
// grace). When the program ends on its own or runs over --max-time, the
// rest of its group is ended the same way, what it wrote before goes to
// the client, and the client is closed: with 1000 when it exited with
// status 0, else with 1011 and how it ended.
func (s *execServer) bridge(id int64, c *websocket.Conn, r *http.Request, attrs []any) *execEnd {
	end := &execEnd{}
	stdinR, stdinW, err1 := os.Pipe()
	stdoutR, stdoutW, err2 := os.Pipe()
	stderrR, stderrW, err3 := os.Pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeFiles(stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW)
		end.err = err
		end.closedBy, end.code, end.reason = "server", websocket.StatusInternalError, "cannot start the program"
		c.Close(end.code, end.reason)
		return end
	}
	cmd := s.command(r, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	setProcessGroup(cmd)
	err := cmd.Start()
	closeFiles(stdinR, stdoutW, stderrW) // the program's ends
	if err != nil {
		closeFiles(stdinW, stdoutR, stderrR)
		s.logger.Error("cannot start the program", append(attrs, "error", err)...)
		end.err = err
		end.closedBy, end.code, end.reason = "server", websocket.StatusInternalError, "cannot start the program"
		c.Close(end.code, end.reason)
		return end
	}
	end.pid = cmd.Process.Pid
	s.logger.Info("connection opened", append(attrs, "pid", end.pid)...)

	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	outCtx, stopOut := context.WithCancel(context.Background())
	defer stopOut()
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		s.pumpOutput(outCtx, c, stdoutR)
	}()
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		s.pumpStderr(id, stderrR)
	}()
	clientDone := make(chan error, 1)
	go func() { clientDone <- s.pumpClient(id, c, stdinW) }()

	var overTime <-chan time.Time
	if s.maxTime > 0 {
		t := time.NewTimer(s.maxTime)
		defer t.Stop()
		overTime = t.C
	}
	clientGone, ranOver := false, false
	var clientErr error
	select {
	case clientErr = <-clientDone:
		clientGone = true
	case <-exited:
	case <-overTime:
		ranOver = true
	}
	stdinW.Close()
	endProcessGroup(end.pid, exited, s.grace)
	end.program = cmd.ProcessState.String()

	// What the program wrote before it ended goes out, unless something
	// it started escaped the group and holds its output open, or the
	// client reads nothing.
	if !closedWithin(outDone, s.grace) {
		stopOut()
		stdoutR.Close()
		<-outDone
	}
	if !clientGone {
		end.closedBy, end.code = "server", websocket.StatusInternalError
		switch {
		case ranOver:
			end.reason = fmt.Sprintf("over --max-time %v: %s", s.maxTime, end.program)
		case cmd.ProcessState.Success():
			end.code = websocket.StatusNormalClosure
			end.reason = end.program
		default:
			end.reason = end.program
		}
		end.reason = truncateReason(end.reason)
		c.Close(end.code, end.reason)
		<-clientDone // the client's answer, or the end of the close timeout
	} else {
		var ce *websocket.CloseError
		if errors.Is(clientErr, errBinaryRefused) {
			end.closedBy, end.code, end.reason = "server", websocket.StatusUnsupportedData, binaryRefused
		} else if errors.As(clientErr, &ce) {
			end.closedBy, end.code, end.reason = "client", ce.Code, ce.Reason
		} else {
			end.err = clientErr
		}
	}
	if !closedWithin(errDone, s.grace) {
		stderrR.Close()
		<-errDone
	}
	closeFiles(stdoutR, stderrR)
	return end
}

// command returns the command that runs the program for request r, the
// id-th connection: the program itself, or with --max-memory /bin/sh,
// which sets the limit (ulimit -v, in KiB) and becomes the program. A
// step of duplex's own could not: its Go runtime, over the limit as soon
// as it is set, failed to map the memory it needed to exec.
func (s *execServer) command(r *http.Request, id int64) *exec.Cmd {
	var cmd *exec.Cmd
	if s.maxMemory > 0 {
		script := "ulimit -v " + strconv.FormatUint(s.maxMemory/1024, 10) + ` && exec "$0" "$@"`
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, s.path}, s.args...)...)
	} else {
		cmd = exec.Command(s.path, s.args...)
	}
	cmd.Env = execEnv(os.Environ(), r, id, s.tls, s.passHeader)
	return cmd
}

// pumpOutput sends what the program writes to the client until its output
// ends, ctx ends or the connection fails: each line as a text message, or
// with --binary each read as a binary message.
func (s *execServer) pumpOutput(ctx context.Context, c *websocket.Conn, out io.Reader) {
	if s.binary {
		buf := make([]byte, execChunk)
		for {
			n, err := out.Read(buf)
			if n > 0 && c.Write(ctx, websocket.MessageBinary, buf[:n]) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}
	br := bufio.NewReaderSize(out, execChunk)
	var line []byte
	send := func(p []byte) bool { return c.Write(ctx, websocket.MessageText, validUTF8(p)) == nil }
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		switch {
		case err == nil: // a whole line
			text := line[:len(line)-1]
			if n := len(text); n > 0 && text[n-1] == '\r' {
				text = text[:n-1]
			}
			if !send(text) {
				return
			}
			line = line[:0]
			if cap(line) > 2*execChunk {
				line = nil // a long line's memory goes back
			}
		case err == bufio.ErrBufferFull:
			if len(line) >= maxExecLine {
				if !send(line[:maxExecLine]) {
					return
				}
				line = append(line[:0], line[maxExecLine:]...)
			}
		default: // the end of the output
			if len(line) > 0 {
				send(line) // a last line without its newline
			}
			return
		}
	}
}

// validUTF8 returns p with each invalid sequence replaced by U+FFFD: a text
// message must be UTF-8 (RFC 6455 section 8.1).
func validUTF8(p []byte) []byte {
	if utf8.Valid(p) {
		return p
	}
	return []byte(strings.ToValidUTF8(string(p), "\uFFFD"))
}

// pumpStderr copies the program's stderr to duplex's, each line after the
// connection's number, until it ends.
func (s *execServer) pumpStderr(id int64, errOut io.Reader) {
	prefix := "[" + strconv.FormatInt(id, 10) + "] "
	br := bufio.NewReaderSize(errOut, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line[:len(line):len(line)], '\n')
			}
			io.WriteString(s.stderr, prefix+string(line))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// pumpClient writes the client's messages to the program's stdin until the
// connection ends, and returns why it ended. Each message is written as it
// arrives, never held whole: raw with --binary, else followed by a
// newline. Without --binary a binary message closes the connection with
// 1003. Once the program's stdin is closed, messages are read and
// dropped, so that the client's leaving is still seen.
func (s *execServer) pumpClient(id int64, c *websocket.Conn, stdin io.Writer) error {
	ctx := context.Background()
	stdinOpen := true
	for {
		typ, msg, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageBinary && !s.binary {
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return err
			}
			c.Close(websocket.StatusUnsupportedData, binaryRefused)
			return errBinaryRefused
		}
		if !stdinOpen {
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return err
			}
			continue
		}
		_, err = io.Copy(stdin, readerOnly{msg})
		if err == nil && !s.binary {
			_, err = stdin.Write([]byte{'\n'})
		}
		var readErr *messageReadError
		switch {
		case errors.As(err, &readErr):
			return readErr.err
		case err != nil:
			stdinOpen = false
			io.WriteString(s.stderr, fmt.Sprintf("[%d] duplex exec: the program's stdin is closed (%v): messages from now on are dropped\n", id, err))
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return err
			}
		}
	}
}

// binaryRefused is the close reason for a binary message without --binary.
const binaryRefused = "binary messages need duplex exec --binary"

// errBinaryRefused ends pumpClient when it closed the connection for a
// binary message.
var errBinaryRefused = errors.New(binaryRefused)

// readerOnly hides everything but Read from io.Copy, and marks the errors
// of reading, to tell them from those of writing.
type readerOnly struct{ r io.Reader }

func (r readerOnly) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = &messageReadError{err}
	}
	return n, err
}

// messageReadError is an error reading a client's message.
type messageReadError struct{ err error }

func (e *messageReadError) Error() string { return e.err.Error() }
func (e *messageReadError) Unwrap() error { return e.err }

// closedWithin waits up to d for done to close, and reports whether it did.
func closedWithin(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func closeFiles(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// truncateReason cuts a close reason to the 123 bytes a close frame holds
// (RFC 6455 section 5.5), on a rune boundary.
func truncateReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// lineWriter serializes writes to w, so that lines written whole by
// several goroutines do not mix.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
