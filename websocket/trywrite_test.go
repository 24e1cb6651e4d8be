package websocket

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// rawPair returns a server Conn and its client over loopback TCP, both
// read raw, with the server's socket send buffer and the client's receive
// buffer set small, so that a few messages fill them.
func rawPair(t testing.TB, buffer int) (server, client *Conn) {
	t.Helper()
	a, b := tcpPair(t)
	if buffer > 0 {
		a.(*net.TCPConn).SetWriteBuffer(buffer)
		b.(*net.TCPConn).SetReadBuffer(buffer)
	}
	cfg := newConnConfig(0, 0, 0, 0, 0)
	server = newConn(a, nil, false, "", cfg)
	client = newConn(b, nil, true, "", cfg)
	client.SetReadLimit(-1)
	t.Cleanup(func() {
		server.CloseNow()
		client.CloseNow()
	})
	return server, client
}

// taggedMessage is a message of size bytes that starts with its sender and
// sequence number, and is otherwise a pattern of them.
func taggedMessage(sender, seq, size int) []byte {
	b := pattern(sender<<20|seq, size)
	binary.BigEndian.PutUint32(b[0:], uint32(sender))
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
	return b
}

// checkTagged reports whether msg is a whole taggedMessage, and whose.
func checkTagged(msg []byte) (sender, seq int, ok bool) {
	if len(msg) < 8 {
		return 0, 0, false
	}
	sender, seq = int(binary.BigEndian.Uint32(msg[0:])), int(binary.BigEndian.Uint32(msg[4:]))
	return sender, seq, bytes.Equal(msg, taggedMessage(sender, seq, len(msg)))
}

// A prepared message goes out at once to a peer with room for it; a
// client, a connection with compression under context takeover and a
// closed connection write nothing, the last with an error.
func TestTryWritePrepared(t *testing.T) {
	ctx := context.Background()
	payload := []byte("hello, subscribers")
	pm, _ := NewPreparedMessage(MessageText, payload)

	server, client := rawPair(t, 0)
	sent, err := server.TryWritePrepared(pm)
	if !sent || err != nil {
		t.Fatalf("server TryWritePrepared = %v, %v; want true, nil", sent, err)
	}
	if typ, got, err := client.Read(ctx); err != nil || typ != MessageText || !bytes.Equal(got, payload) {
		t.Fatalf("Read = %v, %q, %v", typ, got, err)
	}
	if sent, err := client.TryWritePrepared(pm); sent || err != nil {
		t.Fatalf("client TryWritePrepared = %v, %v; want false, nil (clients mask)", sent, err)
	}

	opts := CompressionOptions{Mode: CompressionContextTakeover, Threshold: 1}
	_, compressed := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
	if sent, err := compressed.TryWritePrepared(pm); sent || err != nil {
		t.Fatalf("TryWritePrepared with context takeover = %v, %v; want false, nil", sent, err)
	}

	server.CloseNow()
	if sent, err := server.TryWritePrepared(pm); sent || err == nil {
		t.Fatalf("TryWritePrepared after CloseNow = %v, %v; want false and an error", sent, err)
	}
}

// Messages compressed once for all connections (no context takeover) go
// out through TryWritePrepared too, as the frame shared by all.
func TestTryWritePreparedCompressed(t *testing.T) {
	opts := CompressionOptions{Mode: CompressionNoContextTakeover}
	client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
	payload := compressible(4<<10, 7)
	pm, _ := NewPreparedMessage(MessageText, payload)
	if sent, err := server.TryWritePrepared(pm); !sent || err != nil {
		t.Fatalf("TryWritePrepared = %v, %v; want true, nil", sent, err)
	}
	if _, got, err := client.Read(context.Background()); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Read %d bytes, %v", len(got), err)
	}
	if client.msgSize >= int64(len(payload))/2 {
		t.Fatalf("the message arrived uncompressed (%d bytes on the wire)", client.msgSize)
	}
}

