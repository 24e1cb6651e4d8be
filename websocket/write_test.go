package websocket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// TestWriterFrameSizes: a Writer sends frames of at most the write buffer
// size, the first with the message's opcode and the others as
// continuations, masked by the client only; Write sends one frame whatever
// its size.
func TestWriterFrameSizes(t *testing.T) {
	for _, bufSize := range []int{300, 4096} {
		t.Run(strconv.Itoa(bufSize), func(t *testing.T) {
			forRoles(t, func(t *testing.T, client bool) {
				a, peer := newRawPeer(t, client, &sideOptions{WriteBufferSize: bufSize})
				msg := pattern(bufSize, 5*bufSize+17)
				w, err := a.Writer(context.Background(), MessageBinary)
				if err != nil {
					t.Fatal(err)
				}
				for rest, step := msg, 1; len(rest) > 0; step = step*2 + 7 {
					n := min(step, len(rest))
					w.Write(rest[:n])
					rest = rest[n:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				var got []byte
				for i := 0; ; i++ {
					h, p, err := peer.readFrame()
					if err != nil {
						t.Fatal(err)
					}
					if len(p) > bufSize {
						t.Fatalf("frame %d carries %d bytes, over the write buffer of %d", i, len(p), bufSize)
					}
					if want := frame.OpBinary; i == 0 && h.Opcode != want || i > 0 && h.Opcode != frame.OpContinuation {
						t.Fatalf("frame %d has opcode %v", i, h.Opcode)
					}
					if h.Masked != client {
						t.Fatalf("frame %d masked = %v as %s", i, h.Masked, roleName(client))
					}
					got = append(got, p...)
					if h.Fin {
						break
					}
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("the frames carry %d bytes that differ from the %d written", len(got), len(msg))
				}

				big := pattern(1, 10*bufSize)
				if err := a.Write(context.Background(), MessageText, big); err != nil {
					t.Fatal(err)
				}
				h, p, err := peer.readFrame()
				if err != nil || !h.Fin || h.Opcode != frame.OpText || !bytes.Equal(p, big) {
					t.Fatalf("Write sent %+v with %d bytes, %v; want one frame", h, len(p), err)
				}
			})
		})
	}
}

// TestWriterExcludesWrites: while a Writer is open, a Write waits for its
// Close, so messages never interleave; a Ping still completes, as control
// frames may go out between a message's frames.
func TestWriterExcludesWrites(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, &sideOptions{WriteBufferSize: 256}, nil)
		a.CloseRead(context.Background()) // a reads the pongs
		ctx := context.Background()
		w, err := a.Writer(ctx, MessageText)
		if err != nil {
			t.Fatal(err)
		}
		first := textPattern(1, 1000)
		if _, err := w.Write(first[:600]); err != nil { // two frames go out
			t.Fatal(err)
		}

		written := make(chan error, 1)
		go func() { written <- a.Write(ctx, MessageBinary, []byte("second")) }()

		// b reads what arrives, answering a's pings as it goes.
		got := make(chan readResult, 2)
		go func() {
			for range 2 {
				typ, msg, err := b.Read(ctx)
				got <- readResult{typ, msg, err}
				if err != nil {
					return
				}
			}
		}()

		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.Ping(pingCtx); err != nil {
			t.Fatalf("Ping while a Writer is open: %v", err)
		}
		select {
		case err := <-written:
			t.Fatalf("Write returned (%v) while a Writer was open", err)
		case r := <-got:
			t.Fatalf("b read a message (%v %d bytes, %v) before the Writer closed", r.typ, len(r.msg), r.err)
		case <-time.After(50 * time.Millisecond):
		}

		if _, err := w.Write(first[600:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := waitResult(t, written, 5*time.Second, "Write"); err != nil {
			t.Fatal(err)
		}
		if r := waitResult(t, got, 5*time.Second, "Read"); r.err != nil || r.typ != MessageText || !bytes.Equal(r.msg, first) {
			t.Fatalf("first message: %v, %d bytes, %v", r.typ, len(r.msg), r.err)
		}
		if r := waitResult(t, got, 5*time.Second, "Read"); r.err != nil || r.typ != MessageBinary || string(r.msg) != "second" {
			t.Fatalf("second message: %v %q, %v", r.typ, r.msg, r.err)
		}
	})
}

// TestWriterMisuse: a Writer must not be used after Close; that is an
// error, not a panic, and the next message is unharmed.
func TestWriterMisuse(t *testing.T) {
	a, b := newPair(t, nil, nil)
	ctx := context.Background()
	w, err := a.Writer(ctx, MessageText)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("one"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	a.Write(ctx, MessageText, []byte("two"))
	for _, want := range []string{"one", "two"} {
		if _, msg, err := b.Read(ctx); err != nil || string(msg) != want {
			t.Fatalf("Read = %q, %v; want %q", msg, err, want)
		}
	}
}

// TestWriteInvalidType: only text and binary messages may be written.
func TestWriteInvalidType(t *testing.T) {
	a, b := newPair(t, nil, nil)
	ctx := context.Background()
	for _, typ := range []MessageType{0, 3, MessageType(frame.OpClose), MessageType(frame.OpPing), MessageType(frame.OpPong), 255, -1} {
		if err := a.Write(ctx, typ, []byte("x")); err == nil {
			t.Errorf("Write(%v) succeeded", typ)
		}
		if _, err := a.Writer(ctx, typ); err == nil {
			t.Errorf("Writer(%v) succeeded", typ)
		}
	}
	if err := a.Write(ctx, MessageBinary, []byte("fine")); err != nil {
		t.Fatal(err)
	}
	if typ, msg, err := b.Read(ctx); err != nil || typ != MessageBinary || string(msg) != "fine" {
		t.Fatalf("Read = %v %q, %v", typ, msg, err)
	}
}

// TestWriteCancelled: Write, Writer and Ping with a context that has
// already ended return its error, send nothing and leave the connection
// unharmed.
func TestWriteCancelled(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		ctx := context.Background()
		// Many times, as a deadline set by the cancelled context races with
		// the write.
		for i := range 50 {
			if err := a.Write(cancelled, MessageBinary, []byte("must not arrive")); err != context.Canceled {
				t.Fatalf("Write = %v, want context.Canceled", err)
			}
			if err := a.Ping(cancelled); err != context.Canceled {
				t.Fatalf("Ping = %v, want context.Canceled", err)
			}
			if w, err := a.Writer(cancelled, MessageText); err == nil {
				// More than a frame: every frame must give up, none may go
				// out as a continuation of a message never begun.
				if _, err := w.Write(textPattern(i, 10_000)); err != context.Canceled {
					t.Fatalf("Writer's Write = %v, want context.Canceled", err)
				}
				if err := w.Close(); err != context.Canceled {
					t.Fatalf("Writer's Close = %v, want context.Canceled", err)
				}
			} else if err != context.Canceled {
				t.Fatalf("Writer = %v, want context.Canceled", err)
			}
			if err := a.Write(ctx, MessageBinary, seqPayload(i)); err != nil {
				t.Fatalf("Write after the cancelled one: %v", err)
			}
			if _, msg, err := b.Read(ctx); err != nil || !bytes.Equal(msg, seqPayload(i)) {
				t.Fatalf("Read = %q, %v; want message %d", msg, err, i)
			}
		}
	})
}

