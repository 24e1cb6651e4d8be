package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// This file holds the helpers the package's tests share, and the tests of
// what belongs to Conn as a whole: sizes in both roles, the typed status and
// message constants, keepalive.

// sideOptions are the options of one end of a connection, whichever role
// it plays.
type sideOptions struct {
	ReadBufferSize  int
	WriteBufferSize int
	PingInterval    time.Duration
	PongTimeout     time.Duration
	CloseTimeout    time.Duration
	MessageTimeout  time.Duration
	MaxFragments    int
	ReadRate        RateLimit
}

func (o *sideOptions) accept() *AcceptOptions {
	if o == nil {
		return nil
	}
	return &AcceptOptions{
		ReadBufferSize: o.ReadBufferSize, WriteBufferSize: o.WriteBufferSize,
		PingInterval: o.PingInterval, PongTimeout: o.PongTimeout, CloseTimeout: o.CloseTimeout,
		MessageTimeout: o.MessageTimeout, MaxFragments: o.MaxFragments, ReadRate: o.ReadRate,
	}
}

func (o *sideOptions) dial() *DialOptions {
	if o == nil {
		return nil
	}
	return &DialOptions{
		ReadBufferSize: o.ReadBufferSize, WriteBufferSize: o.WriteBufferSize,
		PingInterval: o.PingInterval, PongTimeout: o.PongTimeout, CloseTimeout: o.CloseTimeout,
		MessageTimeout: o.MessageTimeout, MaxFragments: o.MaxFragments, ReadRate: o.ReadRate,
	}
}

// roleName names the role of the side under test.
func roleName(client bool) string {
	if client {
		return "client"
	}
	return "server"
}

// forRoles runs f as a subtest twice: with the side under test as the
// client, then as the server.
func forRoles(t *testing.T, f func(t *testing.T, client bool)) {
	t.Helper()
	for _, client := range []bool{true, false} {
		t.Run(roleName(client), func(t *testing.T) { f(t, client) })
	}
}

// wsURL returns the ws:// URL of an httptest server.
func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// newPair connects a client and a server Conn over a loopback httptest
// server. Cleanup closes both and the server.
func newPair(t testing.TB, acceptOpts *AcceptOptions, dialOpts *DialOptions) (client, server *Conn) {
	t.Helper()
	accepted := make(chan *Conn, 1)
	failed := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, acceptOpts)
		if err != nil {
			failed <- err
			return
		}
		accepted <- c
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := Dial(ctx, wsURL(srv), dialOpts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { client.CloseNow() })
	select {
	case server = <-accepted:
	case err := <-failed:
		t.Fatalf("Accept: %v", err)
	case <-ctx.Done():
		t.Fatal("Accept did not return")
	}
	t.Cleanup(func() { server.CloseNow() })
	return client, server
}

// newSides connects two Conns and returns a, the side under test, in the
// role client says, and b, its peer.
func newSides(t testing.TB, client bool, aOpts, bOpts *sideOptions) (a, b *Conn) {
	t.Helper()
	if client {
		a, b = newPair(t, bOpts.accept(), aOpts.dial())
		return a, b
	}
	b, a = newPair(t, aOpts.accept(), bOpts.dial())
	return a, b
}

// rawPeer is the far end of a Conn, spoken to in raw frames. It masks what
// it sends when it plays the client.
type rawPeer struct {
	t      testing.TB
	conn   net.Conn
	br     *bufio.Reader
	client bool
}

// newRawPeer connects a Conn in the role client says to a raw peer that has
// completed the opening handshake and does nothing else unless told.
func newRawPeer(t testing.TB, client bool, opts *sideOptions) (*Conn, *rawPeer) {
	t.Helper()
	if client {
		return dialToRawServer(t, opts)
	}
	return acceptFromRawClient(t, opts)
}

