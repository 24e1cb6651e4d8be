package websocket

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Seeds live in testdata/fuzz/<FuzzName>/ as well; those added here keep
// each target meaningful without that directory.

const fuzzRequest = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n" +
	"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"

// FuzzServerHandshake checks what Accept checks of a request, on any
// request net/http can parse.
func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte(fuzzRequest))
	f.Add([]byte(strings.Replace(fuzzRequest, "Upgrade: websocket", "Upgrade: WebSocket, h2c", 1)))
	f.Add([]byte(strings.Replace(fuzzRequest, "Version: 13", "Version: 13\r\nSec-WebSocket-Version: 13", 1)))
	f.Add([]byte(strings.Replace(fuzzRequest, "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=", 1)))
	f.Add([]byte(strings.Replace(fuzzRequest, "Origin: http://example.com", "Origin: null", 1)))
	f.Add([]byte(strings.Replace(fuzzRequest, "HTTP/1.1", "HTTP/1.0", 1)))
	opts := &AcceptOptions{
		Subprotocols:   []string{"superchat", "chat", "v2.duplex"},
		OriginPatterns: []string{"*.example.com", "*.example.com:8443", "localhost:*"},
	}
	badPattern := &AcceptOptions{OriginPatterns: []string{"[bad"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		status, reason := checkClientHandshake(r)
		switch status {
		case 0:
			if reason != "" {
				t.Fatalf("valid, with the reason %q", reason)
			}
			// Accepted only what section 4.2.1 allows.
			keys := r.Header.Values("Sec-WebSocket-Key")
			if len(keys) != 1 {
				t.Fatalf("accepted %d keys", len(keys))
			}
			if key, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(key) != 16 {
				t.Fatalf("accepted the key %q", keys[0])
			}
			if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || v[0] != "13" {
				t.Fatalf("accepted the version %q", v)
			}
			if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1 {
				t.Fatalf("accepted %s %s", r.Method, r.Proto)
			}
			if !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "Upgrade") {
				t.Fatalf("accepted Upgrade %q, Connection %q", r.Header.Values("Upgrade"), r.Header.Values("Connection"))
			}
		case http.StatusBadRequest, http.StatusUpgradeRequired:
			if reason == "" {
				t.Fatalf("status %d without a reason", status)
			}
		default:
			t.Fatalf("status %d (%q)", status, reason)
		}

		chosen := selectSubprotocol(r.Header, opts.Subprotocols)
		if chosen != "" && (!slices.Contains(opts.Subprotocols, chosen) || !slices.Contains(headerTokens(r.Header, "Sec-WebSocket-Protocol"), chosen)) {
			t.Fatalf("chose %q, which one side does not speak", chosen)
		}
		for _, p := range opts.Subprotocols {
			if p == chosen {
				break
			}
			if slices.Contains(headerTokens(r.Header, "Sec-WebSocket-Protocol"), p) {
				t.Fatalf("chose %q over %q, which the server prefers", chosen, p)
			}
		}

		err = checkOrigin(r, opts)
		if r.Header.Get("Origin") == "" && err != nil {
			t.Fatalf("refused a request without Origin: %v", err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "websocket: ") {
			t.Fatalf("error %q", err)
		}
		if err := checkOrigin(r, badPattern); err != nil && !strings.HasPrefix(err.Error(), "websocket: ") {
			t.Fatalf("error %q", err)
		}
		if checkOrigin(r, &AcceptOptions{InsecureSkipVerifyOrigin: true}) != nil {
			t.Fatal("InsecureSkipVerifyOrigin refused an origin")
		}
	})
}

// FuzzClientHandshake checks what Dial checks of the response, on any
// response net/http can parse.
func FuzzClientHandshake(f *testing.F) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	f.Add([]byte(ok + "\r\n"))
	f.Add([]byte(ok + "Sec-WebSocket-Protocol: chat\r\n\r\n"))
	f.Add([]byte(ok + "Sec-WebSocket-Protocol: superchat, chat\r\n\r\n"))
	f.Add([]byte(ok + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
	f.Add([]byte(strings.Replace(ok, "xOo=", "xOo", 1) + "\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ngo away"))
	offered := []string{"chat", "superchat"}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://example.com/chat", nil)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), req)
		if err != nil {
			return
		}
		// Half the inputs are checked as if compression had been offered.
		var opts CompressionOptions
		if len(data)%2 == 1 {
			opts.Mode = CompressionContextTakeover
		}
		err = checkServerResponse(resp, key, offered)
		var comp *compression
		if err == nil {
			comp, err = acceptExtensions(resp.Header, &opts)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "websocket: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("accepted status %d", resp.StatusCode)
		}
		if v := resp.Header.Values("Sec-WebSocket-Accept"); len(v) != 1 || v[0] != acceptKey(key) {
			t.Fatalf("accepted Sec-WebSocket-Accept %q", v)
		}
		if !headerHasToken(resp.Header, "Upgrade", "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
			t.Fatalf("accepted Upgrade %q, Connection %q", resp.Header.Values("Upgrade"), resp.Header.Values("Connection"))
		}
		if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) > 1 || len(v) == 1 && !slices.Contains(offered, v[0]) {
			t.Fatalf("accepted the subprotocol %q", v)
		}
		if v := resp.Header.Values("Sec-WebSocket-Extensions"); len(v) > 0 && opts.Mode == CompressionDisabled {
			t.Fatalf("accepted extensions %q, none offered", v)
		}
		if comp != nil && opts.Mode == CompressionDisabled {
			t.Fatal("compression agreed without an offer")
		}
	})
}
