// Package http2xconnect turns on extended CONNECT (RFC 8441) in the HTTP/2
// server of net/http, so that websocket.Accept can take WebSockets that
// browsers open over HTTP/2. Import it for its side effect, in the program
// that serves:
//
//	import _ "github.com/duplexws/duplex/websocket/http2xconnect"
//
// Go 1.27 has no per-server switch: its HTTP/2 server advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, and accepts requests carrying the
// :protocol pseudo-header, only when GODEBUG holds http2xconnect=1 as the
// process starts; net/http reads it once, in its package initialisation.
// This package adds it to GODEBUG in its own initialisation, which runs
// before net/http's: packages are initialised in the order of their import
// paths among those whose imports are ready (the Go specification, "Package
// initialization", since Go 1.21), this one imports only os and strings,
// and its path sorts before "net/http/...". Setting GODEBUG=http2xconnect=1
// in the environment does the same without the import.
//
// The setting is the whole process's, and child processes inherit it:
// every HTTP/2 server in the program then advertises extended CONNECT, so
// browsers may open WebSockets to any of them over HTTP/2, and every
// handler that calls websocket.Accept must then keep running until its Conn
// is closed (see websocket.Accept).
package http2xconnect

import (
	"os"
	"strings"
)

// setting is the GODEBUG entry that enables extended CONNECT.
const setting = "http2xconnect=1"

func init() {
	debug := os.Getenv("GODEBUG")
	if strings.Contains(debug, "http2xconnect=") {
		return // set either way by whoever runs the program
	}
	if debug != "" {
		debug += ","
	}
	os.Setenv("GODEBUG", debug+setting)
}

// Enabled reports whether GODEBUG holds http2xconnect=1, as it does once
// this package is initialised unless the environment set
// http2xconnect=0 or changed since.
func Enabled() bool { return strings.Contains(os.Getenv("GODEBUG"), setting) }
