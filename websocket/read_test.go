package websocket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// TestStream16MiB streams a 16 MiB message through Writer and Reader in
// both directions, with neither side holding it whole: the writer generates
// it in pieces, the reader reads it with a small buffer and compares hashes.
func TestStream16MiB(t *testing.T) {
	const size = 16 << 20
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		b.SetReadLimit(size)
		ctx := context.Background()

		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		sent := make(chan []byte, 1)
		go func() {
			h := sha256.New()
			defer func() { sent <- h.Sum(nil) }()
			w, err := a.Writer(ctx, MessageBinary)
			if err != nil {
				t.Error(err)
				return
			}
			src := rand.NewChaCha8([32]byte{7})
			piece := make([]byte, 30_000) // not a multiple of the write buffer
			for left := size; left > 0; left -= len(piece) {
				piece = piece[:min(len(piece), left)]
				src.Read(piece)
				h.Write(piece)
				if _, err := w.Write(piece); err != nil {
					t.Error(err)
					return
				}
			}
			if err := w.Close(); err != nil {
				t.Error(err)
			}
		}()

		typ, r, err := b.Reader(ctx)
		if err != nil || typ != MessageBinary {
			t.Fatalf("Reader: %v %v", typ, err)
		}
		h := sha256.New()
		buf := make([]byte, 4096)
		n, err := io.CopyBuffer(h, struct{ io.Reader }{r}, buf)
		if err != nil || n != size {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		want := waitResult(t, sent, 30*time.Second, "the writer")
		if !bytes.Equal(h.Sum(nil), want) {
			t.Fatal("the message arrived corrupted")
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// Holding the message anywhere would take 16 MiB; what is allowed
		// is buffers, of which the race detector's sync.Pool drops some.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > size/2 {
			t.Fatalf("streaming 16 MiB allocated %d bytes", grew)
		}
		// The message is over: the reader says so and the next one arrives.
		if n, err := r.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end = %d, %v; want io.EOF", n, err)
		}
		if err := a.Write(ctx, MessageText, []byte("next")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := b.Read(ctx); err != nil || string(msg) != "next" {
			t.Fatalf("Read = %q, %v", msg, err)
		}
	})
}

// TestReaderEOF: the reader returns io.EOF at the end of the message, and
// again if called again, also for an empty message.
func TestReaderEOF(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx := context.Background()
		for _, msg := range []string{"", "hello"} {
			if err := a.Write(ctx, MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			typ, r, err := b.Reader(ctx)
			if err != nil || typ != MessageText {
				t.Fatalf("Reader = %v, %v", typ, err)
			}
			buf := make([]byte, 100)
			n, err := io.ReadFull(r, buf[:len(msg)])
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			for range 2 {
				if n, err := r.Read(buf); n != 0 || err != io.EOF {
					t.Fatalf("Read at the end = %d, %v; want 0, io.EOF", n, err)
				}
			}
		}
	})
}

// TestReaderAbandoned: a Reader left in the middle of a message is
// discarded by the next Reader or Read, which return the following message.
func TestReaderAbandoned(t *testing.T) {
	for _, next := range []string{"Reader", "Read"} {
		t.Run(next, func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				a, b := newSides(t, client, &sideOptions{WriteBufferSize: 1000}, nil)
				ctx := context.Background()
				first := textPattern(1, 10_000)
				// Sent as a Writer's frames, so that what is discarded spans
				// frames.
				w, err := a.Writer(ctx, MessageText)
				if err != nil {
					t.Fatal(err)
				}
				w.Write(first)
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if err := a.Write(ctx, MessageBinary, []byte("second")); err != nil {
					t.Fatal(err)
				}
				_, r, err := b.Reader(ctx)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 100)
				if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, first[:100]) {
					t.Fatalf("read %q, %v", buf, err)
				}
				var typ MessageType
				var got []byte
				if next == "Reader" {
					var r2 io.Reader
					typ, r2, err = b.Reader(ctx)
					if err == nil {
						got, err = io.ReadAll(r2)
					}
				} else {
					typ, got, err = b.Read(ctx)
				}
				if err != nil || typ != MessageBinary || string(got) != "second" {
					t.Fatalf("%s = %v %q, %v; want the second message", next, typ, got, err)
				}
			})
		})
	}
}

