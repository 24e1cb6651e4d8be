package websocket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// fuzzConn is a net.Conn whose peer is a fuzz input: Read serves the input
// in chunks whose sizes come from the input too, so that frames arrive cut
// at every place, then io.EOF; Write keeps what the Conn sends.
type fuzzConn struct {
	mu     sync.Mutex
	in     []byte
	sizes  []byte // chunk sizes, cycled; empty: everything at once
	next   int
	maxLen int
	out    bytes.Buffer
	closed bool
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, 1+int(c.sizes[c.next%len(c.sizes)])%c.maxLen)
		c.next++
	}
	n = copy(p, c.in[:min(n, len(c.in))])
	c.in = c.in[n:]
	return n, nil
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *fuzzConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fuzzConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "fuzz" }
func (fuzzAddr) String() string  { return "fuzz" }

func (c *fuzzConn) LocalAddr() net.Addr                { return fuzzAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return fuzzAddr{} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// The first two bytes of a FuzzConnRead input choose how it is read.
const (
	fuzzClient     = 1 << 0 // the Conn is the client: the input is server frames
	fuzzChunkMask  = 3 << 1 // how the input is cut: whole, single bytes, sizes from the input (large, small)
	fuzzUseReader  = 1 << 3 // read with Reader and a small buffer instead of Read
	fuzzSmallBufio = 1 << 4 // the smallest read buffer, so that frames cross its end
	fuzzCompress   = 1 << 5 // permessage-deflate agreed: RSV1 messages are inflated
	fuzzTakeover   = 1 << 6 // with context takeover, and 9-bit windows
	fuzzServe      = 1 << 7 // served with Serve over a socket, in an epoll set on Linux (fuzz_serve_linux_test.go)
	// The second byte times 8 is the read limit.
)

// FuzzConnRead feeds arbitrary bytes to a Conn as the frames of its peer,
// in either role, read with Read, Reader or Serve, and checks what it
// makes of them: no panic, no message over the read limit, only valid
// UTF-8 as text, and when it fails the connection, a close frame with the
// code it reports as the last thing it sent.
func FuzzConnRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, input []byte) { checkConnRead(t, input, nil) })
}

