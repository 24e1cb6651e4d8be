package websocket

import (
	"errors"
	"net/http"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// negotiateServer chooses among the client's extension offers (RFC 6455
// section 9.1) and returns the agreed compression, or nil, and the value of
// the response's Sec-WebSocket-Extensions header ("" for none). Offers of
// other extensions, and malformed headers, are declined by leaving them out
// of the response, which section 9.1 allows.
func negotiateServer(h http.Header, opts *CompressionOptions) (*compression, string) {
	if opts.Mode == CompressionDisabled {
		return nil, ""
	}
	values := h.Values("Sec-WebSocket-Extensions")
	if len(values) == 0 {
		return nil, ""
	}
	offers, err := deflate.ParseExtensions(values)
	if err != nil {
		return nil, ""
	}
	p, response, ok := deflate.NegotiateServer(offers, serverConfig(opts))
	if !ok {
		return nil, ""
	}
	return newCompression(p, true, opts), response
}

// clientOffer returns the request's Sec-WebSocket-Extensions value, or "".
func clientOffer(opts *CompressionOptions) string {
	if opts.Mode == CompressionDisabled {
		return ""
	}
	return deflate.ClientOffer(clientConfig(opts))
}

// acceptExtensions checks the server's Sec-WebSocket-Extensions answer
// against the offer and returns the agreed compression, or nil.
func acceptExtensions(h http.Header, opts *CompressionOptions) (*compression, error) {
	values := h.Values("Sec-WebSocket-Extensions")
	if len(values) == 0 {
		return nil, nil
	}
	exts, err := deflate.ParseExtensions(values)
	if err != nil {
		return nil, errors.New("websocket: malformed Sec-WebSocket-Extensions in the handshake response: " + err.Error())
	}
	if opts.Mode == CompressionDisabled {
		return nil, errors.New("websocket: server chose extension " + quote(deflate.FormatExtensions(exts)) + ", which was not offered")
	}
	p, ok, err := deflate.AcceptResponse(exts, clientConfig(opts))
	if err != nil || !ok {
		return nil, err
	}
	return newCompression(p, false, opts), nil
}

// allowedRSV returns the reserved bits an agreed compression gives meaning
// to: RSV1 marks a compressed message (RFC 7692 section 6).
func (c *compression) allowedRSV() byte {
	if c == nil {
		return 0
	}
	return frame.RSV1
}