// TestReadLimit: DefaultReadLimit applies until SetReadLimit; a message at
// the limit passes, one byte more fails the connection with
// StatusMessageTooBig on this side and the peer sees that code, whether
// the message comes in one frame or many.
func TestReadLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     int64 // 0: leave the default
		fragments bool
		ok, over  int // over: 0 for none
	}{
		{name: "default", ok: DefaultReadLimit, over: DefaultReadLimit + 1},
		{name: "larger", limit: 100_000, ok: 100_000, over: 100_001},
		{name: "smaller", limit: 10, ok: 10, over: 11},
		{name: "zero bytes", limit: -2, ok: 0, over: 1}, // -2: SetReadLimit(0)
		{name: "unlimited", limit: -1, ok: 3 << 20},
		{name: "fragmented", limit: 1000, fragments: true, ok: 1000, over: 1001},
		{name: "fragmented default", fragments: true, ok: DefaultReadLimit, over: DefaultReadLimit + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				a, b := newSides(t, client, &sideOptions{WriteBufferSize: 256}, nil)
				switch tc.limit {
				case 0:
				case -2:
					b.SetReadLimit(0)
				default:
					b.SetReadLimit(tc.limit)
				}
				ctx := context.Background()
				send := func(size int) <-chan error {
					done := make(chan error, 1)
					go func() {
						msg := pattern(size, size)
						if !tc.fragments {
							done <- a.Write(ctx, MessageBinary, msg)
							return
						}
						w, err := a.Writer(ctx, MessageBinary)
						if err != nil {
							done <- err
							return
						}
						w.Write(msg)
						done <- w.Close()
					}()
					return done
				}
				sent := send(tc.ok)
				typ, got, err := b.Read(ctx)
				if err != nil || typ != MessageBinary || !bytes.Equal(got, pattern(tc.ok, tc.ok)) {
					t.Fatalf("Read of %d bytes: %d bytes, %v", tc.ok, len(got), err)
				}
				if err := waitResult(t, sent, 10*time.Second, "Write"); err != nil {
					t.Fatal(err)
				}
				if tc.over == 0 {
					return
				}
				peer := readAsync(ctx, a)
				send(tc.over) // fails once b closes: ignore
				_, _, err = b.Read(ctx)
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Code != StatusMessageTooBig {
					t.Fatalf("Read of %d bytes = %v, want a ProtocolError with StatusMessageTooBig", tc.over, err)
				}
				r := waitResult(t, peer, 10*time.Second, "the peer's Read")
				if CloseStatus(r.err) != StatusMessageTooBig {
					t.Fatalf("the peer's Read = %v, want CloseStatus 1009", r.err)
				}
				// Reading has ended for good, with the same error.
				if _, _, err := b.Read(ctx); !errors.As(err, &pe) || pe.Code != StatusMessageTooBig {
					t.Fatalf("Read after the failure = %v", err)
				}
			})
		})
	}
}

// TestReaderLimit: the limit applies to Reader too, at the frame that
// crosses it.
func TestReaderLimit(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, &sideOptions{WriteBufferSize: 256}, nil)
		b.SetReadLimit(600)
		ctx := context.Background()
		peer := readAsync(ctx, a)
		go func() {
			w, err := a.Writer(ctx, MessageBinary)
			if err == nil {
				w.Write(make([]byte, 1000))
				w.Close()
			}
		}()
		_, r, err := b.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != StatusMessageTooBig {
			t.Fatalf("reading = %v, want a ProtocolError with StatusMessageTooBig", err)
		}
		if n > 600 {
			t.Fatalf("the reader returned %d bytes, over the limit", n)
		}
		if r := waitResult(t, peer, 10*time.Second, "the peer's Read"); CloseStatus(r.err) != StatusMessageTooBig {
			t.Fatalf("the peer's Read = %v", r.err)
		}
	})
}

// TestReadCancelWaiting: cancelling Read's context while it waits ends the
// Read with the context's error, and the connection stays usable.
func TestReadCancelWaiting(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		if _, _, err := b.Read(ctx); err != context.Canceled {
			t.Fatalf("Read = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Read returned %v after the cancel", d)
		}
		if err := a.Write(context.Background(), MessageText, []byte("next")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := b.Read(context.Background()); err != nil || string(msg) != "next" {
			t.Fatalf("Read after the cancel = %q, %v", msg, err)
		}
	})
}