// When the socket takes only part of a frame, the Conn finishes it: other
// writes wait for it, and the peer receives every message TryWritePrepared
// reported sent, whole and in order, then the one written after.
func TestTryWritePreparedPartial(t *testing.T) {
	ctx := context.Background()
	server, client := rawPair(t, 16<<10)
	var sent []int
	partial := false
	deadline := time.Now().Add(10 * time.Second)
	for seq := 0; !partial && seq < 1000 && time.Now().Before(deadline); seq++ {
		// Sizes that do not divide the buffers, so that the socket
		// fills part way through a frame.
		pm, _ := NewPreparedMessage(MessageBinary, taggedMessage(1, seq, 20_000+7*seq))
		ok, err := server.TryWritePrepared(pm)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			sent = append(sent, seq)
			// The peer does not read, so a frame that went out in part
			// is still being finished, holding the write lock.
			partial = server.frameMu.held.Load()
		}
	}
	if !partial {
		t.Fatalf("no frame went out in part after %d messages", len(sent))
	}
	pm, _ := NewPreparedMessage(MessageBinary, taggedMessage(1, 9999, 10))
	if ok, err := server.TryWritePrepared(pm); ok || err != nil {
		t.Fatalf("TryWritePrepared while a frame is being finished = %v, %v; want false, nil", ok, err)
	}
	// A write that gives up waiting leaves the connection whole: it
	// waited for the frame's end, and wrote nothing.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := server.Write(short, MessageBinary, taggedMessage(3, 0, 5000))
	cancel()
	if err != context.DeadlineExceeded {
		t.Fatalf("Write while a frame is being finished = %v, want %v", err, context.DeadlineExceeded)
	}
	after := taggedMessage(2, 0, 5000)
	wrote := make(chan error, 1)
	go func() { wrote <- server.Write(ctx, MessageBinary, after) }()

	for _, seq := range sent {
		_, msg, err := client.Read(ctx)
		if err != nil {
			t.Fatalf("Read of message %d: %v", seq, err)
		}
		if s, n, ok := checkTagged(msg); !ok || s != 1 || n != seq {
			t.Fatalf("got message %d/%d (whole: %v), want 1/%d", s, n, ok, seq)
		}
	}
	if _, msg, err := client.Read(ctx); err != nil || !bytes.Equal(msg, after) {
		t.Fatalf("the Write after the partial frame: %d bytes, %v", len(msg), err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// CloseNow ends a frame being finished for a peer that does not read, and
// waits for the goroutine finishing it (the leak check in TestMain fails
// otherwise).
func TestTryWritePreparedPartialCloseNow(t *testing.T) {
	server, _ := rawPair(t, 16<<10)
	pm, _ := NewPreparedMessage(MessageBinary, make([]byte, 1<<20))
	ok, err := server.TryWritePrepared(pm)
	if !ok || err != nil || !server.frameMu.held.Load() {
		t.Fatalf("TryWritePrepared of 1 MiB = %v, %v, finishing %v; want a frame sent in part", ok, err, server.frameMu.held.Load())
	}
	done := make(chan struct{})
	go func() {
		server.CloseNow()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("CloseNow did not return while a frame was being finished")
	}
	if ok, err := server.TryWritePrepared(pm); ok || err == nil {
		t.Fatalf("TryWritePrepared after CloseNow = %v, %v", ok, err)
	}
}

// Write and TryWritePrepared from several goroutines at once keep every
// frame whole: each message arrives intact, each sender's in order, and
// those TryWritePrepared reported sent all arrive.
func TestTryWritePreparedConcurrent(t *testing.T) {
	ctx := context.Background()
	server, client := rawPair(t, 32<<10)
	const senders, perSender = 4, 200
	var mu sync.Mutex
	want := 0
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for seq := range perSender {
				msg := taggedMessage(s, seq, 1000+seq*97)
				if s%2 == 0 {
					if err := server.Write(ctx, MessageBinary, msg); err != nil {
						t.Error(err)
						return
					}
				} else {
					pm, _ := NewPreparedMessage(MessageBinary, msg)
					ok, err := server.TryWritePrepared(pm)
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						continue
					}
				}
				mu.Lock()
				want++
				mu.Unlock()
			}
		})
	}
	var got int
	readDone := make(chan error, 1)
	go func() {
		last := make(map[int]int)
		for {
			_, msg, err := client.Read(ctx)
			if err != nil {
				readDone <- err
				return
			}
			s, seq, ok := checkTagged(msg)
			if !ok {
				readDone <- &ProtocolError{Reason: "a message arrived torn"}
				return
			}
			if s == senders {
				readDone <- nil // the end
				return
			}
			if prev, seen := last[s]; seen && seq <= prev {
				readDone <- &ProtocolError{Reason: "a sender's messages arrived out of order"}
				return
			}
			last[s] = seq
			got++
		}
	}()
	wg.Wait()
	// Everything written is on its way; a last message marks the end.
	if err := server.Write(ctx, MessageBinary, taggedMessage(senders, 0, 8)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the end marker did not arrive")
	}
	if got != want {
		t.Fatalf("received %d messages, want %d", got, want)
	}
}

