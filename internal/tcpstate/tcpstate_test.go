package tcpstate

import (
	"net"
	"testing"
)

// A listening socket is in state 0A (LISTEN): Count finds it on its port
// and nowhere else.
func TestCountListen(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	n, err := Count(port, "0A")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	if n != 1 {
		t.Fatalf("%d listening sockets on port %d, want 1", n, port)
	}
	if n, _ := Count(port, FinWait1); n != 0 {
		t.Fatalf("%d sockets in FIN-WAIT-1 on a port that only listens", n)
	}
}