// TestReadDeadline: a context deadline ends Read with DeadlineExceeded.
func TestReadDeadline(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := b.Read(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Read = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("Read timed out after %v", d)
		}
		a.Write(context.Background(), MessageText, []byte("next"))
		if _, msg, err := b.Read(context.Background()); err != nil || string(msg) != "next" {
			t.Fatalf("Read after the deadline = %q, %v", msg, err)
		}
	})
}

// TestReadCancelled: Read with a context that has already ended returns
// its error when nothing has arrived.
func TestReadCancelled(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := b.Read(ctx); err != context.Canceled {
			t.Fatalf("Read = %v, want context.Canceled", err)
		}
		if _, _, err := b.Reader(ctx); err != context.Canceled {
			t.Fatalf("Reader = %v, want context.Canceled", err)
		}
		a.Write(context.Background(), MessageText, []byte("next"))
		if _, msg, err := b.Read(context.Background()); err != nil || string(msg) != "next" {
			t.Fatalf("Read after = %q, %v", msg, err)
		}
	})
}

// TestReadCancelWaitingForTurn: one reader at a time; a second Read waits
// for the first and gives up with its context.
func TestReadCancelWaitingForTurn(t *testing.T) {
	a, b := newPair(t, nil, nil)
	first := readAsync(context.Background(), b)
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := b.Read(ctx); err != context.DeadlineExceeded {
		t.Fatalf("second Read = %v, want DeadlineExceeded", err)
	}
	a.Write(context.Background(), MessageText, []byte("one"))
	if r := waitResult(t, first, 5*time.Second, "first Read"); r.err != nil || string(r.msg) != "one" {
		t.Fatalf("first Read = %q, %v", r.msg, r.err)
	}
}

// TestReadResumeMidFrame: Read cancelled in the middle of a frame's
// payload keeps what arrived; the next Read returns the whole message.
func TestReadResumeMidFrame(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		b, peer := newRawPeer(t, client, nil)
		b.SetReadLimit(1 << 20)
		msg := pattern(3, 64<<10)
		wire := appendTestFrame(nil, true, frame.OpBinary, peer.client, msg)
		half := len(wire) / 2
		peer.write(wire[:half])

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, _, err := b.Read(ctx); err != context.Canceled {
			t.Fatalf("Read = %v, want context.Canceled", err)
		}
		if len(b.partial) == 0 {
			t.Fatal("nothing of the message was read before the cancel: the test does not test resumption")
		}
		peer.write(wire[half:])
		typ, got, err := b.Read(context.Background())
		if err != nil || typ != MessageBinary || !bytes.Equal(got, msg) {
			t.Fatalf("resumed Read = %v, %d bytes, %v", typ, len(got), err)
		}
	})
}

// TestReadResumeBetweenFrames: the same when the message stops between two
// of its frames, sent by a Writer that pauses.
func TestReadResumeBetweenFrames(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, &sideOptions{WriteBufferSize: 4096}, nil)
		b.SetReadLimit(1 << 20)
		msg := textPattern(4, 64<<10)
		w, err := a.Writer(context.Background(), MessageText)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(msg[:32<<10]); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, _, err := b.Read(ctx); err != context.Canceled {
			t.Fatalf("Read = %v, want context.Canceled", err)
		}
		if len(b.partial) == 0 {
			t.Fatal("nothing of the message was read before the cancel")
		}
		// A second interruption, between frames again.
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, _, err := b.Read(ctx); err != context.DeadlineExceeded {
			t.Fatalf("Read = %v, want context.DeadlineExceeded", err)
		}
		if _, err := w.Write(msg[32<<10:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		typ, got, err := b.Read(context.Background())
		if err != nil || typ != MessageText || !bytes.Equal(got, msg) {
			t.Fatalf("resumed Read = %v, %d bytes, %v", typ, len(got), err)
		}
	})
}

