package websocket

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// newPipeStream returns an h2Stream over two io.Pipes, as the client side
// uses one: what the test writes to in arrives on the stream, what the
// stream writes comes out of out. aborts counts calls of abort, which
// breaks the writing pipe as a stream reset would.
func newPipeStream(t *testing.T) (s *h2Stream, in *io.PipeWriter, out *io.PipeReader, aborts *atomic.Int32) {
	t.Helper()
	bodyR, bodyW := io.Pipe()
	outR, outW := io.Pipe()
	aborts = new(atomic.Int32)
	s = newH2Stream(bodyR, outW, nil,
		func() { aborts.Add(1); outW.CloseWithError(errH2StreamAborted) },
		outW.Close, nil, 64, h2Addr("local"), h2Addr("remote"))
	t.Cleanup(func() {
		s.Close()
		bodyW.Close()
		outR.Close()
	})
	return s, bodyW, outR, aborts
}

// An expired read deadline fails the Read waiting and leaves the stream
// as it was: what arrives later is read whole, in order.
func TestH2StreamReadDeadlineKeepsStream(t *testing.T) {
	s, in, _, _ := newPipeStream(t)
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 16)
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	s.SetReadDeadline(time.Time{})
	go in.Write([]byte("after the deadline"))
	got, err := io.ReadAll(io.LimitReader(s, int64(len("after the deadline"))))
	if err != nil || string(got) != "after the deadline" {
		t.Fatalf("read %q, %v", got, err)
	}
	// A deadline in the past wakes a Read already waiting.
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.SetReadDeadline(aLongTimeAgo)
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read woken by a past deadline: %v", err)
	}
}

// A write deadline that passed before a write fails it without touching
// the stream; one that passes during a write resets the stream (abort),
// since a frame cannot be taken back half-sent.
func TestH2StreamWriteDeadline(t *testing.T) {
	s, _, out, aborts := newPipeStream(t)
	s.SetWriteDeadline(aLongTimeAgo)
	if _, err := s.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v", err)
	}
	if aborts.Load() != 0 {
		t.Fatal("an idle stream was reset for a passed deadline")
	}
	s.SetWriteDeadline(time.Time{})
	go io.ReadFull(out, make([]byte, 2))
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatalf("Write after the deadline was lifted: %v", err)
	}

	// Nobody reads out now: the write blocks until the deadline.
	s.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Write([]byte("blocked")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write blocked past its deadline: %v", err)
	}
	if aborts.Load() != 1 {
		t.Fatalf("abort ran %d times, want 1", aborts.Load())
	}
}

// A reset (a read error other than EOF) reads as an error that says the
// stream was reset or lost; EOF (END_STREAM) stays io.EOF.
func TestH2StreamResetAndEnd(t *testing.T) {
	s, in, _, _ := newPipeStream(t)
	in.CloseWithError(errors.New("stream error: stream ID 1; CANCEL"))
	_, err := s.Read(make([]byte, 8))
	var se *h2StreamError
	if !errors.As(err, &se) {
		t.Fatalf("read %v, want an h2StreamError", err)
	}
	s2, in2, _, _ := newPipeStream(t)
	in2.Close()
	if _, err := s2.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("END_STREAM read as %v, want io.EOF", err)
	}
}
