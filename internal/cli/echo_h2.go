package cli

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// enableExtendedConnect makes sure net/http's HTTP/2 server in this
// process accepts WebSockets (RFC 8441 extended CONNECT). Go 1.27 reads
// GODEBUG=http2xconnect=1 once, as the process starts, and has no switch
// per server; importing websocket/http2xconnect would turn it on for every
// command of the binary, the clients' and their test binaries' too. So
// echo and serve with TLS, when GODEBUG does not say, replace themselves
// (same process, same PID) with themselves run with the setting added.
// It returns only when the setting is in force, or with why it cannot be.
func enableExtendedConnect() error {
	debug := os.Getenv("GODEBUG")
	if strings.Contains(debug, "http2xconnect=1") {
		return nil
	}
	if strings.Contains(debug, "http2xconnect=") {
		return errors.New("GODEBUG sets http2xconnect otherwise")
	}
	if testing.Testing() {
		return errors.New("not in a test binary")
	}
	if debug != "" {
		debug += ","
	}
	return execWithEnv("GODEBUG", debug+"http2xconnect=1")
}
