package websocket

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The fuzzers over HTTP/2 (RFC 8441): the frames are RFC 6455's on either
// transport, so FuzzH2ConnRead checks a Conn as FuzzConnRead does, with
// FuzzConnRead's seeds, but over an h2Stream: the peer's bytes are the
// stream's DATA, read by the stream's pump in the input's chunks, and its
// end is END_STREAM. FuzzExtendedConnect checks the opening handshake of
// RFC 8441, which replaces RFC 6455's.

// addConnReadSeeds adds FuzzConnRead's seed corpus to f.
func addConnReadSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzConnRead", "*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		_, arg, ok := strings.Cut(strings.TrimSpace(string(b)), "\n[]byte(")
		if !ok {
			continue
		}
		s, err := strconv.Unquote(strings.TrimSuffix(arg, ")"))
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(s))
	}
}

// FuzzH2ConnRead is FuzzConnRead over an HTTP/2 stream.
func FuzzH2ConnRead(f *testing.F) {
	addConnReadSeeds(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		checkConnRead(t, input, func(fc *fuzzConn, client bool) net.Conn {
			var closeWrite func() error // a server's stream ends when its handler returns
			if client {
				closeWrite = func() error { return nil } // END_STREAM
			}
			return newH2Stream(io.NopCloser(fc), fc, nil, func() {}, closeWrite,
				func() { fc.Close() }, minBufferSize, h2Addr("fuzz"), h2Addr("fuzz"))
		})
	})
}

// FuzzExtendedConnect checks what Accept checks of an HTTP/2 request
// (RFC 8441 sections 4 and 5): it takes a WebSocket only from CONNECT
// with :protocol websocket and one Sec-WebSocket-Version of 13, and says
// why it refuses anything else.
func FuzzExtendedConnect(f *testing.F) {
	f.Add("CONNECT", "websocket", "13", "")
	f.Add("CONNECT", "websocket", "13,13", "")
	f.Add("CONNECT", "websocket", "8", "")
	f.Add("CONNECT", "WebSocket", "13", "")
	f.Add("GET", "websocket", "13", "")
	f.Add("CONNECT", "", "13", "")
	f.Add("CONNECT", "websocket", "13", "permessage-deflate; client_max_window_bits")
	f.Fuzz(func(t *testing.T, method, protocol, versions, extensions string) {
		r := &http.Request{Method: method, ProtoMajor: 2, Header: http.Header{}}
		if protocol != "" {
			r.Header.Set(":protocol", protocol)
		}
		var sent []string
		for v := range strings.SplitSeq(versions, ",") {
			if v != "" {
				r.Header.Add("Sec-WebSocket-Version", v)
				sent = append(sent, v)
			}
		}
		if extensions != "" {
			r.Header.Set("Sec-WebSocket-Extensions", extensions)
		}
		status, reason := checkExtendedConnect(r)
		valid := method == http.MethodConnect && protocol == "websocket" && len(sent) == 1 && sent[0] == "13"
		switch {
		case status == 0 && !valid:
			t.Fatalf("took %s with :protocol %q and versions %q", method, protocol, versions)
		case status == 0 && reason != "":
			t.Fatalf("took it, with the reason %q", reason)
		case status != 0 && valid:
			t.Fatalf("refused a valid extended CONNECT: %d %s", status, reason)
		case status != 0 && (status != http.StatusBadRequest || reason == ""):
			t.Fatalf("refused with %d %q", status, reason)
		}
		comp, header := negotiateServer(r.Header, &CompressionOptions{Mode: CompressionContextTakeover})
		if (comp == nil) != (header == "") {
			t.Fatalf("compression %v with the response %q", comp, header)
		}
	})
}
