package websocket

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// deflatePeer is the client end of a server Conn with permessage-deflate
// agreed, which writes compressed frames by hand over loopback TCP.
type deflatePeer struct {
	conn net.Conn
	fw   *flate.Writer // the client's compressor, kept with context takeover
	out  bytes.Buffer
	keep bool
}

// newDeflatePair returns a server Conn whose peer compresses with context
// takeover when takeover is set, and that peer.
func newDeflatePair(t *testing.T, takeover bool) (*Conn, *deflatePeer) {
	t.Helper()
	peerConn, nc := tcpPair(t)
	c := newConn(nc, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
	p := deflate.Params{ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}
	mode := CompressionContextTakeover
	if !takeover {
		p.ServerNoContextTakeover, p.ClientNoContextTakeover = true, true
		mode = CompressionNoContextTakeover
	}
	c.comp = newCompression(p, true, &CompressionOptions{Mode: mode})
	t.Cleanup(func() {
		c.CloseNow()
		peerConn.Close()
	})
	peer := &deflatePeer{conn: peerConn, keep: takeover}
	peer.fw, _ = flate.NewWriter(&peer.out, 6)
	return c, peer
}

// compress returns msg compressed and flushed; with end, without the
// 00 00 FF FF that ends a message (RFC 7692 section 7.2.1), and, without
// context takeover, the next message starts afresh.
func (p *deflatePeer) compress(msg []byte, end bool) []byte {
	p.out.Reset()
	p.fw.Write(msg)
	p.fw.Flush()
	b := bytes.Clone(p.out.Bytes())
	if end {
		b = b[:len(b)-4]
		if !p.keep {
			p.fw.Reset(&p.out)
		}
	}
	return b
}

// compressedFrame returns a masked frame of a compressed message.
func compressedFrame(fin bool, op frame.Opcode, payload []byte, length int) []byte {
	h := frame.Header{Fin: fin, Opcode: op, Length: int64(length), Masked: true, MaskKey: testMaskKey}
	if op != frame.OpContinuation {
		h.RSV = frame.RSV1
	}
	b := frame.AppendHeader(nil, h)
	start := len(b)
	b = append(b, payload...)
	frame.Mask(testMaskKey, 0, b[start:])
	return b
}

// A compressed text message whose first fragment, or the first part of
// whose single frame, inflates to invalid UTF-8 and whose rest never comes
// is failed with 1007 at once, under Serve as under Read, with and without
// context takeover (after a valid message, whose window the bad one builds
// on).
func TestServeCompressedInvalidUTF8(t *testing.T) {
	bad := []byte("fine so far, then \xff\xfe")
	cases := map[string]func(p *deflatePeer) []byte{
		"first fragment": func(p *deflatePeer) []byte {
			return compressedFrame(false, frame.OpText, p.compress(bad, false), len(p.out.Bytes()))
		},
		"part of a frame": func(p *deflatePeer) []byte {
			part := p.compress(bad, false)
			rest := p.compress(bytes.Repeat([]byte("never sent "), 50), true)
			return compressedFrame(true, frame.OpText, part, len(part)+len(rest))
		},
	}
	for name, badBytes := range cases {
		for _, takeover := range []bool{false, true} {
			for _, serve := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/takeover=%v/serve=%v", name, takeover, serve), func(t *testing.T) {
					c, peer := newDeflatePair(t, takeover)
					good := []byte("a valid message first")
					wire := compressedFrame(true, frame.OpText, peer.compress(good, true), len(peer.out.Bytes())-4)
					wire = append(wire, badBytes(peer)...)
					if _, err := peer.conn.Write(wire); err != nil {
						t.Fatal(err)
					}
					ended := make(chan error, 1)
					if serve {
						if err := c.Serve(func(MessageType, []byte) {}, func(err error) { ended <- err }); err != nil {
							t.Fatal(err)
						}
					} else {
						go func() {
							ctx := context.Background()
							if _, msg, err := c.Read(ctx); err != nil || !bytes.Equal(msg, good) {
								ended <- fmt.Errorf("the valid message: %q, %v", msg, err)
								return
							}
							_, _, err := c.Read(ctx)
							ended <- err
						}()
					}
					// Well within the close timeout (5 s), which would also
					// end the wait.
					peer.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
					br := bufio.NewReader(peer.conn)
					for {
						h, p, err := readTestFrame(br)
						if err != nil {
							t.Fatalf("no close frame: %v", err)
						}
						if h.Opcode != frame.OpClose {
							continue
						}
						if len(p) < 2 || StatusCode(int(p[0])<<8|int(p[1])) != StatusInvalidFramePayloadData {
							t.Fatalf("close frame %x, want code 1007", p)
						}
						break
					}
					peer.conn.Close()
					if code, peerClosed, err := awaitEnd(t, ended, 5*time.Second); peerClosed || code != StatusInvalidFramePayloadData {
						t.Fatalf("reading ended with %v, want 1007", err)
					}
				})
			}
		}
	}
}