// TestReaderCancelled: the reader's Read ends with its context's error;
// the connection stays usable and the next Read skips what is left.
func TestReaderCancelled(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		b, peer := newRawPeer(t, client, nil)
		peer.writeFrame(false, frame.OpText, []byte("first part,"))
		ctx, cancel := context.WithCancel(context.Background())
		typ, r, err := b.Reader(ctx)
		if err != nil || typ != MessageText {
			t.Fatalf("Reader = %v, %v", typ, err)
		}
		buf := make([]byte, 100)
		n, err := io.ReadFull(r, buf[:11])
		if err != nil || string(buf[:n]) != "first part," {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		// Cancelled while waiting for the next frame...
		time.AfterFunc(50*time.Millisecond, cancel)
		if n, err := r.Read(buf); n != 0 || err != context.Canceled {
			t.Fatalf("Read = %d, %v; want context.Canceled", n, err)
		}
		// ...and already cancelled.
		if n, err := r.Read(buf); n != 0 || err != context.Canceled {
			t.Fatalf("Read = %d, %v; want context.Canceled", n, err)
		}
		peer.writeFrame(true, frame.OpContinuation, []byte(" second part"))
		peer.writeFrame(true, frame.OpBinary, []byte("next"))
		typ, msg, err := b.Read(context.Background())
		if err != nil || typ != MessageBinary || string(msg) != "next" {
			t.Fatalf("Read = %v %q, %v; want the next message", typ, msg, err)
		}
	})
}

// TestReadControlBetweenFragments: pings between the frames of a message
// are answered and the message arrives whole; a peer's close in the middle
// of a message ends it.
func TestReadControlBetweenFragments(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		b, peer := newRawPeer(t, client, nil)
		var wire []byte
		wire = appendTestFrame(wire, false, frame.OpText, peer.client, []byte("Hel"))
		wire = appendTestFrame(wire, true, frame.OpPing, peer.client, []byte("p1"))
		wire = appendTestFrame(wire, false, frame.OpContinuation, peer.client, []byte("lo, "))
		wire = appendTestFrame(wire, true, frame.OpPong, peer.client, []byte("unsolicited"))
		wire = appendTestFrame(wire, true, frame.OpContinuation, peer.client, []byte("wörld"))
		peer.write(wire)
		typ, msg, err := b.Read(context.Background())
		if err != nil || typ != MessageText || string(msg) != "Hello, wörld" {
			t.Fatalf("Read = %v %q, %v", typ, msg, err)
		}
		h, p, err := peer.readFrame()
		if err != nil || h.Opcode != frame.OpPong || string(p) != "p1" || h.Masked != client {
			t.Fatalf("peer got %+v %q, %v; want the pong", h, p, err)
		}

		peer.writeFrame(false, frame.OpBinary, []byte("abc"))
		peer.writeFrame(true, frame.OpClose, closePayload(StatusGoingAway, "away"))
		read := readAsync(context.Background(), b)
		h, p, err = peer.readFrame()
		if err != nil || h.Opcode != frame.OpClose {
			t.Fatalf("peer got %+v, %v; want the close answer", h, err)
		}
		if code, _, _ := frame.ParseClosePayload(p); code != uint16(StatusGoingAway) {
			t.Fatalf("close answered with %d", code)
		}
		if client {
			// The server closes TCP first (section 7.1.1): the client waits.
			select {
			case r := <-read:
				t.Fatalf("the client ended before the server closed TCP: %v", r.err)
			case <-time.After(50 * time.Millisecond):
			}
			peer.conn.Close()
		} else {
			if _, err := peer.br.ReadByte(); err != io.EOF {
				t.Fatalf("the server did not close TCP after the close frames: %v", err)
			}
			peer.conn.Close() // as a client does once the server has closed
		}
		r := waitResult(t, read, 2*time.Second, "Read")
		var ce *CloseError
		if !errors.As(r.err, &ce) || ce.Code != StatusGoingAway || ce.Reason != "away" {
			t.Fatalf("Read = %v, want the peer's close", r.err)
		}
	})
}

