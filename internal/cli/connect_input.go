package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
)

// console is where duplex connect prints. In pipe mode messages go to out
// (stdout) and everything else — status lines, the trace — to log
// (stderr), with the time in front. In a terminal both are the line
// editor, which keeps the prompt and the line being typed below what is
// printed. Its methods are safe for concurrent use.
type console struct {
	mu  sync.Mutex
	out io.Writer
	log io.Writer
}

// use sends everything to w from now on.
func (c *console) use(w io.Writer) {
	c.mu.Lock()
	c.out, c.log = w, w
	c.mu.Unlock()
}

// data writes p and a newline to out.
func (c *console) data(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(append(p[:len(p):len(p)], '\n'))
}

// printf writes a line to log, after the time of day.
func (c *console) printf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...) + "\n"
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.log, line)
}

// lineInput reads lines in a goroutine of its own and hands them over on
// lines, which it closes when its input ends or fails (err says which).
type lineInput struct {
	lines     chan string
	err       error // io.EOF at the end of input; read once lines is closed
	quit      chan struct{}
	interrupt func() // makes a blocked read return; nil when nothing can
	stopOnce  sync.Once
}

func startLineInput(readLine func() (string, error), interrupt func()) *lineInput {
	in := &lineInput{lines: make(chan string), quit: make(chan struct{}), interrupt: interrupt}
	go func() {
		defer close(in.lines)
		for {
			line, err := readLine()
			if err != nil {
				in.err = err
				return
			}
			select {
			case in.lines <- line:
			case <-in.quit:
				return
			}
		}
	}()
	return in
}

// stop ends the reading goroutine and waits for it. When its read cannot
// be interrupted (stdin is a socket, or a reader that is not a file), the
// goroutine is left to end when its input does: the process exits first.
func (in *lineInput) stop() {
	in.stopOnce.Do(func() {
		close(in.quit)
		if in.interrupt == nil {
			return
		}
		in.interrupt()
		for range in.lines {
		}
	})
}

// pipeLines returns a function that reads r line by line, without the line
// ends ("\n" or "\r\n").
func pipeLines(r io.Reader) func() (string, error) {
	br := bufio.NewReader(r)
	return func() (string, error) {
		line, err := br.ReadBytes('\n')
		if err == io.EOF && len(line) > 0 {
			err = nil // a last line without its newline
		}
		if err != nil {
			return "", err
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		return string(line), nil
	}
}

// interruptibleInput returns a reader of r whose blocked Read can be made
// to return by calling interrupt, and release, to call when done with it.
//
// A terminal or a pipe inherited as stdin is in blocking mode, which
// neither deadlines nor Close can interrupt; on Linux it is opened again
// through /proc/self/fd, which gives a description of its own that Go
// reads through its poller, with deadlines, while the inherited one stays
// as it is. Readers that never block (regular files, in-memory readers)
// need no interrupt. For the rest, interrupt is nil.
func interruptibleInput(r io.Reader) (in io.Reader, interrupt, release func()) {
	noop := func() {}
	if _, inMemory := r.(interface{ Len() int }); inMemory {
		return r, noop, noop
	}
	f, ok := r.(*os.File)
	if !ok {
		return r, nil, noop
	}
	if f.SetReadDeadline(time.Time{}) == nil { // already read through the poller
		return f, func() { f.SetReadDeadline(aLongTimeAgo) }, func() { f.SetReadDeadline(time.Time{}) }
	}
	st, err := f.Stat()
	if err != nil {
		return f, nil, noop
	}
	if st.Mode().IsRegular() {
		return f, noop, noop
	}
	if st.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) == 0 {
		return f, nil, noop
	}
	fd, ok := fileDescriptor(f)
	if !ok {
		return f, nil, noop
	}
	// O_NONBLOCK: opening a pipe whose writer has gone must not wait for
	// a new writer. O_NOCTTY: a terminal must not become ours.
	again, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return f, nil, noop
	}
	if again.SetReadDeadline(time.Time{}) != nil {
		again.Close()
		return f, nil, noop
	}
	return again, func() { again.SetReadDeadline(aLongTimeAgo) }, func() { again.Close() }
}

// aLongTimeAgo is a deadline in the past, to interrupt blocked reads.
var aLongTimeAgo = time.Unix(1, 0)

// fileDescriptor returns f's descriptor without the side effect of f.Fd,
// which puts a file read through the poller into blocking mode.
func fileDescriptor(f *os.File) (int, bool) {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	if sc.Control(func(u uintptr) { fd = int(u) }) != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

// terminalFile returns v as a file when it is a terminal.
func terminalFile(v any) (*os.File, bool) {
	f, ok := v.(*os.File)
	if !ok {
		return nil, false
	}
	fd, ok := fileDescriptor(f)
	return f, ok && term.IsTerminal(fd)
}

// lineEditor is the prompt of interactive mode: the terminal in raw mode,
// edited by x/term, which redraws the prompt below whatever is printed.
type lineEditor struct {
	*term.Terminal
	restore func()
}

// newLineEditor puts the terminal that in reads into raw mode and edits
// lines on it, echoing to out.
func newLineEditor(in, out *os.File) (*lineEditor, error) {
	fd, ok := fileDescriptor(in)
	if !ok {
		return nil, fmt.Errorf("stdin: no file descriptor")
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("stdin: %v", err)
	}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, out}, "> ")
	if ofd, ok := fileDescriptor(out); ok {
		if w, h, err := term.GetSize(ofd); err == nil {
			t.SetSize(w, h)
		}
	}
	return &lineEditor{Terminal: t, restore: func() { term.Restore(fd, state) }}, nil
}