// dialToRawServer dials a listener that answers the handshake by hand.
func dialToRawServer(t testing.TB, opts *sideOptions) (*Conn, *rawPeer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		peer *rawPeer
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			done <- result{err: err}
			return
		}
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			conn.Close()
			done <- result{err: err}
			return
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
		if _, err := io.WriteString(conn, resp); err != nil {
			conn.Close()
			done <- result{err: err}
			return
		}
		done <- result{peer: &rawPeer{t: t, conn: conn, br: br}}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, "ws://"+ln.Addr().String()+"/", opts.dial())
	if err != nil {
		ln.Close()
		<-done
		t.Fatalf("Dial: %v", err)
	}
	r := <-done
	if r.err != nil {
		c.CloseNow()
		t.Fatal(r.err)
	}
	t.Cleanup(func() {
		c.CloseNow()
		r.peer.conn.Close()
	})
	return c, r.peer
}

// acceptFromRawClient makes the handshake by hand against Accept.
func acceptFromRawClient(t testing.TB, opts *sideOptions) (*Conn, *rawPeer) {
	t.Helper()
	accepted := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, opts.accept())
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- c
	}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET / HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() + "\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + k + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(k) {
		conn.Close()
		t.Fatalf("handshake: %v %v", err, resp)
	}
	var c *Conn
	select {
	case c = <-accepted:
	case <-time.After(10 * time.Second):
		conn.Close()
		t.Fatal("Accept did not return")
	}
	t.Cleanup(func() {
		c.CloseNow()
		conn.Close()
	})
	return c, &rawPeer{t: t, conn: conn, br: br, client: true}
}

// testMaskKey is the key raw peers mask with; any key will do.
var testMaskKey = [4]byte{0xa1, 0x5b, 0x3c, 0x77}

// appendTestFrame appends one frame, masking its payload (a copy) when
// masked is set.
func appendTestFrame(b []byte, fin bool, op frame.Opcode, masked bool, payload []byte) []byte {
	h := frame.Header{Fin: fin, Opcode: op, Length: int64(len(payload)), Masked: masked, MaskKey: testMaskKey}
	b = frame.AppendHeader(b, h)
	start := len(b)
	b = append(b, payload...)
	if masked {
		frame.Mask(testMaskKey, 0, b[start:])
	}
	return b
}

// closePayload encodes a close frame's payload.
func closePayload(code StatusCode, reason string) []byte {
	return frame.AppendClosePayload(nil, uint16(code), reason)
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Errorf("raw peer write: %v", err)
	}
}

// writeFrame sends one frame, masked when the peer is the client.
func (p *rawPeer) writeFrame(fin bool, op frame.Opcode, payload []byte) {
	p.t.Helper()
	p.write(appendTestFrame(nil, fin, op, p.client, payload))
}

// readFrame reads one frame and returns its header and unmasked payload.
func (p *rawPeer) readFrame() (frame.Header, []byte, error) {
	return readTestFrame(p.br)
}

func readTestFrame(br *bufio.Reader) (frame.Header, []byte, error) {
	b, err := br.Peek(2)
	if err != nil {
		return frame.Header{}, nil, err
	}
	if b, err = br.Peek(frame.HeaderLen(b[1])); err != nil {
		return frame.Header{}, nil, err
	}
	h, n, err := frame.ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	br.Discard(n)
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return h, nil, err
	}
	if h.Masked {
		frame.Mask(h.MaskKey, 0, payload)
	}
	return h, payload, nil
}

// pattern returns n bytes that differ from message to message, and from
// offset to offset, so that misplaced bytes are noticed.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// textPattern is pattern as printable ASCII.
func textPattern(seed, n int) []byte {
	b := pattern(seed, n)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return b
}

// readAsync runs c.Read in a goroutine; the result arrives on the channel.
type readResult struct {
	typ MessageType
	msg []byte
	err error
}

func readAsync(ctx context.Context, c *Conn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		typ, msg, err := c.Read(ctx)
		ch <- readResult{typ, msg, err}
	}()
	return ch
}

// waitResult waits for a result, failing the test after d.
func waitResult[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}

// drainUntilError reads and drops messages on c in a goroutine until Read
// fails; the error arrives on the channel.
func drainUntilError(c *Conn) <-chan error {
	ch := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				ch <- err
				return
			}
		}
	}()
	return ch
}