// Writing a prepared message that goes out at once allocates nothing.
func TestTryWritePreparedZeroAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("under the race detector sync.Pool drops what it is given")
	}
	server, client := rawPair(t, 0)
	drained := drainUntilError(client)
	pm, _ := NewPreparedMessage(MessageBinary, make([]byte, 64))
	server.TryWritePrepared(pm)
	if n := testing.AllocsPerRun(200, func() {
		if _, err := server.TryWritePrepared(pm); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("TryWritePrepared made %v allocations per call, want 0", n)
	}
	server.CloseNow()
	<-drained
}

// BenchmarkTryWritePrepared: a 512-byte prepared message to a peer that
// reads everything, through TryWritePrepared and, for comparison, through
// WritePrepared. Steady state: 0 allocs/op.
func BenchmarkTryWritePrepared(b *testing.B) {
	pm, _ := NewPreparedMessage(MessageBinary, make([]byte, 512))
	for _, try := range []bool{true, false} {
		name := "WritePrepared"
		if try {
			name = "TryWritePrepared"
		}
		b.Run(name, func(b *testing.B) {
			c := newBenchConn(b, false, drain)
			ctx := context.Background()
			b.SetBytes(512)
			b.ReportAllocs()
			for b.Loop() {
				if !try {
					if err := c.WritePrepared(ctx, pm); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if sent, err := c.TryWritePrepared(pm); err != nil {
					b.Fatal(err)
				} else if !sent {
					// The peer is behind: wait for it as a caller would.
					if err := c.WritePrepared(ctx, pm); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// A Conn that Serve's loop holds idle has dropped its read buffer; a
// broadcast reaches it through TryWritePrepared all the same, from another
// goroutine, while the loop may take the buffer back.
func TestTryWritePreparedWhileServed(t *testing.T) {
	if !loopsAvailable() {
		t.Skip("no epoll sets here: Serve reads in a goroutine")
	}
	server, client := rawPair(t, 0)
	got := make(chan string, 16)
	if err := server.Serve(func(_ MessageType, p []byte) { got <- string(p) }, func(error) {}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pm, _ := NewPreparedMessage(MessageText, []byte("to a served connection"))
	for i := range 50 {
		// The client's message makes the loop take the buffer and drop
		// it again while the server writes.
		if err := client.Write(ctx, MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if sent, err := server.TryWritePrepared(pm); !sent || err != nil {
			t.Fatalf("TryWritePrepared %d = %v, %v; want true, nil", i, sent, err)
		}
		if _, p, err := client.Read(ctx); err != nil || string(p) != "to a served connection" {
			t.Fatalf("Read %d = %q, %v", i, p, err)
		}
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("Serve did not deliver the client's message")
		}
	}
}