// TestReadProtocolErrors: what the peer does wrong fails the connection
// with the code section 7.4.1 gives, seen by both sides.
func TestReadProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire func(masked bool) []byte
		code StatusCode
	}{
		{"invalid UTF-8", func(m bool) []byte { return appendTestFrame(nil, true, frame.OpText, m, []byte("a\xffb")) }, StatusInvalidFramePayloadData},
		{"invalid UTF-8 across fragments", func(m bool) []byte {
			b := appendTestFrame(nil, false, frame.OpText, m, []byte("a\xe2\x82"))
			return appendTestFrame(b, true, frame.OpContinuation, m, []byte("z"))
		}, StatusInvalidFramePayloadData},
		{"truncated UTF-8 at the end", func(m bool) []byte { return appendTestFrame(nil, true, frame.OpText, m, []byte("a\xe2\x82")) }, StatusInvalidFramePayloadData},
		{"reserved opcode", func(m bool) []byte { return appendTestFrame(nil, true, 3, m, nil) }, StatusProtocolError},
		{"continuation first", func(m bool) []byte { return appendTestFrame(nil, true, frame.OpContinuation, m, []byte("x")) }, StatusProtocolError},
		{"wrong masking", func(m bool) []byte { return appendTestFrame(nil, true, frame.OpText, !m, []byte("x")) }, StatusProtocolError},
		{"fragmented ping", func(m bool) []byte { return appendTestFrame(nil, false, frame.OpPing, m, nil) }, StatusProtocolError},
		{"close code 1005", func(m bool) []byte { return appendTestFrame(nil, true, frame.OpClose, m, []byte{0x03, 0xed}) }, StatusProtocolError},
		{"close reason not UTF-8", func(m bool) []byte {
			return appendTestFrame(nil, true, frame.OpClose, m, []byte{0x03, 0xe8, 0xff})
		}, StatusInvalidFramePayloadData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				b, peer := newRawPeer(t, client, nil)
				peer.write(tc.wire(peer.client))
				read := readAsync(context.Background(), b)
				h, p, err := peer.readFrame()
				if err != nil || h.Opcode != frame.OpClose {
					t.Fatalf("peer got %+v, %v; want a close frame", h, err)
				}
				if code, _, _ := frame.ParseClosePayload(p); StatusCode(code) != tc.code {
					t.Fatalf("close frame with %d, want %d", code, tc.code)
				}
				// b lingers until the peer closes, so that the close frame
				// is not lost to a reset.
				peer.conn.Close()
				r := waitResult(t, read, 2*time.Second, "Read")
				var pe *ProtocolError
				if !errors.As(r.err, &pe) || pe.Code != tc.code {
					t.Fatalf("Read = %v, want a ProtocolError with %v", r.err, tc.code)
				}
			})
		})
	}
}

// TestReadTruncated: a connection that ends inside a message, in a frame's
// payload or between its frames, is an error, never the message's end.
func TestReadTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire func(masked bool) []byte
	}{
		{"inside a frame", func(m bool) []byte {
			return appendTestFrame(nil, true, frame.OpText, m, []byte("0123456789"))[:8]
		}},
		{"inside a fragment", func(m bool) []byte {
			return appendTestFrame(nil, false, frame.OpText, m, []byte("0123456789"))[:8]
		}},
		{"between fragments", func(m bool) []byte {
			return appendTestFrame(nil, false, frame.OpText, m, []byte("0123456789"))
		}},
		{"inside the next header", func(m bool) []byte {
			b := appendTestFrame(nil, false, frame.OpBinary, m, []byte("0123456789"))
			return append(b, 0x80)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, useReader := range []bool{false, true} {
				name := "Read"
				if useReader {
					name = "Reader"
				}
				t.Run(name, func(t *testing.T) {
					forRoles(t, func(t *testing.T, client bool) {
						b, peer := newRawPeer(t, client, nil)
						peer.write(tc.wire(peer.client))
						peer.conn.(*net.TCPConn).CloseWrite()
						var got []byte
						var err error
						if useReader {
							var r io.Reader
							if _, r, err = b.Reader(context.Background()); err == nil {
								got, err = io.ReadAll(r)
							}
						} else {
							_, got, err = b.Read(context.Background())
						}
						if err == nil {
							t.Fatalf("read %q as a whole message", got)
						}
						if !errors.Is(err, io.ErrUnexpectedEOF) {
							t.Fatalf("err = %v, want one wrapping io.ErrUnexpectedEOF", err)
						}
					})
				})
			}
		})
	}
}