// TestWriteCancelWaiting: a Write waiting for an open Writer gives up when
// its context ends, and the connection is unharmed.
func TestWriteCancelWaiting(t *testing.T) {
	a, b := newPair(t, nil, nil)
	ctx := context.Background()
	w, err := a.Writer(ctx, MessageText)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.Write(short, MessageText, []byte("x")); err != context.DeadlineExceeded {
		t.Fatalf("Write = %v, want DeadlineExceeded", err)
	}
	if _, err := a.Writer(short, MessageText); err != context.DeadlineExceeded {
		t.Fatalf("Writer = %v, want DeadlineExceeded", err)
	}
	w.Write([]byte("held"))
	w.Close()
	if _, msg, err := b.Read(ctx); err != nil || string(msg) != "held" {
		t.Fatalf("Read = %q, %v", msg, err)
	}
}

// TestWriteAfterClose: after the closing handshake writing fails with an
// error, without a panic.
func TestWriteAfterClose(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, nil, nil)
		peer := drainUntilError(b)
		if err := a.Close(StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
		waitResult(t, peer, 5*time.Second, "the peer's Read")
		ctx := context.Background()
		if err := a.Write(ctx, MessageText, []byte("late")); err == nil {
			t.Error("Write after Close succeeded")
		}
		if _, err := a.Writer(ctx, MessageText); err == nil {
			t.Error("Writer after Close succeeded")
		}
		if err := a.Ping(ctx); err == nil {
			t.Error("Ping after Close succeeded")
		}
		if err := b.Write(ctx, MessageText, []byte("late")); err == nil {
			t.Error("the peer's Write after the close succeeded")
		}
	})
}

