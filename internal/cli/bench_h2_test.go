package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpCounter relays TCP connections to a server and counts them: what a
// client sends reaches the server unchanged, so what the server sees of
// the connections is what the client made, one TCP connection each.
type tcpCounter struct {
	ln       net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startTCPCounter(t *testing.T, target string) *tcpCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCounter{ln: ln}
	c.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			c.wg.Go(func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() })
			c.wg.Go(func() { io.Copy(in, out); in.(*net.TCPConn).CloseWrite() })
		}
	})
	t.Cleanup(c.stop)
	return c
}

// stop closes the listener and every relayed connection and waits for
// the relays.
func (c *tcpCounter) stop() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// TestBenchHTTP2: duplex bench --http2 -c 12 --http2-streams 5 runs its
// 12 WebSockets as streams of 3 TCP connections to duplex echo (counted
// between them; over HTTP/1.1 it would be 12), each echoing all its
// messages, and its report says so.
func TestBenchHTTP2(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the duplex binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildDuplex(t, ctx)
	certFile, keyFile := writeSelfSigned(t)
	echo := startDuplex(t, ctx, bin, `^duplex echo listening on wss://(127\.0\.0\.1:\d+)$`,
		"echo", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	counter := startTCPCounter(t, echo.addr)

	const conns, perTCP, messages = 12, 5, 20
	code, stdout, stderr := runDuplexInput(t, ctx, bin, "", "bench", "--http2", "--ca", certFile,
		"-c", "12", "--http2-streams", "5", "--messages", "20", "--connect-rate", "0", "--json", "--progress", "0",
		"wss://"+counter.ln.Addr().String())
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	if r.Connections.Opened != conns || r.Connections.Failed != 0 {
		t.Errorf("connections %+v", r.Connections)
	}
	if r.Messages.Received != conns*messages || len(r.Errors) != 0 {
		t.Errorf("messages %+v, errors %v", r.Messages, r.Errors)
	}
	want := benchHTTP2Report{Streams: conns, TCPConnections: 3, StreamsPerConn: perTCP}
	if r.HTTP2 == nil || *r.HTTP2 != want {
		t.Errorf("http2 report %+v, want %+v", r.HTTP2, want)
	}
	if n := counter.accepted.Load(); n != 3 {
		t.Errorf("%d TCP connections reached the server, want 3", n)
	}
	// The server saw each WebSocket end with 1000 after its messages.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(echo.stderr.String(), "messages=20 ") < conns && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.Count(echo.stderr.String(), "messages=20 bytes=1280 code=1000"); got != conns {
		t.Errorf("the server logged %d WebSockets of 20 messages closed with 1000, want %d:\n%s", got, conns, echo.stderr)
	}
}

// TestBenchHTTP2UsageErrors: --http2-streams needs --http2 and a positive
// number.
func TestBenchHTTP2UsageErrors(t *testing.T) {
	wantUsageError(t, "--http2-streams needs --http2", "bench", "--http2-streams", "5", "wss://127.0.0.1:1")
	wantUsageError(t, "--http2-streams must be 1 or more, not 0", "bench", "--http2", "--http2-streams", "0", "wss://127.0.0.1:1")
}
