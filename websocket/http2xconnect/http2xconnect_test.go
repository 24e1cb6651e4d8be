package http2xconnect_test

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket/http2xconnect"
)

// TestServerAdvertisesExtendedConnect: with the package imported, and no
// GODEBUG from the environment, net/http's HTTP/2 server sends
// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in its first SETTINGS frame (RFC
// 8441 section 3): the package ran before net/http read GODEBUG.
func TestServerAdvertisesExtendedConnect(t *testing.T) {
	if !http2xconnect.Enabled() {
		t.Fatal("GODEBUG does not hold http2xconnect=1")
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, not h2", p)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The client preface and an empty SETTINGS frame (RFC 9113 section 3.4).
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := io.WriteString(conn, preface); err != nil {
		t.Fatal(err)
	}
	var head [9]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		t.Fatal(err)
	}
	length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	if head[3] != 0x4 || length%6 != 0 {
		t.Fatalf("the server's first frame is of type %#x and length %d, not SETTINGS", head[3], length)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(conn, payload); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < length; i += 6 {
		id, val := binary.BigEndian.Uint16(payload[i:]), binary.BigEndian.Uint32(payload[i+2:])
		if id == 0x8 {
			if val != 1 {
				t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d", val)
			}
			return
		}
	}
	t.Fatalf("the server's SETTINGS (% x) lack SETTINGS_ENABLE_CONNECT_PROTOCOL", payload)
}
