package websocket

import "net/http"

// extensions is what the handshake agreed on in Sec-WebSocket-Extensions
// (RFC 6455 section 9). No extension is implemented yet: every offer is
// declined by leaving it out of the response, which section 9.1 allows.
// permessage-deflate (RFC 7692) plugs in here and through rsv.
type extensions struct {
	// rsv holds the reserved bits the agreed extensions give meaning to;
	// frames with others set fail the connection.
	rsv byte
}

// negotiateServer chooses among the client's offers and returns the
// agreement and the value of the response's Sec-WebSocket-Extensions header
// ("" for none).
func negotiateServer(h http.Header) (extensions, string) {
	return extensions{}, ""
}