// Compressed messages, text and binary, some fragmented at random points
// of their compressed bytes, with context takeover and without, sent in
// chunks cut at random: Serve delivers each whole and in order (those it
// leaves to Read as they arrive in part, and those that arrive whole).
func TestServeCompressedStreams(t *testing.T) {
	for seed := range uint64(6) {
		takeover := seed%2 == 0
		t.Run(fmt.Sprintf("%d/takeover=%v", seed, takeover), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7692))
			c, peer := newDeflatePair(t, takeover)
			c.SetReadLimit(1 << 20)
			type message struct {
				typ MessageType
				p   []byte
			}
			got := make(chan message, 200)
			ended := make(chan error, 1)
			if err := c.Serve(func(typ MessageType, p []byte) {
				got <- message{typ, bytes.Clone(p)}
			}, func(err error) { ended <- err }); err != nil {
				t.Fatal(err)
			}
			var wire []byte
			var want []message
			for i := range 80 {
				size := rng.IntN(400)
				if rng.IntN(5) == 0 {
					size = rng.IntN(60 << 10)
				}
				m := message{MessageText, textPattern(int(seed)*1000+i, size)}
				if rng.IntN(3) == 0 {
					m.typ = MessageBinary
					m.p = pattern(int(seed)*1000+i, size)
					if rng.IntN(2) == 0 {
						copy(m.p, m.p[:size/2]) // partly compressible
					}
				}
				want = append(want, m)
				payload := peer.compress(m.p, true)
				frags := 1 + rng.IntN(4)
				for f := range frags {
					lo, hi := f*len(payload)/frags, (f+1)*len(payload)/frags
					op := frame.OpContinuation
					if f == 0 {
						op = frame.Opcode(m.typ)
					}
					wire = append(wire, compressedFrame(f == frags-1, op, payload[lo:hi], hi-lo)...)
				}
			}
			go func() { // the peer reads what the server sends: its close frame
				br := bufio.NewReader(peer.conn)
				for {
					h, _, err := readTestFrame(br)
					if err != nil || h.Opcode == frame.OpClose {
						peer.conn.Close() // as a client does once the server's close frame is in
						return
					}
				}
			}()
			for len(wire) > 0 {
				n := min(len(wire), 1+rng.IntN(12000))
				if _, err := peer.conn.Write(wire[:n]); err != nil {
					t.Fatal(err)
				}
				wire = wire[n:]
				if rng.IntN(3) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			for i, w := range want {
				select {
				case m := <-got:
					if m.typ != w.typ || !bytes.Equal(m.p, w.p) {
						t.Fatalf("message %d: %v %d bytes delivered, want %v %d bytes (or different bytes)", i, m.typ, len(m.p), w.typ, len(w.p))
					}
				case err := <-ended:
					t.Fatalf("message %d of %d: serving ended: %v", i, len(want), err)
				case <-time.After(10 * time.Second):
					t.Fatalf("message %d of %d not delivered", i, len(want))
				}
			}
			peer.conn.Write(frameBytes(true, true, frame.OpClose, closePayload(StatusNormalClosure, "")))
			if code, peerClosed, err := awaitEnd(t, ended, 10*time.Second); !peerClosed || code != StatusNormalClosure {
				t.Fatalf("onEnd(%v), want the peer's 1000", err)
			}
		})
	}
}

// BenchmarkServeEchoCompressed echoes text messages through a served
// connection with permessage-deflate and context takeover: 1 KiB ones,
// which arrive whole and stay on the loop, and 64 KiB ones of random
// letters, whose compressed frames (about 40 KiB) do not fit a read of
// the pool's buffer.
func BenchmarkServeEchoCompressed(b *testing.B) {
	comp := CompressionOptions{Mode: CompressionContextTakeover, Threshold: 1}
	for _, size := range []int{1024, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			client, server := newPair(b, &AcceptOptions{Compression: comp}, &DialOptions{Compression: comp})
			client.SetReadLimit(1 << 20)
			server.SetReadLimit(1 << 20)
			serveEcho(b, server)
			ctx := context.Background()
			msg := textPattern(size, size)
			buf := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			cpu := startCPU()
			for b.Loop() {
				if err := client.Write(ctx, MessageText, msg); err != nil {
					b.Fatal(err)
				}
				if n, err := readToEOF(ctx, client, buf); err != nil || n != size {
					b.Fatalf("echo of %d bytes: %d, %v", size, n, err)
				}
			}
			cpu.report(b)
		})
	}
}
