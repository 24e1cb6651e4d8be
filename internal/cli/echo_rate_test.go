package cli

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// TestEchoPingFlood: a client that pings as fast as the server answers
// took a core of duplex echo for as long as it liked (issue 12, defect 7).
// With the default flags it is closed with 1008 once it is past the
// control-frame rate. It sends 50,000 pings, as fast as it can, while it
// reads the pongs; without a default control rate every ping gets its pong
// and no close comes.
func TestEchoPingFlood(t *testing.T) {
	url := startEchoCommand(t)
	ctx := testContext(t)
	conn, br := rawDial(t, ctx, url)
	ping := []byte{0x89, 0x80 | 4, 0, 0, 0, 0, 'p', 'i', 'n', 'g'} // masked with a zero key
	chunk := bytes.Repeat(ping, 1000)
	writeDone := make(chan error, 1)
	go func() {
		for range 50 {
			if _, err := conn.Write(chunk); err != nil {
				writeDone <- err // the server closed first
				return
			}
		}
		writeDone <- nil
	}()
	code, reason := readCloseSkippingPongs(t, br)
	if code != websocket.StatusPolicyViolation || !strings.Contains(reason, "control frames per second") {
		t.Errorf("ping flood closed with %d %q, want 1008 for the control-frame rate", code, reason)
	}
	conn.Close()
	<-writeDone
}

// readCloseSkippingPongs reads frames until a close frame, which it
// returns, or until the connection ends (0, and the error as reason).
func readCloseSkippingPongs(t *testing.T, br io.Reader) (websocket.StatusCode, string) {
	t.Helper()
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return 0, err.Error()
		}
		n := int(hdr[1] & 0x7f)
		if n >= 126 {
			t.Fatalf("control frame of %d bytes from the server", n)
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

// TestEchoRateFlags checks how the rate flags map onto
// websocket.RateLimit.
func TestEchoRateFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    echoFlags
		want websocket.RateLimit
	}{
		{"default", echoFlags{frameRate: DefaultEchoFrameRate, controlRate: DefaultEchoControlRate},
			websocket.RateLimit{Frames: DefaultEchoFrameRate, FrameBurst: DefaultEchoFrameRate, Controls: DefaultEchoControlRate, ControlBurst: DefaultEchoControlRate}},
		{"control burst", echoFlags{controlRate: 5, controlBurst: 9}, websocket.RateLimit{Controls: 5, ControlBurst: 9}},
		{"off", echoFlags{}, websocket.RateLimit{}},
		{"bursts", echoFlags{frameRate: 50, frameBurst: 7, byteRate: 1000, byteBurst: 4 << 20},
			websocket.RateLimit{Frames: 50, FrameBurst: 7, Bytes: 1000, ByteBurst: 4 << 20}},
		// The byte burst holds a whole frame of the read limit's size by
		// default (a frame is charged whole when its header arrives).
		{"byte rate", echoFlags{byteRate: 1000}, websocket.RateLimit{Bytes: 1000, ByteBurst: 1 << 20}},
		{"byte rate big", echoFlags{byteRate: 8 << 20}, websocket.RateLimit{Bytes: 8 << 20, ByteBurst: 16 << 20}},
	} {
		got, err := tc.f.readRate(func(string) bool { return false })
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestEchoRateUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--frame-rate", "-1"}, "--frame-rate must be 0 or more, not -1"},
		{[]string{"--byte-burst", "-5", "--byte-rate", "10"}, "--byte-burst must be 0 or more, not -5"},
		{[]string{"--frame-rate", "0", "--frame-burst", "10"}, "--frame-burst needs a --frame-rate"},
		{[]string{"--byte-burst", "10"}, "--byte-burst needs a --byte-rate"},
		{[]string{"--control-rate", "-2"}, "--control-rate must be 0 or more, not -2"},
		{[]string{"--control-rate", "0", "--control-burst", "3"}, "--control-burst needs a --control-rate"},
	} {
		args := append([]string{"echo", "--listen", "127.0.0.1:0"}, tc.args...)
		code, stdout, stderr := execute(t, args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout, stderr, exitUsage, tc.want)
		}
	}
}
