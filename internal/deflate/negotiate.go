package deflate

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ExtensionName is the token of RFC 7692 section 7.
const ExtensionName = "permessage-deflate"

// The parameters of RFC 7692 section 7.1.
const (
	paramServerNoContextTakeover = "server_no_context_takeover"
	paramClientNoContextTakeover = "client_no_context_takeover"
	paramServerMaxWindowBits     = "server_max_window_bits"
	paramClientMaxWindowBits     = "client_max_window_bits"
)

// Window sizes, as base-2 logarithms of the LZ77 window (RFC 7692 section
// 7.1.2): 8 (256 bytes) to 15 (32 KiB), 15 when a parameter is absent.
const (
	MinWindowBits = 8
	MaxWindowBits = 15
)

// Params is what a permessage-deflate negotiation agreed on.
//
// Each direction has its own window and context takeover mode, named after
// the endpoint that COMPRESSES in that direction (RFC 7692 section 7.1):
//
//   - Server*: messages the server sends. The server compresses with at most
//     2^ServerMaxWindowBits bytes of window; the client keeps that much
//     history to inflate them.
//   - Client*: messages the client sends, the other way round.
//
// NoContextTakeover means that the compressor of that direction starts each
// message with an empty window, so neither end keeps anything between
// messages for that direction. Outgoing and Incoming pick the right pair
// for one endpoint.
type Params struct {
	ServerNoContextTakeover bool
	ClientNoContextTakeover bool
	ServerMaxWindowBits     int // 8..15
	ClientMaxWindowBits     int // 8..15
}

// Outgoing returns the window and context takeover of the messages an
// endpoint sends: the server's for a server, the client's for a client.
// They configure the endpoint's Compressor.
func (p Params) Outgoing(server bool) (windowBits int, noContextTakeover bool) {
	if server {
		return p.ServerMaxWindowBits, p.ServerNoContextTakeover
	}
	return p.ClientMaxWindowBits, p.ClientNoContextTakeover
}

// Incoming returns the window and context takeover of the messages an
// endpoint receives. They configure the endpoint's Decompressor.
func (p Params) Incoming(server bool) (windowBits int, noContextTakeover bool) {
	return p.Outgoing(!server)
}

// agreement is one offer or response parsed and validated.
type agreement struct {
	Params
	serverMaxSet     bool // server_max_window_bits was present
	clientMaxSet     bool // client_max_window_bits was present
	clientMaxHasBits bool // ... with a value
}

// parseAgreement validates the parameters of one permessage-deflate element
// of an offer (response false) or a response (response true), RFC 7692
// sections 7.1.1 and 7.1.2: known parameters only, each at most once,
// no_context_takeover without a value, window bits 8..15 in decimal without
// leading zeros (quoted or not), server_max_window_bits always with a value,
// client_max_window_bits with a value in a response.
func parseAgreement(e Extension, response bool) (agreement, error) {
	a := agreement{Params: Params{ServerMaxWindowBits: MaxWindowBits, ClientMaxWindowBits: MaxWindowBits}}
	var seen [4]bool
	for _, p := range e.Params {
		name := strings.ToLower(p.Name)
		i := slices.Index(paramNames[:], name)
		switch {
		case i < 0:
			return agreement{}, errorf("unknown parameter %q", p.Name)
		case seen[i]:
			return agreement{}, errorf("parameter %s given twice", name)
		}
		seen[i] = true
		switch name {
		case paramServerNoContextTakeover, paramClientNoContextTakeover:
			if p.HasValue {
				return agreement{}, errorf("%s takes no value", name)
			}
			if name == paramServerNoContextTakeover {
				a.ServerNoContextTakeover = true
			} else {
				a.ClientNoContextTakeover = true
			}
		case paramServerMaxWindowBits:
			bits, err := parseWindowBits(name, p)
			if err != nil {
				return agreement{}, err
			}
			a.ServerMaxWindowBits, a.serverMaxSet = bits, true
		case paramClientMaxWindowBits:
			a.clientMaxSet = true
			if !p.HasValue && !response {
				break // section 7.1.2.2: the client supports the parameter
			}
			bits, err := parseWindowBits(name, p)
			if err != nil {
				return agreement{}, err
			}
			a.ClientMaxWindowBits, a.clientMaxHasBits = bits, true
		}
	}
	return a, nil
}

var paramNames = [4]string{paramServerNoContextTakeover, paramClientNoContextTakeover, paramServerMaxWindowBits, paramClientMaxWindowBits}

