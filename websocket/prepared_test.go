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
