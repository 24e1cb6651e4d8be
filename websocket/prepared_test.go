package websocket

import (
	"bytes"
	"context"
	"testing"
)

// A prepared message reaches every peer as the message it holds, from
// servers and clients, and a server encodes it once for all connections.
func TestPreparedMessage(t *testing.T) {
	ctx := context.Background()
	payload := bytes.Repeat([]byte("prepared "), 1000)
	pm, err := NewPreparedMessage(MessageText, payload)
	if err != nil {
		t.Fatal(err)
	}
	const conns = 4
	var firstFrame []byte
	for i := range conns {
		client, server := newPair(t, nil, nil)
		for _, dir := range []struct {
			from, to *Conn
		}{{server, client}, {client, server}} {
			if err := dir.from.WritePrepared(ctx, pm); err != nil {
				t.Fatal(err)
			}
			typ, got, err := dir.to.Read(ctx)
			if err != nil || typ != MessageText || !bytes.Equal(got, payload) {
				t.Fatalf("conn %d: Read = %v, %d bytes, %v", i, typ, len(got), err)
			}
		}
		f := pm.serverFrame()
		if firstFrame == nil {
			firstFrame = f
		} else if &f[0] != &firstFrame[0] {
			t.Fatal("the server frame was encoded again for another connection")
		}
	}
	if _, err := NewPreparedMessage(MessageType(9), nil); err == nil {
		t.Fatal("NewPreparedMessage accepted an invalid type")
	}
}

// Writing a prepared message allocates nothing once it is encoded.
func TestPreparedMessageZeroAllocs(t *testing.T) {
	client, server := newPair(t, nil, nil)
	drain := drainUntilError(client)
	pm, _ := NewPreparedMessage(MessageBinary, make([]byte, 512))
	ctx := context.Background()
	server.WritePrepared(ctx, pm)
	if n := testing.AllocsPerRun(200, func() {
		if err := server.WritePrepared(ctx, pm); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("WritePrepared made %v allocations per call, want 0", n)
	}
	server.CloseNow()
	<-drain
}

// With compression and no context takeover, a prepared message is
// compressed once for every connection of the same window and level; with
// context takeover each connection compresses it with its own history.
func TestPreparedMessageCompressedOnce(t *testing.T) {
	ctx := context.Background()
	payload := compressible(4<<10, 3)
	pm, _ := NewPreparedMessage(MessageText, payload)
	opts := CompressionOptions{Mode: CompressionNoContextTakeover}
	var first []byte
	for i := range 3 {
		client, server := newPair(t, &AcceptOptions{Compression: opts}, &DialOptions{Compression: opts})
		if err := server.WritePrepared(ctx, pm); err != nil {
			t.Fatal(err)
		}
		if _, got, err := client.Read(ctx); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("conn %d: Read %d bytes, %v", i, len(got), err)
		}
		if client.msgSize >= int64(len(payload))/2 {
			t.Fatalf("conn %d: %d bytes on the wire: not compressed", i, client.msgSize)
		}
		f := pm.compressedServerFrame(server.comp)
		if first == nil {
			first = f
		} else if &f[0] != &first[0] {
			t.Fatal("the prepared message was compressed again for another connection")
		}
	}
	if len(pm.compressed) != 1 {
		t.Fatalf("%d compressed forms cached, want 1", len(pm.compressed))
	}

	takeover := CompressionOptions{Mode: CompressionContextTakeover}
	client, server := newPair(t, &AcceptOptions{Compression: takeover}, &DialOptions{Compression: takeover})
	for range 2 {
		if err := server.WritePrepared(ctx, pm); err != nil {
			t.Fatal(err)
		}
		if _, got, err := client.Read(ctx); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("context takeover: Read %d bytes, %v", len(got), err)
		}
	}
	// The second copy refers back to the first: far smaller than alone.
	if client.msgSize > int64(len(first))/4 {
		t.Fatalf("context takeover: second message took %d bytes, no better than %d alone", client.msgSize, len(first))
	}
	if len(pm.compressed) != 1 {
		t.Fatal("a context-takeover connection used the shared compressed form")
	}
}