// parseWindowBits parses a window bits value: 8..15 in decimal, without
// leading zeros (RFC 7692 section 7.1.2).
func parseWindowBits(name string, p Param) (int, error) {
	v := p.Value
	switch {
	case !p.HasValue:
		return 0, errorf("%s needs a value", name)
	case len(v) == 1 && v[0] >= '8' && v[0] <= '9':
		return int(v[0] - '0'), nil
	case len(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5':
		return 10 + int(v[1]-'0'), nil
	}
	return 0, errorf("%s=%q: want 8 to 15", name, v)
}

func errorf(format string, args ...any) error {
	return errors.New("websocket: permessage-deflate: " + fmt.Sprintf(format, args...))
}

// clampBits maps a configured window to 8..15, 0 meaning 15.
func clampBits(bits int) int {
	switch {
	case bits == 0 || bits > MaxWindowBits:
		return MaxWindowBits
	case bits < MinWindowBits:
		return MinWindowBits
	}
	return bits
}

// ServerConfig is what a server is willing to agree to. The zero value
// accepts any offer with the defaults of RFC 7692: context takeover in both
// directions and 32 KiB windows unless the client asks for less.
type ServerConfig struct {
	// NoContextTakeover makes the server compress every message on its own
	// (server_no_context_takeover). The client then keeps no window for the
	// server's messages and the server keeps no history: both save up to
	// 32 KiB per connection, at the cost of compression of similar messages.
	NoContextTakeover bool
	// ClientNoContextTakeover tells the client not to use context takeover
	// (client_no_context_takeover), so the server keeps no window to inflate
	// the client's messages: 32 KiB less per connection. A server may always
	// send it (RFC 7692 section 7.1.1.2).
	ClientNoContextTakeover bool
	// ServerMaxWindowBits caps the window the server compresses with, 8..15;
	// 0 means 15. The server announces it when below 15; a client that asks
	// for a smaller window gets it.
	ServerMaxWindowBits int
	// ClientMaxWindowBits caps the window the client may compress with, and
	// so the history the server keeps to inflate: 2^bits bytes, 8..15, 0
	// meaning 15. It is sent only to a client that offered
	// client_max_window_bits; other clients use 15.
	ClientMaxWindowBits int
}

// NegotiateServer answers the permessage-deflate offers among a client's
// extensions (RFC 7692 section 5). It accepts the first valid offer, skipping
// the ones with an unknown, repeated or invalid parameter, and returns the
// agreement and the response element, e.g. "permessage-deflate;
// server_no_context_takeover; client_max_window_bits=12". ok is false when no
// offer is acceptable; the server then leaves permessage-deflate out.
//
// Every valid offer can be satisfied: this package compresses and inflates
// with any window from 8 to 15 bits, both with and without context
// takeover. The response carries only parameters the offer allows:
// client_max_window_bits only if the client offered it, with a value no
// larger than the client's hint.
func NegotiateServer(offers []Extension, cfg ServerConfig) (p Params, response string, ok bool) {
	for _, e := range offers {
		if !strings.EqualFold(e.Name, ExtensionName) {
			continue
		}
		offer, err := parseAgreement(e, false)
		if err != nil {
			continue
		}
		return answer(offer, cfg)
	}
	return Params{}, "", false
}

func answer(offer agreement, cfg ServerConfig) (Params, string, bool) {
	p := Params{
		// Section 7.1.1.1: a server accepts server_no_context_takeover by
		// echoing it; it may also send it unasked.
		ServerNoContextTakeover: cfg.NoContextTakeover || offer.ServerNoContextTakeover,
		// Section 7.1.1.2: client_no_context_takeover may always be sent.
		ClientNoContextTakeover: cfg.ClientNoContextTakeover || offer.ClientNoContextTakeover,
		ServerMaxWindowBits:     min(clampBits(cfg.ServerMaxWindowBits), offer.ServerMaxWindowBits),
		ClientMaxWindowBits:     MaxWindowBits,
	}
	var b strings.Builder
	b.WriteString(ExtensionName)
	if p.ServerNoContextTakeover {
		b.WriteString("; " + paramServerNoContextTakeover)
	}
	if p.ClientNoContextTakeover {
		b.WriteString("; " + paramClientNoContextTakeover)
	}
	// Section 7.1.2.1: the response must carry server_max_window_bits, no
	// larger, when the offer had it, and may carry it otherwise.
	if offer.serverMaxSet || p.ServerMaxWindowBits < MaxWindowBits {
		b.WriteString("; " + paramServerMaxWindowBits + "=" + strconv.Itoa(p.ServerMaxWindowBits))
	}
	// Section 7.1.2.2: client_max_window_bits only if offered; a value in
	// the offer is the client's own cap, which we hold it to, so that the
	// history we keep is no larger than needed.
	if offer.clientMaxSet {
		bits := clampBits(cfg.ClientMaxWindowBits)
		if offer.clientMaxHasBits {
			bits = min(bits, offer.ClientMaxWindowBits)
		}
		if bits < MaxWindowBits || offer.clientMaxHasBits {
			p.ClientMaxWindowBits = bits
			b.WriteString("; " + paramClientMaxWindowBits + "=" + strconv.Itoa(bits))
		}
	}
	return p, b.String(), true
}

// ClientConfig is what a client offers. The zero value offers
// "permessage-deflate; client_max_window_bits": the defaults of RFC 7692,
// and a server may cap the client's window.
type ClientConfig struct {
	// NoContextTakeover offers client_no_context_takeover: the client
	// compresses every message on its own, and the server may keep no window
	// for them.
	NoContextTakeover bool
	// ServerNoContextTakeover asks the server to compress every message on
	// its own (server_no_context_takeover), so that the client keeps no
	// window to inflate them. A server that does not agree declines the offer.
	ServerNoContextTakeover bool
	// ClientMaxWindowBits caps the window the client compresses with, 8..15,
	// announced as client_max_window_bits=N; 0 offers client_max_window_bits
	// without a value, which lets the server choose.
	ClientMaxWindowBits int
	// ServerMaxWindowBits asks the server to compress with at most that
	// window (server_max_window_bits=N), 8..15, so that the client keeps
	// 2^N bytes to inflate; 0 does not ask. Servers built on zlib cannot
	// compress with an 8-bit window and may decline 8 (this package can).
	ServerMaxWindowBits int
}

// ClientOffer formats the permessage-deflate offer of cfg for the request's
// Sec-WebSocket-Extensions header.
func ClientOffer(cfg ClientConfig) string {
	var b strings.Builder
	b.WriteString(ExtensionName)
	if cfg.ServerNoContextTakeover {
		b.WriteString("; " + paramServerNoContextTakeover)
	}
	if cfg.NoContextTakeover {
		b.WriteString("; " + paramClientNoContextTakeover)
	}
	if cfg.ServerMaxWindowBits != 0 {
		b.WriteString("; " + paramServerMaxWindowBits + "=" + strconv.Itoa(clampBits(cfg.ServerMaxWindowBits)))
	}
	b.WriteString("; " + paramClientMaxWindowBits)
	if cfg.ClientMaxWindowBits != 0 {
		b.WriteString("=" + strconv.Itoa(clampBits(cfg.ClientMaxWindowBits)))
	}
	return b.String()
}

// AcceptResponse checks the server's Sec-WebSocket-Extensions response (all
// of its elements) against the offer ClientOffer(cfg) made (RFC 7692 sections
// 5 and 7.1). ok is false when the server declined compression. An error
// means that the client must fail the connection: an extension that was not
// offered, permessage-deflate twice, an invalid parameter, or one that does
// not answer the offer.
//
// A client_max_window_bits larger than the client's own cap is accepted:
// the client then compresses with its cap, which honours both.
func AcceptResponse(exts []Extension, cfg ClientConfig) (p Params, ok bool, err error) {
	for _, e := range exts {
		if !strings.EqualFold(e.Name, ExtensionName) {
			return Params{}, false, fmt.Errorf("websocket: server chose extension %q, which was not offered", e.Name)
		}
		if ok {
			return Params{}, false, errorf("server chose the extension twice")
		}
		resp, err := parseAgreement(e, true)
		if err != nil {
			return Params{}, false, err
		}
		if cfg.ServerNoContextTakeover && !resp.ServerNoContextTakeover {
			return Params{}, false, errorf("server did not accept %s", paramServerNoContextTakeover)
		}
		if asked := cfg.ServerMaxWindowBits; asked != 0 {
			if !resp.serverMaxSet {
				return Params{}, false, errorf("server did not accept %s=%d", paramServerMaxWindowBits, clampBits(asked))
			}
			if resp.ServerMaxWindowBits > clampBits(asked) {
				return Params{}, false, errorf("server chose %s=%d, above the %d offered",
					paramServerMaxWindowBits, resp.ServerMaxWindowBits, clampBits(asked))
			}
		}
		p = resp.Params
		p.ClientNoContextTakeover = p.ClientNoContextTakeover || cfg.NoContextTakeover
		p.ClientMaxWindowBits = min(p.ClientMaxWindowBits, clampBits(cfg.ClientMaxWindowBits))
		ok = true
	}
	return p, ok, nil
}
