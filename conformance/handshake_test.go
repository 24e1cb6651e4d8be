package conformance

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// serverHandshakeCase is a raw opening handshake sent to our server.
type serverHandshakeCase struct {
	name   string
	edit   func(req *rawRequest, p *rawPeer)
	status int
	byHTTP bool                                  // net/http refuses it before the handler runs
	check  func(p *rawPeer, resp *http.Response) // after the status; may be nil
}

// TestHandshakeServer covers our server's side of the opening handshake,
// RFC 6455 section 4.2, with requests written byte by byte on the wire.
func TestHandshakeServer(t *testing.T) {
	cases := []serverHandshakeCase{
		{name: "10.1.1 valid request, the RFC's example key", status: 101, check: func(p *rawPeer, resp *http.Response) {
			if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) != 0 {
				p.t.Errorf("Sec-WebSocket-Protocol %q, none offered", v)
			}
		}},
		{name: "10.1.2 Connection: keep-alive, Upgrade", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Connection", "keep-alive, Upgrade")
		}},
		{name: "10.1.3 header names and tokens in other cases", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.del("Upgrade")
			r.del("Connection")
			r.add("upgrade", "WebSocket")
			r.add("CONNECTION", "upgrade")
			r.del("Sec-WebSocket-Key")
			r.add("sec-websocket-key", rfcKey)
		}},
		{name: "10.1.4 Upgrade and Connection over several lines", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Connection", "keep-alive")
			r.add("Connection", "Upgrade")
		}},
		{name: "10.1.5 missing Sec-WebSocket-Key", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.del("Sec-WebSocket-Key")
		}},
		{name: "10.1.6 key of 15 bytes", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA") // 20 characters, 15 bytes
		}},
		{name: "10.1.7 key of 17 bytes", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=") // 24 characters, 17 bytes
		}},
		{name: "10.1.8 key not in base64", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Sec-WebSocket-Key", "this is not base64 !!!!!")
		}},
		{name: "10.1.9 key header twice", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==")
		}},
		{name: "10.1.10 version 8", status: 426, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Sec-WebSocket-Version", "8")
		}, check: checkVersion13},
		{name: "10.1.11 missing version", status: 426, edit: func(r *rawRequest, _ *rawPeer) {
			r.del("Sec-WebSocket-Version")
		}, check: checkVersion13},
		{name: "10.1.12 POST", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.method = "POST"
			r.add("Content-Length", "0")
		}},
		{name: "10.1.13 an HTTP 1.0 request", status: 400, edit: func(r *rawRequest, _ *rawPeer) {
			r.proto = "HTTP/1.0"
		}},
		{name: "10.1.14 missing Upgrade", status: 426, edit: func(r *rawRequest, _ *rawPeer) {
			r.del("Upgrade")
		}, check: checkUpgradeHeader},
		{name: "10.1.15 Connection without the Upgrade token", status: 426, edit: func(r *rawRequest, _ *rawPeer) {
			r.set("Connection", "keep-alive")
		}, check: checkUpgradeHeader},
		{name: "10.1.16 cross-origin request", status: 403, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Origin", "http://evil.example")
		}},
		{name: "10.1.17 same-host origin", status: 101, edit: func(r *rawRequest, p *rawPeer) {
			r.add("Origin", "http://"+p.conn.RemoteAddr().String())
		}},
		{name: "10.1.18 subprotocol in the server's order of preference", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Sec-WebSocket-Protocol", "a, b")
		}, check: checkSubprotocol("b")},
		{name: "10.1.19 subprotocols offered over several lines", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Sec-WebSocket-Protocol", "x, a")
			r.add("Sec-WebSocket-Protocol", "b")
		}, check: checkSubprotocol("b")},
		{name: "10.1.20 no subprotocol in common", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Sec-WebSocket-Protocol", "c, d")
		}, check: checkSubprotocol("")},
		{name: "10.1.21 a frame in the same write as the request", status: 101, edit: func(r *rawRequest, p *rawPeer) {
			r.after = p.encode(text("early"), ping([]byte("early ping")))
		}, check: func(p *rawPeer, _ *http.Response) {
			p.expectText("early")
			p.expectPong([]byte("early ping"))
		}},
		{name: "10.1.22 an unknown extension offered is declined", status: 101, edit: func(r *rawRequest, _ *rawPeer) {
			r.add("Sec-WebSocket-Extensions", "x-unknown-extension; param=1")
		}},
		{name: "10.1.23 missing Host", status: 400, byHTTP: true, edit: func(r *rawRequest, _ *rawPeer) {
			r.del("Host")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			modes := []serveMode{modeRead} // a refusal serves nothing
			if c.status == http.StatusSwitchingProtocols {
				modes = serveModes
			}
			forEachMode(t, modes, func(t *testing.T, m serveMode) {
				for _, d := range deliveries {
					t.Run(d.String(), func(t *testing.T) {
						srv := startServerConfig(t, endpointConfig{mode: m})
						p := srv.dial(t, d)
						req := validRequest(srv.addr())
						if c.edit != nil {
							c.edit(req, p)
						}
						resp := p.sendRequest(req)
						if resp.StatusCode != c.status {
							t.Fatalf("status %s, want %d", resp.Status, c.status)
						}
						if c.status == http.StatusSwitchingProtocols {
							checkSwitching(t, resp, rfcAccept)
							p.ep = srv.endpoint(t)
						} else {
							checkRefusal(p, srv, resp, c.byHTTP)
						}
						if c.check != nil {
							c.check(p, resp)
						}
					})
				}
			})
		})
	}
}