var messageSizes = []int{0, 1, 100, 125, 126, 127, 1000, 4095, 4096, 4097, 65535, 65536, 65537, 200_000, 1 << 20}

// TestReadWriteSizes sends messages of every size class of the frame
// length encoding, both types, in both directions.
func TestReadWriteSizes(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		b.SetReadLimit(2 << 20)
		ctx := context.Background()
		for i, size := range messageSizes {
			for _, typ := range []MessageType{MessageText, MessageBinary} {
				msg := textPattern(i, size)
				if typ == MessageBinary {
					msg = pattern(i, size)
				}
				sent := bytes.Clone(msg)
				if err := a.Write(ctx, typ, msg); err != nil {
					t.Fatalf("Write(%d): %v", size, err)
				}
				if !bytes.Equal(msg, sent) {
					t.Fatalf("Write(%d) changed the caller's slice", size)
				}
				gotType, got, err := b.Read(ctx)
				if err != nil {
					t.Fatalf("Read(%d): %v", size, err)
				}
				if gotType != typ || !bytes.Equal(got, msg) {
					t.Fatalf("size %d %v: got %v of %d bytes", size, typ, gotType, len(got))
				}
				if got == nil {
					t.Fatalf("size %d: Read returned a nil payload", size)
				}
			}
		}
	})
}

// TestReaderWriterSizes does the same through Writer, written in uneven
// pieces, and Reader, read in small pieces.
func TestReaderWriterSizes(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, &sideOptions{WriteBufferSize: 1000}, nil)
		b.SetReadLimit(2 << 20)
		ctx := context.Background()
		for i, size := range messageSizes {
			msg := pattern(i, size)
			w, err := a.Writer(ctx, MessageBinary)
			if err != nil {
				t.Fatal(err)
			}
			for rest, step := msg, 1; len(rest) > 0; step = step*3 + 1 {
				n := min(step, len(rest))
				if k, err := w.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("Writer.Write: %d, %v", k, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			typ, r, err := b.Reader(ctx)
			if err != nil || typ != MessageBinary {
				t.Fatalf("Reader: %v %v", typ, err)
			}
			got, err := io.ReadAll(io.LimitReader(r, 1<<30)) // not a WriterTo: small reads
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("size %d: read %d bytes, %v", size, len(got), err)
			}
		}
	})
}

func TestStatusCodeString(t *testing.T) {
	for code, want := range map[StatusCode]string{
		StatusNormalClosure:           "NormalClosure",
		StatusGoingAway:               "GoingAway",
		StatusProtocolError:           "ProtocolError",
		StatusUnsupportedData:         "UnsupportedData",
		StatusNoStatusRcvd:            "NoStatusRcvd",
		StatusAbnormalClosure:         "AbnormalClosure",
		StatusInvalidFramePayloadData: "InvalidFramePayloadData",
		StatusPolicyViolation:         "PolicyViolation",
		StatusMessageTooBig:           "MessageTooBig",
		StatusMandatoryExtension:      "MandatoryExtension",
		StatusInternalError:           "InternalError",
		StatusTLSHandshake:            "TLSHandshake",
		4000:                          "StatusCode(4000)",
		-1:                            "StatusCode(-1)",
	} {
		if got := code.String(); got != want {
			t.Errorf("StatusCode(%d).String() = %q, want %q", int(code), got, want)
		}
	}
}

func TestMessageTypeString(t *testing.T) {
	for typ, want := range map[MessageType]string{
		MessageText:    "text",
		MessageBinary:  "binary",
		0:              "MessageType(0)",
		MessageType(9): "MessageType(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("MessageType(%d).String() = %q, want %q", int(typ), got, want)
		}
	}
	if MessageText != 1 || MessageBinary != 2 {
		t.Errorf("MessageText, MessageBinary = %d, %d; want the opcodes 1, 2", MessageText, MessageBinary)
	}
}

