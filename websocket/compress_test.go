package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// compressible returns n bytes of JSON-like text that compresses well.
func compressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, `{"id":%d,"price":%d.%02d,"symbol":"DPLX"},`, r.IntN(1000), r.IntN(500), r.IntN(100))
	}
	return b.Bytes()[:n]
}

// Messages of every size cross a compressed connection intact in both
// directions, through Write/Read, Writer/Reader and WritePrepared, with and
// without context takeover and with small windows.
func TestCompressionRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []CompressionMode{CompressionNoContextTakeover, CompressionContextTakeover} {
		for _, bits := range []int{15, 10, 8} {
			t.Run(fmt.Sprintf("mode%d/bits%d", mode, bits), func(t *testing.T) {
				opts := CompressionOptions{Mode: mode, ServerMaxWindowBits: bits, ClientMaxWindowBits: bits}
				client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
				if client.comp == nil || server.comp == nil {
					t.Fatal("compression was not agreed")
				}
				for _, c := range []*Conn{client, server} {
					c.SetReadLimit(1 << 20)
				}
				for i, size := range []int{0, 16, 127, 128, 1000, 64 << 10, 200 << 10} {
					msg := compressible(size, uint64(i))
					for _, dir := range []struct {
						name     string
						from, to *Conn
					}{{"client->server", client, server}, {"server->client", server, client}} {
						if err := dir.from.Write(ctx, MessageText, msg); err != nil {
							t.Fatal(err)
						}
						if _, got, err := dir.to.Read(ctx); err != nil || !bytes.Equal(got, msg) {
							t.Fatalf("%s Write/Read %d bytes: got %d, %v", dir.name, size, len(got), err)
						}
						w, err := dir.from.Writer(ctx, MessageBinary)
						if err != nil {
							t.Fatal(err)
						}
						for p := msg; len(p) > 0; p = p[min(len(p), 3000):] {
							if _, err := w.Write(p[:min(len(p), 3000)]); err != nil {
								t.Fatal(err)
							}
						}
						if err := w.Close(); err != nil {
							t.Fatal(err)
						}
						_, r, err := dir.to.Reader(ctx)
						if err != nil {
							t.Fatal(err)
						}
						if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, msg) {
							t.Fatalf("%s Writer/Reader %d bytes: got %d, %v", dir.name, size, len(got), err)
						}
						pm, _ := NewPreparedMessage(MessageText, msg)
						if err := dir.from.WritePrepared(ctx, pm); err != nil {
							t.Fatal(err)
						}
						if _, got, err := dir.to.Read(ctx); err != nil || !bytes.Equal(got, msg) {
							t.Fatalf("%s WritePrepared %d bytes: got %d, %v", dir.name, size, len(got), err)
						}
					}
				}
			})
		}
	}
}

// countingConn counts the bytes a Conn writes, to see what compression did.
func TestCompressionShrinksAndOptsOut(t *testing.T) {
	ctx := context.Background()
	opts := CompressionOptions{Mode: CompressionContextTakeover}
	client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
	msg := compressible(8<<10, 1)
	for _, tc := range []struct {
		typ        MessageType
		compressed bool
	}{{MessageText, true}, {Uncompressed(MessageText), false}} {
		if err := server.Write(ctx, tc.typ, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := client.Read(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Read: %d bytes, %v", len(got), err)
		}
		if got := client.msgSize < int64(len(msg))/2; got != tc.compressed {
			t.Fatalf("%v: %d bytes on the wire for %d, compressed = %v, want %v", tc.typ, client.msgSize, len(msg), got, tc.compressed)
		}
	}
	// Below the threshold nothing is compressed.
	if err := server.Write(ctx, MessageText, msg[:DefaultCompressionThreshold-1]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Read(ctx); err != nil || client.msgSize != DefaultCompressionThreshold-1 {
		t.Fatalf("small message: %d bytes on the wire, %v", client.msgSize, err)
	}
}

// The read limit counts inflated bytes: a small compressed message that
// inflates past it fails with 1009 on both sides.
func TestCompressionBomb(t *testing.T) {
	ctx := context.Background()
	opts := CompressionOptions{Mode: CompressionNoContextTakeover}
	client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
	client.SetReadLimit(4 << 20) // the sender's own limit is not the point
	bomb := make([]byte, 4<<20)  // zeros: a few KiB compressed
	server.SetReadLimit(64 << 10)
	done := make(chan error, 1)
	go func() { done <- client.Write(ctx, MessageBinary, bomb) }()
	_, _, err := server.Read(ctx)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != StatusMessageTooBig {
		t.Fatalf("server Read = %v, want ProtocolError 1009", err)
	}
	<-done
	if _, _, err := client.Read(ctx); CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("client Read = %v, want close 1009", err)
	}
}

// A Writer honours the threshold as Write does: a message closed under it
// goes out plain, however many writes made it, and one that reaches it is
// compressed from its first frame, the held bytes included.
func TestWriterThreshold(t *testing.T) {
	ctx := context.Background()
	send := func(t *testing.T, from, to *Conn, msg []byte) int64 {
		t.Helper()
		w, err := from.Writer(ctx, MessageText)
		if err != nil {
			t.Fatal(err)
		}
		for p := msg; len(p) > 0; p = p[min(len(p), 10):] {
			if _, err := w.Write(p[:min(len(p), 10)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, got, err := to.Read(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Read: %q, %v", got, err)
		}
		return to.msgSize
	}
	msg := bytes.Repeat([]byte("a"), 4<<10)
	t.Run("default", func(t *testing.T) {
		opts := CompressionOptions{Mode: CompressionContextTakeover}
		client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
		for _, size := range []int{0, 16, DefaultCompressionThreshold - 1} {
			if wire := send(t, server, client, msg[:size]); wire != int64(size) {
				t.Errorf("%d bytes under the threshold: %d on the wire, want them plain", size, wire)
			}
		}
		for _, size := range []int{DefaultCompressionThreshold, 4 << 10} {
			if wire := send(t, server, client, msg[:size]); wire >= int64(size)/2 {
				t.Errorf("%d bytes: %d on the wire, want them compressed", size, wire)
			}
		}
		// The plain messages left the compressor's history alone: the
		// peer still inflates what follows.
		if wire := send(t, client, server, msg[:1000]); wire >= 500 {
			t.Errorf("client's 1000 bytes: %d on the wire", wire)
		}
	})
	t.Run("compressAll", func(t *testing.T) {
		opts := CompressionOptions{Mode: CompressionContextTakeover, Threshold: -1}
		client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
		if wire := send(t, server, client, msg[:64]); wire >= 32 {
			t.Errorf("64 bytes with Threshold -1: %d on the wire, want them compressed", wire)
		}
	})
}
