package conformance

import (
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestH2Handshake is section 10 over HTTP/2: the opening handshake of RFC
// 8441 (sections 4 and 5) in both roles. Our server answers a valid
// extended CONNECT with 200 and none of RFC 6455's Upgrade, Connection or
// Sec-WebSocket-Accept, picks the subprotocol as over HTTP/1.1, and
// refuses with 400 a wrong or missing version or a :protocol other than
// websocket, with 403 a foreign Origin; our client fails on a refusal,
// returning the response and its body, and on a subprotocol it did not
// offer.
func TestH2Handshake(t *testing.T) {
	field := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	serverCases := []struct {
		name        string
		edit        func(fields []hpack.HeaderField) []hpack.HeaderField
		status      string
		subprotocol string // with status 200
	}{
		{"10.h2.1 a valid extended CONNECT", nil, "200", ""},
		{"10.h2.2 subprotocols a and b offered: b, the server's first choice", func(f []hpack.HeaderField) []hpack.HeaderField {
			return append(f, field("sec-websocket-protocol", "a, b"))
		}, "200", "b"},
		{"10.h2.3 subprotocols over two fields", func(f []hpack.HeaderField) []hpack.HeaderField {
			return append(f, field("sec-websocket-protocol", "x"), field("sec-websocket-protocol", "a"))
		}, "200", "a"},
		{"10.h2.4 version 8", func(f []hpack.HeaderField) []hpack.HeaderField {
			f[5].Value = "8"
			return f
		}, "400", ""},
		{"10.h2.5 no version", func(f []hpack.HeaderField) []hpack.HeaderField { return f[:5] }, "400", ""},
		{"10.h2.6 two version fields", func(f []hpack.HeaderField) []hpack.HeaderField {
			return append(f, field("sec-websocket-version", "13"))
		}, "400", ""},
		{"10.h2.7 :protocol other than websocket", func(f []hpack.HeaderField) []hpack.HeaderField {
			f[1].Value = "websocket2"
			return f
		}, "400", ""},
		{"10.h2.8 an Origin of another host", func(f []hpack.HeaderField) []hpack.HeaderField {
			return append(f, field("origin", "https://elsewhere.example"))
		}, "403", ""},
	}
	for _, c := range serverCases {
		modes := []serveMode{modeRead} // a refusal serves nothing
		if c.status == "200" {
			modes = serveModes
		}
		t.Run(c.name+"/server", func(t *testing.T) {
			forEachMode(t, modes, func(t *testing.T, m serveMode) {
				t.Run("h2", func(t *testing.T) {
					srv := startServerH2(t, endpointConfig{mode: m})
					fields := extendedConnect(srv.addr())
					if c.edit != nil {
						fields = c.edit(fields)
					}
					s, h := requestH2(t, srv, fields)
					defer s.Close()
					if got := h.PseudoValue("status"); got != c.status {
						t.Fatalf(":status %s, want %s", got, c.status)
					}
					if c.status != "200" {
						if err := <-srv.acceptErrs; err == nil || !strings.HasPrefix(err.Error(), "websocket: ") {
							t.Errorf("Accept returned %v, want an error that says why", err)
						}
						return
					}
					for _, name := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept"} {
						if v := s.resp.Header.Values(name); len(v) > 0 {
							t.Errorf("the 200 carries %s: %q (RFC 8441 section 5 leaves it out)", name, v)
						}
					}
					if got := s.resp.Header.Get("Sec-Websocket-Protocol"); got != c.subprotocol {
						t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, c.subprotocol)
					}
					ep := srv.endpoint(t)
					if got := ep.conn.Subprotocol(); got != c.subprotocol {
						t.Errorf("Subprotocol() = %q, want %q", got, c.subprotocol)
					}
					s.start()
					s.Close() // a reset ends our server's Conn
					if err := ep.wait(t); err == nil {
						t.Error("the endpoint ended without an error after the reset")
					}
				})
			})
		})
	}

	t.Run("10.h2.9 the server refuses with 403 and says why/client/h2", func(t *testing.T) {
		cl := startClientH2(t, endpointConfig{})
		s := cl.acceptConnect(t)
		defer s.Close()
		s.respond(t, []hpack.HeaderField{field(":status", "403"), field("content-type", "text/plain")}, []byte("not for you"))
		res := cl.result(t)
		if res.err == nil || !strings.Contains(res.err.Error(), "403") {
			t.Fatalf("Dial: %v, want a refusal naming 403", res.err)
		}
		if res.resp == nil || res.resp.StatusCode != 403 {
			t.Fatalf("Dial returned the response %v, want the 403", res.resp)
		}
		if body, _ := io.ReadAll(res.resp.Body); string(body) != "not for you" {
			t.Errorf("the refusal's body %q, want %q", body, "not for you")
		}
	})

	t.Run("10.h2.10 the server picks a subprotocol not offered/client/h2", func(t *testing.T) {
		cl := startClientH2(t, endpointConfig{}, "a")
		s := cl.acceptConnect(t)
		defer s.Close()
		if got := s.req.Header.Get("Sec-Websocket-Protocol"); got != "a" {
			t.Errorf("Dial offered Sec-WebSocket-Protocol %q, want a", got)
		}
		s.respond(t, []hpack.HeaderField{field(":status", "200"), field("sec-websocket-protocol", "z")}, nil)
		res := cl.result(t)
		if res.err == nil || !strings.Contains(res.err.Error(), `subprotocol "z"`) {
			t.Fatalf("Dial: %v, want a refusal of subprotocol z", res.err)
		}
	})
}
