package websocket

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// writeCalls returns how many write system calls this process has made
// (syscw of /proc/self/io: write and writev, of every thread).
func writeCalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no I/O accounting: %v", err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("syscw: ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscw in /proc/self/io")
	return 0
}

// TestPingBurstPongsInFewWrites: a client that sends 2,000 pings in one
// write gets 2,000 pongs, in order, each with its ping's payload, and the
// server writes them a buffer at a time, not one system call per pong: a
// ping flood inside the frame rate costs the server its parsing, not a
// write per ping. Read, and Serve's loop.
func TestPingBurstPongsInFewWrites(t *testing.T) {
	const pings = 2000
	for _, mode := range []string{"Read", "Serve"} {
		t.Run(mode, func(t *testing.T) {
			peer, nc := tcpPair(t)
			defer peer.Close()
			server := newConn(nc, nil, false, "", newConnConfig(0, 0, 0, 0, 0))
			defer server.CloseNow()
			if mode == "Serve" {
				if err := server.Serve(func(MessageType, []byte) {}, func(error) {}); err != nil {
					t.Fatal(err)
				}
			} else {
				go server.Read(context.Background())
			}
			var wire []byte
			for i := range pings {
				wire = appendTestFrame(wire, true, frame.OpPing, true, fmt.Appendf(nil, "ping %d", i))
			}
			before := writeCalls(t)
			if _, err := peer.Write(wire); err != nil {
				t.Fatal(err)
			}
			peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(peer)
			for i := range pings {
				h, p, err := readTestFrame(br)
				if err != nil || h.Opcode != frame.OpPong || h.Masked || string(p) != fmt.Sprintf("ping %d", i) {
					t.Fatalf("frame %d: %+v %q, %v; want the pong to ping %d", i, h, p, err, i)
				}
			}
			writes := writeCalls(t) - before
			// About a write per 4 KiB of pongs (a handful here), and a few
			// of the runtime's own (its poller's wake-ups); one per pong
			// would be 2,000.
			t.Logf("%d pongs in %d write calls of this process", pings, writes)
			if writes > pings/10 {
				t.Errorf("%d write calls for %d pongs, want at most %d", writes, pings, pings/10)
			}
		})
	}
}