func TestCloseErrorWrapped(t *testing.T) {
	ce := &CloseError{Code: StatusGoingAway, Reason: "restart"}
	wrapped := fmt.Errorf("chat: %w", fmt.Errorf("session 7: %w", ce))
	if got := CloseStatus(wrapped); got != StatusGoingAway {
		t.Errorf("CloseStatus(wrapped) = %v", got)
	}
	var got *CloseError
	if !errors.As(wrapped, &got) || got != ce {
		t.Errorf("errors.As did not find the CloseError in %v", wrapped)
	}
	for _, err := range []error{nil, io.EOF, &ProtocolError{Code: StatusProtocolError}, errors.New("x")} {
		if got := CloseStatus(err); got != -1 {
			t.Errorf("CloseStatus(%v) = %v, want -1", err, got)
		}
	}
	if got, want := ce.Error(), "websocket: closed by peer with 1001 (GoingAway): restart"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&CloseError{Code: StatusNormalClosure}).Error(), "websocket: closed by peer with 1000 (NormalClosure)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	// And as Read returns it, wrapped by the caller.
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		read := readAsync(context.Background(), a)
		if err := b.Close(StatusGoingAway, "restart"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		r := waitResult(t, read, 5*time.Second, "Read")
		err := fmt.Errorf("reading: %w", r.err)
		if got := CloseStatus(err); got != StatusGoingAway {
			t.Fatalf("CloseStatus(%v) = %v", err, got)
		}
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Reason != "restart" {
			t.Fatalf("errors.As(%v) = %+v", err, ce)
		}
	})
}

// TestPing checks that Ping returns when the pong arrives, from either side,
// and that pings go out between the frames of a message being read.
func TestPing(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bErr := drainUntilError(b)
		aErr := drainUntilError(a)
		for range 10 {
			if err := a.Ping(ctx); err != nil {
				t.Fatalf("a.Ping: %v", err)
			}
			if err := b.Ping(ctx); err != nil {
				t.Fatalf("b.Ping: %v", err)
			}
		}
		a.CloseNow()
		waitResult(t, bErr, 5*time.Second, "b's Read")
		waitResult(t, aErr, 5*time.Second, "a's Read")
		if err := a.Ping(ctx); err == nil {
			t.Fatal("Ping on a closed Conn succeeded")
		}
	})
}

// TestPingNobodyReading: without a reader the pong is never read, so Ping
// ends with its context.
func TestPingNobodyReading(t *testing.T) {
	a, b := newPair(t, nil, nil)
	bErr := drainUntilError(b)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := a.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v, want DeadlineExceeded", err)
	}
	a.CloseNow()
	waitResult(t, bErr, 5*time.Second, "b's Read")
}

// answerPings plays a peer that reads and answers every ping, counting
// them, until the connection ends.
func (p *rawPeer) answerPings(pings *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			h, payload, err := p.readFrame()
			if err != nil {
				return
			}
			if h.Opcode == frame.OpPing {
				pings.Add(1)
				if _, err := p.conn.Write(appendTestFrame(nil, true, frame.OpPong, p.client, payload)); err != nil {
					return
				}
			}
		}
	}()
	return done
}

// TestKeepAliveStaysUp: with a peer that answers pings, keepalive pings at
// its interval and keeps the connection up.
func TestKeepAliveStaysUp(t *testing.T) {
	t.Run("raw peer", func(t *testing.T) { forRoles(t, testKeepAliveRawPeer) })
	t.Run("conn peer", func(t *testing.T) { forRoles(t, testKeepAliveConnPeer) })
}

func testKeepAliveRawPeer(t *testing.T, client bool) {
	a, peer := newRawPeer(t, client, &sideOptions{PingInterval: 50 * time.Millisecond})
	var pings atomic.Int64
	peerDone := peer.answerPings(&pings)
	read := readAsync(context.Background(), a)
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-read:
		t.Fatalf("Read ended while pongs flowed: %v", r.err)
	default:
	}
	if n := pings.Load(); n < 3 {
		t.Fatalf("%d pings in 300ms at an interval of 50ms", n)
	}
	peer.writeFrame(true, frame.OpText, []byte("still here"))
	r := waitResult(t, read, 5*time.Second, "Read")
	if r.err != nil || string(r.msg) != "still here" {
		t.Fatalf("Read = %q, %v", r.msg, r.err)
	}
	a.CloseNow()
	waitResult(t, peerDone, 5*time.Second, "peer")
}

