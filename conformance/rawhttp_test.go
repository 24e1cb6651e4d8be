package conformance

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The raw HTTP side of the opening handshake (RFC 6455 section 4): the
// requests the raw client writes and the responses the raw server writes.

// rfcKey is the key of the example in RFC 6455 section 1.3, and rfcAccept
// the answer the RFC gives for it.
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// rawRequest is an opening handshake the raw client sends, which the cases
// of section 10 break in various ways.
type rawRequest struct {
	method, target, proto string
	headers               [][2]string
	after                 []byte // bytes sent right behind the request, in the same send
}

func validRequest(host string) *rawRequest {
	return &rawRequest{
		method: "GET", target: "/chat", proto: "HTTP/1.1",
		headers: [][2]string{
			{"Host", host},
			{"Upgrade", "websocket"},
			{"Connection", "Upgrade"},
			{"Sec-WebSocket-Key", rfcKey},
			{"Sec-WebSocket-Version", "13"},
		},
	}
}

// set replaces the header name, or adds it.
func (r *rawRequest) set(name, value string) {
	for i, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			r.headers[i] = [2]string{name, value}
			return
		}
	}
	r.add(name, value)
}

func (r *rawRequest) add(name, value string) { r.headers = append(r.headers, [2]string{name, value}) }

func (r *rawRequest) del(name string) {
	kept := r.headers[:0]
	for _, h := range r.headers {
		if !strings.EqualFold(h[0], name) {
			kept = append(kept, h)
		}
	}
	r.headers = kept
}

func (r *rawRequest) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method, r.target, r.proto)
	for _, h := range r.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	b.Write(r.after)
	return b.Bytes()
}

// sendRequest sends req and reads the server's response.
func (p *rawPeer) sendRequest(req *rawRequest) *http.Response {
	p.t.Helper()
	p.sendBytes(req.bytes())
	p.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.t.Fatalf("reading the handshake response: %v", err)
	}
	return resp
}

// handshake sends a valid opening handshake and checks the 101 response
// (section 4.2.2).
func (p *rawPeer) handshake() {
	p.t.Helper()
	resp := p.sendRequest(validRequest(p.conn.RemoteAddr().String()))
	checkSwitching(p.t, resp, rfcAccept)
}

// checkSwitching checks the parts of a 101 response every handshake needs,
// and that it agrees to no extension.
func checkSwitching(t *testing.T, resp *http.Response, accept string) {
	t.Helper()
	checkSwitchingExtensions(t, resp, accept, "")
}

// checkSwitchingExtensions is checkSwitching for a response whose
// Sec-WebSocket-Extensions must be extensions exactly, on one line ("": none).
func checkSwitchingExtensions(t *testing.T, resp *http.Response, accept, extensions string) {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Proto != "HTTP/1.1" {
		t.Fatalf("handshake: got %s %s, want HTTP/1.1 101", resp.Proto, resp.Status)
	}
	for name, want := range map[string]string{
		"Upgrade":              "websocket",
		"Connection":           "Upgrade",
		"Sec-WebSocket-Accept": accept,
	} {
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("handshake: %s: %q, want %q", name, got, want)
		}
	}
	got := resp.Header.Values("Sec-WebSocket-Extensions")
	if extensions == "" && len(got) != 0 || extensions != "" && (len(got) != 1 || got[0] != extensions) {
		t.Errorf("handshake: Sec-WebSocket-Extensions %q, want %q", got, extensions)
	}
}

// checkClientRequest checks the opening handshake our client sends.
func checkClientRequest(t *testing.T, req *http.Request) {
	t.Helper()
	if req.Method != http.MethodGet || req.Proto != "HTTP/1.1" {
		t.Errorf("client handshake: %s %s, want GET HTTP/1.1", req.Method, req.Proto)
	}
	if req.Host == "" {
		t.Error("client handshake without Host")
	}
	for name, want := range map[string]string{
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Version": "13",
	} {
		if got := req.Header.Values(name); len(got) != 1 || !strings.EqualFold(got[0], want) {
			t.Errorf("client handshake: %s: %q, want %q", name, got, want)
		}
	}
	key := req.Header.Values("Sec-WebSocket-Key")
	if len(key) != 1 {
		t.Fatalf("client handshake: Sec-WebSocket-Key: %q, want one value", key)
	}
	if b, err := base64.StdEncoding.DecodeString(key[0]); err != nil || len(b) != 16 {
		t.Errorf("client handshake: Sec-WebSocket-Key %q is not 16 bytes in base64", key[0])
	}
}

// acceptKey computes Sec-WebSocket-Accept for key (section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// acceptResponse is the 101 response to req, with extra header lines.
func acceptResponse(req *http.Request, extra []string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	fmt.Fprintf(&b, "Sec-WebSocket-Accept: %s\r\n", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
