// Package tcpstate reads the states of this machine's TCP sockets from
// Linux's /proc/net/tcp, for tests that check what the kernel holds after
// a server closed its connections.
package tcpstate

import (
	"encoding/hex"
	"os"
	"strings"
)

// FinWait1 is the kernel's code of the FIN-WAIT-1 state: the socket was
// closed with data or its FIN not yet acknowledged by the peer.
const FinWait1 = "04"

// Count returns how many IPv4 sockets on local port are in state (a code
// of /proc/net/tcp such as FinWait1). It fails where there is no
// /proc/net/tcp.
func Count(port int, state string) (int, error) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		_, p, ok := strings.Cut(f[1], ":") // local address: ADDR:PORT in hex
		b, err := hex.DecodeString(p)
		if ok && err == nil && len(b) == 2 && int(b[0])<<8|int(b[1]) == port && f[3] == state {
			n++
		}
	}
	return n, nil
}