// testKeepAliveConnPeer: two Conns, both keeping alive.
func testKeepAliveConnPeer(t *testing.T, client bool) {
	opts := &sideOptions{PingInterval: 50 * time.Millisecond}
	a, b := newSides(t, client, opts, opts)
	aRead, bRead := readAsync(context.Background(), a), readAsync(context.Background(), b)
	time.Sleep(300 * time.Millisecond)
	if err := a.Write(context.Background(), MessageText, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(context.Background(), MessageText, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, aRead, 5*time.Second, "a's Read"); r.err != nil || string(r.msg) != "b" {
		t.Fatalf("a read %q, %v", r.msg, r.err)
	}
	if r := waitResult(t, bRead, 5*time.Second, "b's Read"); r.err != nil || string(r.msg) != "a" {
		t.Fatalf("b read %q, %v", r.msg, r.err)
	}
}

// TestKeepAliveNoPong: a peer that completed the handshake and then never
// answers fails the connection with StatusPolicyViolation once a pong is
// late, and the reader learns why.
func TestKeepAliveNoPong(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		const interval, timeout = 50 * time.Millisecond, 50 * time.Millisecond
		start := time.Now() // before the Conn exists: its keepalive starts with it
		a, peer := newRawPeer(t, client, &sideOptions{PingInterval: interval, PongTimeout: timeout, CloseTimeout: time.Second})
		r := waitResult(t, readAsync(context.Background(), a), 5*time.Second, "Read")
		elapsed := time.Since(start)
		var pe *ProtocolError
		if !errors.As(r.err, &pe) || pe.Code != StatusPolicyViolation || !strings.Contains(pe.Reason, "no pong within") {
			t.Fatalf("Read = %v, want a ProtocolError 1008 about the missing pong", r.err)
		}
		if elapsed < interval+timeout || elapsed > interval+timeout+time.Second {
			t.Fatalf("keepalive failed the connection after %v, want about %v", elapsed, interval+timeout)
		}
		// The peer got a ping, then the close frame with the reason.
		var last frame.Header
		var payload []byte
		for {
			h, p, err := peer.readFrame()
			if err != nil {
				break
			}
			last, payload = h, p
		}
		if last.Opcode != frame.OpClose {
			t.Fatalf("last frame the peer got: %v, want close", last.Opcode)
		}
		if code, reason, _ := frame.ParseClosePayload(payload); code != 1008 || !strings.Contains(string(reason), "no pong") {
			t.Fatalf("close frame %d %q", code, reason)
		}
	})
}

// TestMethodsAfterCloseNow: every method fails cleanly, no panic.
func TestMethodsAfterCloseNow(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, _ := newSides(t, client, nil, nil)
		if err := a.CloseNow(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := a.Write(ctx, MessageText, []byte("x")); err == nil {
			t.Error("Write succeeded")
		}
		if w, err := a.Writer(ctx, MessageText); err == nil {
			w.Write([]byte("x"))
			if err := w.Close(); err == nil {
				t.Error("Writer succeeded")
			}
		}
		if _, _, err := a.Read(ctx); err == nil {
			t.Error("Read succeeded")
		}
		if _, _, err := a.Reader(ctx); err == nil {
			t.Error("Reader succeeded")
		}
		if err := a.Ping(ctx); err == nil {
			t.Error("Ping succeeded")
		}
		if err := a.Close(StatusNormalClosure, ""); err == nil {
			t.Error("Close succeeded")
		}
		if done := a.CloseRead(ctx); done.Err() == nil {
			// The context ends at once, or at least promptly.
			select {
			case <-done.Done():
			case <-time.After(5 * time.Second):
				t.Error("CloseRead's context not done on a closed Conn")
			}
		}
	})
}

// seqPayload is a little-endian counter, for messages that must arrive in
// order.
func seqPayload(i int) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(i)) }