// checkRefusal checks a refused handshake: Accept reports an error, and the
// response says why in its body.
func checkRefusal(p *rawPeer, srv *server, resp *http.Response, byHTTP bool) {
	p.t.Helper()
	if byHTTP {
		select {
		case err := <-srv.acceptErrs:
			p.t.Fatalf("the handler ran for a request net/http refuses: %v", err)
		default:
		}
		return
	}
	select {
	case err := <-srv.acceptErrs:
		if err == nil {
			p.t.Error("Accept refused the handshake without an error")
		}
	case <-srv.endpoints:
		p.t.Fatal("Accept returned a Conn for a refused handshake")
	case <-time.After(ioTimeout):
		p.t.Fatal("Accept did not return")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || len(body) == 0 {
		p.t.Errorf("refusal body %q, %v; want a reason", body, err)
	}
}

func checkVersion13(p *rawPeer, resp *http.Response) {
	if v := resp.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || v[0] != "13" {
		p.t.Errorf("426 response with Sec-WebSocket-Version %q, want 13 (section 4.4)", v)
	}
}

func checkUpgradeHeader(p *rawPeer, resp *http.Response) {
	// A 426 response must name the protocol to upgrade to (RFC 9110
	// section 15.5.22).
	if v := resp.Header.Get("Upgrade"); !strings.EqualFold(v, "websocket") {
		p.t.Errorf("426 response with Upgrade %q, want websocket", v)
	}
}

func checkSubprotocol(want string) func(p *rawPeer, resp *http.Response) {
	return func(p *rawPeer, resp *http.Response) {
		v := resp.Header.Values("Sec-WebSocket-Protocol")
		if want == "" && len(v) != 0 || want != "" && (len(v) != 1 || v[0] != want) {
			p.t.Errorf("Sec-WebSocket-Protocol %q, want %q", v, want)
		}
		if got := p.ep.conn.Subprotocol(); got != want {
			p.t.Errorf("Subprotocol() = %q, want %q", got, want)
		}
	}
}

// clientHandshakeCase is a raw server's answer to our client's handshake.
type clientHandshakeCase struct {
	name         string
	subprotocols []string                         // what Dial offers
	response     func(p *rawPeer) []byte          // the bytes the raw server sends
	wantStatus   int                              // when Dial must fail: the status of the response it returns
	check        func(p *rawPeer, res dialResult) // may be nil
}

// TestHandshakeClient covers our client's side of the opening handshake,
// RFC 6455 section 4.1: the request it sends, and the responses it must
// refuse (section 4.1, the client's checks on the response).
func TestHandshakeClient(t *testing.T) {
	accept := func(extra ...string) func(p *rawPeer) []byte {
		return func(p *rawPeer) []byte { return acceptResponse(p.hs, extra) }
	}
	custom := func(lines ...string) func(p *rawPeer) []byte {
		return func(p *rawPeer) []byte {
			s := strings.Join(lines, "\r\n") + "\r\n\r\n"
			s = strings.ReplaceAll(s, "{accept}", acceptKey(p.hs.Header.Get("Sec-WebSocket-Key")))
			return []byte(s)
		}
	}
	refusal := func(status, body string) func(p *rawPeer) []byte {
		return func(*rawPeer) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
		}
	}
	echoWorks := func(p *rawPeer, _ dialResult) {
		p.send(text("hello"))
		p.expectText("hello")
	}
	cases := []clientHandshakeCase{
		{name: "10.2.1 valid response", response: accept(), check: func(p *rawPeer, res dialResult) {
			if got := res.ep.conn.Subprotocol(); got != "" {
				p.t.Errorf("Subprotocol() = %q, want none", got)
			}
			echoWorks(p, res)
		}},
		{name: "10.2.2 header names and tokens in other cases", response: custom(
			"HTTP/1.1 101 Web Socket Protocol Handshake",
			"upgrade: WebSocket",
			"connection: keep-alive, Upgrade",
			"sec-websocket-accept: {accept}"), check: echoWorks},
		{name: "10.2.3 wrong Sec-WebSocket-Accept", wantStatus: 101, response: custom(
			"HTTP/1.1 101 Switching Protocols",
			"Upgrade: websocket",
			"Connection: Upgrade",
			"Sec-WebSocket-Accept: "+rfcAccept)},
		{name: "10.2.4 missing Sec-WebSocket-Accept", wantStatus: 101, response: custom(
			"HTTP/1.1 101 Switching Protocols",
			"Upgrade: websocket",
			"Connection: Upgrade")},
		{name: "10.2.5 missing Upgrade", wantStatus: 101, response: custom(
			"HTTP/1.1 101 Switching Protocols",
			"Connection: Upgrade",
			"Sec-WebSocket-Accept: {accept}")},
		{name: "10.2.6 Upgrade to another protocol", wantStatus: 101, response: custom(
			"HTTP/1.1 101 Switching Protocols",
			"Upgrade: h2c",
			"Connection: Upgrade",
			"Sec-WebSocket-Accept: {accept}")},
		{name: "10.2.7 missing Connection", wantStatus: 101, response: custom(
			"HTTP/1.1 101 Switching Protocols",
			"Upgrade: websocket",
			"Sec-WebSocket-Accept: {accept}")},
		{name: "10.2.8 status 200", wantStatus: 200, response: refusal("200 OK", "not a websocket server"),
			check: checkBody("not a websocket server")},
		{name: "10.2.9 status 403", wantStatus: 403, response: refusal("403 Forbidden", "origin forbidden"),
			check: checkBody("origin forbidden")},
		{name: "10.2.10 subprotocol not offered", subprotocols: []string{"a"}, wantStatus: 101,
			response: accept("Sec-WebSocket-Protocol: x")},
		{name: "10.2.11 subprotocol when none was offered", wantStatus: 101,
			response: accept("Sec-WebSocket-Protocol: a")},
		{name: "10.2.12 subprotocol chosen from the offer", subprotocols: []string{"a", "b"},
			response: accept("Sec-WebSocket-Protocol: b"), check: func(p *rawPeer, res dialResult) {
				if got := p.hs.Header.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != "a, b" {
					p.t.Errorf("offered Sec-WebSocket-Protocol %q, want \"a, b\"", got)
				}
				if got := res.ep.conn.Subprotocol(); got != "b" {
					p.t.Errorf("Subprotocol() = %q, want b", got)
				}
				echoWorks(p, res)
			}},
		// Dial's zero options offer no extension, so any is unexpected.
		{name: "10.2.13 an extension not offered", wantStatus: 101,
			response: accept("Sec-WebSocket-Extensions: permessage-deflate")},
		{name: "10.2.14 a frame in the same write as the 101", response: func(p *rawPeer) []byte {
			return append(acceptResponse(p.hs, nil), p.encode(text("early"), ping([]byte("early ping")))...)
		}, check: func(p *rawPeer, _ dialResult) {
			p.expectText("early")
			p.expectPong([]byte("early ping"))
		}},
		{name: "10.2.15 an unknown extension", wantStatus: 101,
			response: accept("Sec-WebSocket-Extensions: x-unknown-extension")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range deliveries {
				t.Run(d.String(), func(t *testing.T) {
					cl := startClient(t, "/chat?room=1", false, &websocket.DialOptions{Subprotocols: c.subprotocols})
					p := cl.accept(t, d)
					if p.hs.RequestURI != "/chat?room=1" {
						t.Errorf("request target %q, want /chat?room=1", p.hs.RequestURI)
					}
					p.serverHandshake(c.response(p))
					res := cl.result(t)
					if c.wantStatus == 0 {
						if res.err != nil {
							t.Fatalf("Dial: %v", res.err)
						}
						p.ep = res.ep
					} else {
						if res.err == nil {
							t.Fatal("Dial accepted the response")
						}
						if res.resp == nil || res.resp.StatusCode != c.wantStatus {
							t.Fatalf("Dial returned the response %v, want one with status %d", res.resp, c.wantStatus)
						}
						// Our client drops the connection it refused.
						p.expectEOF()
					}
					if c.check != nil {
						c.check(p, res)
					}
				})
			}
		})
	}
}

// checkBody checks that a refused handshake's response body is readable.
func checkBody(want string) func(p *rawPeer, res dialResult) {
	return func(p *rawPeer, res dialResult) {
		body, err := io.ReadAll(res.resp.Body)
		if err != nil || string(body) != want {
			p.t.Errorf("response body %q, %v; want %q", body, err, want)
		}
		if res.err == nil || errors.Is(res.err, io.EOF) {
			p.t.Errorf("Dial error %v, want a refusal", res.err)
		}
	}
}
