package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// rawUpgrade opens a TCP connection to the gateway at url and makes the
// WebSocket handshake by hand, so that the test can write any frames.
func rawUpgrade(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", addr, Subprotocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br
}

// readUntilClose reads the server's frames until its close frame and
// returns its code and reason; 0 and the error when the connection ends
// without one.
func readUntilClose(br io.Reader) (websocket.StatusCode, string) {
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return 0, err.Error()
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0, err.Error()
		}
		if hdr[0]&0x0f == 0x8 {
			if n < 2 {
				return websocket.StatusNoStatusRcvd, ""
			}
			return websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
	}
}

// flood writes frame over conn count times, as fast as the server reads,
// and returns once it has or the server has closed.
func flood(conn net.Conn, frame []byte, count int) <-chan struct{} {
	done := make(chan struct{})
	chunk := bytes.Repeat(frame, 256)
	go func() {
		defer close(done)
		for sent := 0; sent < count; sent += 256 {
			if _, err := conn.Write(chunk); err != nil {
				return // closed by the server
			}
		}
	}()
	return done
}

// TestPingFloodClosed: a client pinging as fast as the server answers
// took a core and the command rate never applied, as pings are no
// commands (issue 12, defect 7). The default frame rate (1,000 a second
// with the default command rate, bursts of 2,000) closes it with 1008,
// counted as the read_rate limit and disconnect reason. The flood sends
// ten seconds' worth.
func TestPingFloodClosed(t *testing.T) {
	ts := newServer(t, nil)
	conn, br := rawUpgrade(t, ts.url)
	ping := []byte{0x89, 0x80 | 4, 0, 0, 0, 0, 'p', 'i', 'n', 'g'} // masked with a zero key
	done := flood(conn, ping, 10*1000)
	code, reason := readUntilClose(br)
	conn.Close()
	<-done
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "frames per second") {
		t.Fatalf("ping flood closed with %d %q, want 1008 for the frame rate", code, reason)
	}
	wantMetric(t, ts.http.URL, limitHits, `limit="read_rate"`, 1)
	wantMetric(t, ts.http.URL, disconnects, `reason="read_rate"`, 1)
}

// TestFragmentFloodReason: endless empty continuation frames hit the
// websocket package's cap on fragments (1,024) before the frame rate's
// burst; the close says so in the metrics (it was counted as no_pong, the
// only 1008 the gateway knew).
func TestFragmentFloodReason(t *testing.T) {
	ts := newServer(t, nil)
	conn, br := rawUpgrade(t, ts.url)
	conn.Write([]byte{0x01, 0x80, 0, 0, 0, 0}) // a text frame, not final, empty
	done := flood(conn, []byte{0x00, 0x80, 0, 0, 0, 0}, 1500)
	code, reason := readUntilClose(br)
	conn.Close()
	<-done
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "fragments") {
		t.Fatalf("fragment flood closed with %d %q, want 1008 for the fragments", code, reason)
	}
	wantMetric(t, ts.http.URL, limitHits, `limit="fragments"`, 1)
	wantMetric(t, ts.http.URL, disconnects, `reason="fragments"`, 1)
	wantMetric(t, ts.http.URL, disconnects, `reason="no_pong"`, 0)
}

// TestByteRateClosed: messages that carry no command (blank lines) are
// not held back by the command rate; the byte rate closes a client that
// sends more of them than a client within the command rate and the
// message size could (here 10 messages of 1 KiB a second).
func TestByteRateClosed(t *testing.T) {
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 10, 10
		cfg.Limits.MaxMessageSize = 1 << 10
	})
	conn, br := rawUpgrade(t, ts.url)
	blank := bytes.Repeat([]byte{'\n'}, 1000)
	frame := append([]byte{0x81, 0x80 | 126, byte(len(blank) >> 8), byte(len(blank)), 0, 0, 0, 0}, blank...)
	done := flood(conn, frame, 1000) // 1 MB, 50 times the burst of 20 KiB
	code, reason := readUntilClose(br)
	conn.Close()
	<-done
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "bytes per second") {
		t.Fatalf("blank message flood closed with %d %q, want 1008 for the byte rate", code, reason)
	}
	wantMetric(t, ts.http.URL, limitHits, `limit="read_rate"`, 1)
}

// TestReadRateDefaults: the frame and byte rates follow from the command
// rate and the message size, and none applies when those are off.
func TestReadRateDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Limits
		want websocket.RateLimit
	}{
		{"defaults", Limits{}, websocket.RateLimit{Frames: 1000, FrameBurst: 2000, Bytes: 100 * 64 << 10, ByteBurst: 200 * 64 << 10}},
		{"fast commands", Limits{MessageRate: 5000, MessageBurst: 20000, MaxMessageSize: 1 << 10},
			websocket.RateLimit{Frames: 10000, FrameBurst: 40000, Bytes: 5000 << 10, ByteBurst: 20000 << 10}},
		{"set", Limits{FrameRate: 7, FrameBurst: 9, ByteRate: 100, ByteBurst: 1 << 20}, websocket.RateLimit{Frames: 7, FrameBurst: 9, Bytes: 100, ByteBurst: 1 << 20}},
		{"off", Limits{FrameRate: -1, ByteRate: -1}, websocket.RateLimit{}},
		{"no command rate", Limits{MessageRate: -1}, websocket.RateLimit{}},
		{"no message size", Limits{MaxMessageSize: -1}, websocket.RateLimit{Frames: 1000, FrameBurst: 2000}},
	} {
		cfg := Config{Limits: tc.in}
		got, err := cfg.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if r := readRate(&got.Limits); r != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, r, tc.want)
		}
	}
}
