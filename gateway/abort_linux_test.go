package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/tcpstate"
)

// TestSlowConsumerAborted: a client closed as a slow consumer left the
// server's socket in FIN-WAIT-1, holding what it could not send, for as
// long as the client kept its window shut (issue 12, defect 13). The
// server aborts the connection instead, and the socket is gone once the
// session has ended.
func TestSlowConsumerAborted(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MaxQueueBytes = 64 << 10
	})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ts.http.URL, "http://"))
	// A client with a small receive buffer, which reads its replies and
	// then nothing.
	dialer := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	conn, err := dialer.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", port, Subprotocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	cmds := `{"id":1,"method":"connect"}` + "\n" + `{"id":2,"method":"subscribe","channel":"slow"}`
	conn.Write(append([]byte{0x81, 0x80 | byte(len(cmds)), 0, 0, 0, 0}, cmds...))
	for replies := 0; replies < 2; {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, hdr[1]&0x7f) // replies under 126 bytes
		if _, err := io.ReadFull(br, line); err != nil {
			t.Fatal(err)
		}
		replies += strings.Count(string(line), `"id":`)
	}

	// Publications until the server gives up on it.
	data := payload(0, 16<<10)
	for i := 0; metricValue(t, ts.http.URL, disconnects, `reason="slow_consumer"`) == 0; i++ {
		if i > 2000 {
			t.Fatal("2000 publications of 16 KB and the client is not a slow consumer")
		}
		if _, err := ts.Publish(context.Background(), "slow", data); err != nil {
			t.Fatal(err)
		}
	}
	// The closing handshake cannot be written and waits out its timeout;
	// then the session ends.
	wantMetric(t, ts.http.URL, "duplex_connections", "", 0)
	var lingering int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		lingering = finWait1(t, port)
		if lingering == 0 || time.Now().After(deadline) {
			break
		}
	}
	if lingering > 0 {
		t.Fatalf("%d sockets of the server in FIN-WAIT-1 after it closed a slow consumer", lingering)
	}
}

// finWait1 counts the sockets on local port in FIN-WAIT-1.
func finWait1(t *testing.T, port string) int {
	p, _ := strconv.Atoi(port)
	n, err := tcpstate.Count(p, tcpstate.FinWait1)
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	return n
}