// checkConnRead is FuzzConnRead's check of one input. overStream, when not
// nil, puts the Conn over what it makes of the fuzzConn, such as an
// HTTP/2 stream (fuzz_h2_test.go), instead of over the fuzzConn itself.
func checkConnRead(t *testing.T, input []byte, overStream func(fc *fuzzConn, client bool) net.Conn) {
	if len(input) < 2 {
		return
	}
	flags, limit, data := input[0], int64(input[1])*8, input[2:]
	client := flags&fuzzClient != 0
	fc := &fuzzConn{in: data}
	switch flags & fuzzChunkMask >> 1 {
	case 1:
		fc.sizes, fc.maxLen = []byte{0}, 1
	case 2:
		fc.sizes, fc.maxLen = data, 256
	case 3:
		fc.sizes, fc.maxLen = data, 7
	}
	readSize := 0
	if flags&fuzzSmallBufio != 0 {
		readSize = minBufferSize
	}
	cfg := newConnConfig(readSize, 0, 0, 0, 50*time.Millisecond)
	var netConn net.Conn = fc
	serve := flags&fuzzServe != 0 && overStream == nil
	var wait func()
	if serve {
		var sock net.Conn
		if sock, wait = socketFor(t, fc); sock == nil {
			return // no sockets to serve here
		}
		defer wait()
		netConn = sock
	}
	if overStream != nil {
		netConn = overStream(fc, client)
	}
	c := newConn(netConn, nil, client, "", cfg)
	defer c.CloseNow()
	c.SetReadLimit(limit)
	if flags&fuzzCompress != 0 {
		p := deflate.Params{ServerNoContextTakeover: true, ClientNoContextTakeover: true, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}
		mode := CompressionNoContextTakeover
		if flags&fuzzTakeover != 0 {
			p = deflate.Params{ServerMaxWindowBits: 9, ClientMaxWindowBits: 9}
			mode = CompressionContextTakeover
		}
		c.comp = newCompression(p, !client, &CompressionOptions{Mode: mode})
	}

	ctx := context.Background()
	buf := make([]byte, 100)
	var err error
	messages := 0
	if serve {
		messages, err = serveAll(t, c, limit)
	}
	for ; !serve; messages++ {
		var typ MessageType
		var msg []byte
		if flags&fuzzUseReader != 0 {
			var r io.Reader
			typ, r, err = c.Reader(ctx)
			if err == nil {
				msg, err = readAllSmall(r, buf, limit)
			}
		} else {
			typ, msg, err = c.Read(ctx)
		}
		if err != nil {
			break
		}
		if err := checkFuzzMessage(typ, msg, limit); err != nil {
			t.Fatal(err)
		}
	}
	if serve {
		c.CloseNow()
		wait() // what the Conn sent is all in fc
	}

	t.Logf("%s: %d messages, then %v", roleName(client), messages, err)

	// What the Conn sent must be frames of its role; after a failure or
	// the peer's close, the last is a close frame with the code.
	sent := bufio.NewReader(bytes.NewReader(fc.written()))
	var last frame.Header
	var lastPayload []byte
	for !atEOF(sent) {
		h, p, ferr := readTestFrame(sent)
		if ferr != nil {
			t.Fatalf("the Conn sent a malformed frame: %v", ferr)
		}
		if h.Masked != client {
			t.Fatalf("the Conn sent a frame with masked = %v as %s", h.Masked, roleName(client))
		}
		last, lastPayload = h, p
	}
	var pe *ProtocolError
	var ce *CloseError
	switch {
	case errors.As(err, &pe):
		if last.Opcode != frame.OpClose {
			t.Fatalf("failed with %v, but the last frame sent is %v", err, last.Opcode)
		}
		if code, _, _ := frame.ParseClosePayload(lastPayload); StatusCode(code) != pe.Code {
			t.Fatalf("failed with code %d, but sent a close frame with %d", pe.Code, code)
		}
	case errors.As(err, &ce):
		if last.Opcode != frame.OpClose {
			t.Fatalf("the peer closed (%v), but the last frame sent is %v", err, last.Opcode)
		}
		want := uint16(ce.Code)
		if code, _, _ := frame.ParseClosePayload(lastPayload); code != want {
			t.Fatalf("the peer closed with %d, answered with %d", want, code)
		}
	}
}

// checkFuzzMessage checks a message a Conn delivered.
func checkFuzzMessage(typ MessageType, msg []byte, limit int64) error {
	if int64(len(msg)) > limit {
		return fmt.Errorf("a message of %d bytes passed the read limit of %d", len(msg), limit)
	}
	if typ == MessageText && !utf8.Valid(msg) {
		return fmt.Errorf("a text message of invalid UTF-8 passed: %q", msg)
	}
	if typ != MessageText && typ != MessageBinary {
		return fmt.Errorf("a message of type %v", typ)
	}
	return nil
}

// serveAll serves c until reading ends, checking each message, and returns
// how many there were and the error onEnd reports.
func serveAll(t *testing.T, c *Conn, limit int64) (int, error) {
	var mu sync.Mutex
	messages := 0
	var bad error // the first message that failed checkFuzzMessage
	ended := make(chan error, 1)
	err := c.Serve(func(typ MessageType, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		messages++
		if err := checkFuzzMessage(typ, p, limit); err != nil && bad == nil {
			bad = err
		}
	}, func(err error) { ended <- err })
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case err = <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("onEnd not called though the input has ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
	return messages, err
}

// readAllSmall reads r to its end in small pieces, failing beyond limit.
func readAllSmall(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	var msg []byte
	for {
		n, err := r.Read(buf[:1+len(msg)%len(buf)])
		msg = append(msg, buf[:n]...)
		if int64(len(msg)) > limit {
			return msg, nil // reported by the caller
		}
		if err == io.EOF {
			return msg, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func atEOF(br *bufio.Reader) bool {
	_, err := br.Peek(1)
	return err != nil
}