// TestWriterOpenAtClose: Close while a Writer is open still closes, and
// the Writer then fails.
func TestWriterOpenAtClose(t *testing.T) {
	forRoles(t, func(t *testing.T, client bool) {
		a, b := newSides(t, client, &sideOptions{WriteBufferSize: 256}, nil)
		peer := drainUntilError(b)
		w, err := a.Writer(context.Background(), MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, 1000))
		if err := a.Close(StatusGoingAway, ""); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if err := waitResult(t, peer, 5*time.Second, "the peer's Read"); CloseStatus(err) != StatusGoingAway {
			t.Fatalf("the peer's Read = %v", err)
		}
		if _, err := w.Write(make([]byte, 1000)); err == nil {
			t.Error("Writer.Write after Close succeeded")
		}
		if err := w.Close(); err == nil {
			t.Error("Writer.Close after Close succeeded")
		}
		if err := a.Write(context.Background(), MessageText, nil); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("Write after Close = %v", err)
		}
	})
}

// writeCounter counts the writes made to a net.Conn.
type writeCounter struct {
	net.Conn
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Conn.Write(p)
}

// TestClientWriteChunks: a client masks a frame larger than its write
// buffer in chunks of up to maxMaskChunk, so a 64 KiB message goes out in
// one write, and never in the caller's slice; the peer gets the payload
// unmasked whole.
func TestClientWriteChunks(t *testing.T) {
	nc, peer := tcpPair(t)
	counter := &writeCounter{Conn: nc}
	c := newConn(counter, nil, true, "", newConnConfig(0, 0, 0, 0, 0))
	t.Cleanup(func() {
		c.CloseNow()
		peer.Close()
	})
	br := bufio.NewReader(peer)
	for _, tc := range []struct{ size, writes int }{
		{100, 1},
		{defaultBufferSize, 1},
		{defaultBufferSize + 1, 1},
		{20 << 10, 1},
		{64 << 10, 1},
		{64<<10 + 1, 2},
		{200 << 10, 4},
	} {
		msg := pattern(tc.size, tc.size)
		orig := bytes.Clone(msg)
		got := make(chan []byte, 1)
		go func() {
			_, p, err := readTestFrame(br)
			if err != nil {
				t.Error(err)
			}
			got <- p
		}()
		counter.writes = 0
		if err := c.Write(context.Background(), MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		if counter.writes != tc.writes {
			t.Errorf("%d bytes: %d writes, want %d", tc.size, counter.writes, tc.writes)
		}
		if !bytes.Equal(msg, orig) {
			t.Fatalf("%d bytes: Write changed the caller's slice", tc.size)
		}
		if p := <-got; !bytes.Equal(p, msg) {
			t.Fatalf("%d bytes: the peer got %d bytes that differ", tc.size, len(p))
		}
	}
}
