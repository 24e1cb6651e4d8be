// Package interop tests Duplex against other WebSocket implementations, in
// both roles: our server (websocket.Accept) against Chromium, Node's ws,
// Python's websockets, gorilla/websocket and coder/websocket as clients, and
// our client (websocket.Dial) against ws, websockets, gorilla and coder as
// servers. Each pair echoes text and binary messages from 0 B to 16 MiB,
// sends fragmented messages, pings, closes with a code and reason in both
// directions, negotiates a subprotocol, runs over TLS, and compresses with
// and without context takeover where the peer can.
//
// The tests are all in _test.go files; the peers outside Go are scripts in
// js/ and py/. `make interop` installs what they need (peers/setup.sh) and
// runs them.
package interop
