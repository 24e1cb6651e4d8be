package websocket

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/duplexws/duplex/internal/frame"
)

// An onMessage that blocks does not stall the connections that share its
// loop: one peer never reads, so the echo of its large messages blocks in
// Write for good, while every other served connection, in every loop,
// keeps getting its echoes within a bound. The blocked callback holds one
// goroutine of its own, which ends with it, and the connection, once its
// callback returns, is served again or ended.
func TestServeBlockedCallback(t *testing.T) {
	loops := getServeLoops()
	// Small socket buffers: a few KiB of echo fill them.
	peer, nc := tcpPair(t)
	peer.(*net.TCPConn).SetReadBuffer(4 << 10)
	nc.(*net.TCPConn).SetWriteBuffer(4 << 10)
	stuck := newConn(nc, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
	stuck.SetReadLimit(1 << 20)
	var writing, written atomic.Int32
	stuckEnded := make(chan error, 1)
	if err := stuck.Serve(func(typ MessageType, p []byte) {
		writing.Add(1)
		defer writing.Add(-1)
		if stuck.Write(context.Background(), typ, p) == nil {
			written.Add(1)
		}
	}, func(err error) { stuckEnded <- err }); err != nil {
		t.Fatal(err)
	}
	// Served after stuck, round robin: every loop holds several, and one
	// of them holds stuck too.
	clients, servers := serverConns(t, 4*len(loops))
	for _, c := range servers {
		serveEcho(t, c)
	}
	// Messages within maxServeBuffer, so that the loop delivers them.
	big := frameBytes(true, true, frame.OpBinary, make([]byte, 200<<10))
	peerDone := make(chan struct{})
	go func() {
		defer close(peerDone)
		for range 8 {
			if _, err := peer.Write(big); err != nil {
				return // stuck was closed
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for writing.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stuck connection's echo never began")
		}
		time.Sleep(time.Millisecond)
	}
	msg := frameBytes(true, true, frame.OpText, []byte("flowing"))
	want := frameBytes(false, true, frame.OpText, []byte("flowing"))
	const rounds = 5
	start := time.Now()
	for round := range rounds {
		for i, c := range clients {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			got := make([]byte, len(want))
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("round %d, conn %d: %v", round, i, err)
			}
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d, conn %d: echo %x, %v, while another connection's onMessage is blocked", round, i, got, err)
			}
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d echoes took %v while an onMessage was blocked", rounds*len(clients), d)
	}
	if writing.Load() != 1 || written.Load() != 0 {
		t.Fatalf("the stuck echo ended (%d writing, %d written): the test did not block a callback", writing.Load(), written.Load())
	}
	if n := replacedDrainers(loops); n != 1 {
		t.Errorf("%d drainers taken over, want 1 (for the one blocked callback)", n)
	}
	stuck.CloseNow() // the blocked Write fails, the callback returns
	select {
	case <-stuckEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("onEnd not called for the stuck connection once closed")
	}
	peer.Close()
	<-peerDone
	for deadline := time.Now().Add(5 * time.Second); replacedDrainers(loops) != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the drainer of the blocked callback did not end once it returned")
		}
		time.Sleep(time.Millisecond)
	}
}

// replacedDrainers counts the drainers whose onMessage the watchdog took
// their sets over from and that have not ended yet.
func replacedDrainers(loops []*serveLoop) int {
	n := 0
	for _, l := range loops {
		l.mu.Lock()
		n += l.replaced
		l.mu.Unlock()
	}
	return n
}

// A peer that announces a large message and sends a little of it costs
// the little, not the announced size: Serve grows a connection's buffer as
// bytes arrive. 64 connections each announce a 200 KiB frame and send
// 1 KiB of it; the heap grows by far less than the 64 buffers of 256 KiB
// that sizing by the header took.
func TestServeGrowsAsBytesArrive(t *testing.T) {
	const conns, announced, sent = 64, 200 << 10, 1 << 10
	heap0, _ := heapAndStacks()
	servers := make([]net.Conn, conns)
	for i := range conns {
		peer, nc := tcpPair(t)
		c := newConn(nc, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
		c.SetReadLimit(1 << 20) // the frame is within the read limit and Serve's buffer limit
		t.Cleanup(func() {
			c.CloseNow()
			peer.Close()
		})
		if err := c.Serve(func(MessageType, []byte) { t.Error("a message that never arrived whole was delivered") }, func(error) {}); err != nil {
			t.Fatal(err)
		}
		h := frame.Header{Fin: true, Opcode: frame.OpBinary, Length: announced, Masked: true, MaskKey: testMaskKey}
		if _, err := peer.Write(append(frame.AppendHeader(nil, h), make([]byte, sent)...)); err != nil {
			t.Fatal(err)
		}
		servers[i] = nc
	}
	// Once the kernel holds none of it, the loops have read it all.
	deadline := time.Now().Add(10 * time.Second)
	for _, nc := range servers {
		for unread(t, nc) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the loops did not read what the peers sent")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // the loops' dispatch after their last read
	heap1, _ := heapAndStacks()
	if grown := int64(heap1) - int64(heap0); grown > conns*32<<10 {
		t.Fatalf("heap grew by %d KiB for %d connections holding %d bytes each of a %d-byte frame", grown>>10, conns, sent, announced)
	}
}

// unread returns how many bytes the kernel holds for nc, unread.
func unread(t *testing.T, nc net.Conn) int {
	t.Helper()
	raw, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}
