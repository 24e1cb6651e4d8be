package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// Message kinds, as the plans and the peers' results name them.
const (
	kindText   = "text"
	kindBinary = "binary"
)

var kinds = []string{kindText, kindBinary}

// echoSizes are the message sizes every pair echoes: empty, the largest
// payload with a 7-bit length, the smallest with a 16-bit one, and larger
// messages up to one that needs a 64-bit length and many reads.
var echoSizes = []int{0, 125, 126, 64 << 10, 1 << 20, 16 << 20}

// Every size is echoed in both kinds by the plain session of every pair.
// The other sessions stop at sessionEchoSize, and the compressed session
// with context takeover adds one binary message of maxEchoSize: under the
// race detector a 16 MiB echo costs our side seconds, and the whole run
// must stay short.
const (
	maxEchoSize     = 16 << 20
	sessionEchoSize = 1 << 20
)

// Fragmented messages: fragmentedSize bytes sent in fragmentCount frames.
const (
	fragmentedSize = 10000
	fragmentCount  = 5
)

// readLimit is the read limit every endpoint gets: above the largest
// message.
const readLimit = 64 << 20

var textUnit = []byte("duplex é€😀 websocket\n")

// payload returns the bytes of a test message, the same as js/payload.mjs
// and py/websockets_peer.py compute: for binary, byte i is (i*31+7) mod
// 251; for text, textUnit repeated, cut to size at a character boundary
// and padded with '.', so that it is valid UTF-8 of exactly size bytes.
// Both compress well, so that compression is plainly visible on the wire.
// Payloads are made once and shared: they must not be modified.
func payload(kind string, size int) []byte {
	return cachedPayload(kind, size).bytes
}

// payloadHash returns the sha256 of payload(kind, size).
func payloadHash(kind string, size int) string {
	return cachedPayload(kind, size).hash
}

type payloadKey struct {
	kind string
	size int
}

type madePayload struct {
	bytes []byte
	hash  string
}

var payloads sync.Map // payloadKey -> func() madePayload

// cachedPayload makes each payload once: under the race detector a loop
// over 16 MiB costs about a second.
func cachedPayload(kind string, size int) madePayload {
	f, _ := payloads.LoadOrStore(payloadKey{kind, size}, sync.OnceValue(func() madePayload {
		b := makePayload(kind, size)
		return madePayload{b, hashOf(b)}
	}))
	return f.(func() madePayload)()
}

func makePayload(kind string, size int) []byte {
	var unit []byte
	if kind == kindBinary {
		unit = make([]byte, 251) // the period of (i*31+7) mod 251
		for i := range unit {
			unit[i] = byte((i*31 + 7) % 251)
		}
	} else {
		unit = textUnit
	}
	// One byte more than size, to see whether the cut splits a character.
	b := make([]byte, size+1)
	n := copy(b, unit)
	for n < len(b) {
		n += copy(b[n:], b[:n]) // doubling: memmove rather than a loop over every byte
	}
	if kind == kindText {
		cut := size
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		for i := cut; i < size; i++ {
			b[i] = '.'
		}
	}
	return b[:size:size]
}

// pieces splits b into n nearly equal pieces, as pieces in payload.mjs
// does; text pieces may split a character.
func pieces(b []byte, n int) [][]byte {
	step := (len(b) + n - 1) / n
	var out [][]byte
	for i := range n {
		out = append(out, b[min(i*step, len(b)):min((i+1)*step, len(b))])
	}
	return out
}

// writePieces writes b as one message through w, the message writer of
// some library, in n writes, and closes w.
func writePieces(w io.WriteCloser, b []byte, n int) error {
	for _, p := range pieces(b, n) {
		if _, err := w.Write(p); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func messageType(kind string) websocket.MessageType {
	if kind == kindBinary {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

func kindOf(typ websocket.MessageType) string {
	switch typ {
	case websocket.MessageText:
		return kindText
	case websocket.MessageBinary:
		return kindBinary
	}
	return fmt.Sprintf("type %d", typ)
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// TestPayload pins the generator to hashes that js/payload.mjs and
// py/websockets_peer.py produce, so that the three cannot drift apart.
func TestPayload(t *testing.T) {
	for _, tc := range []struct {
		kind string
		size int
		hash string
	}{
		{kindText, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{kindText, 11, "3f257411383cc3adf8fc196d1572df6bf2f6a0e9d5d9ca7cda5d52a6d4a2148e"},
		{kindText, 14, "960a5b43a574813136e33a1f6f07bb27eb7afeaddde5f19a37e9542b6a8f9cfc"},
		{kindText, 125, "980c28d8cfe70fca338ecfdbe419a21ae86f8d5f12b3f54d9c498422090cbc06"},
		{kindText, 126, "ea9411118d8ae5c8ae37e5c2e28dcc038d5e9b2500533f7d2f04e23b572119f0"},
		{kindBinary, 126, "26fc919aec95e7932d65131fb1cc39b72a3866ce9d9db615544f8853dedf003a"},
	} {
		b := payload(tc.kind, tc.size)
		if got := hashOf(b); got != tc.hash || len(b) != tc.size {
			t.Errorf("payload(%s, %d): %d bytes, sha256 %s; want %s", tc.kind, tc.size, len(b), got, tc.hash)
		}
		if tc.kind == kindText && !utf8.Valid(b) {
			t.Errorf("payload(text, %d) is not valid UTF-8", tc.size)
		}
	}
}
