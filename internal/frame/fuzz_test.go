package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
	"unicode/utf8"
)

// Seeds for the fuzzers live in testdata/fuzz/<FuzzName>/ as well; the few
// added here keep each target meaningful when that directory is missing.

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x05})
	f.Add([]byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f})
	f.Add([]byte{0x82, 0x7e, 0x01, 0x00})
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0x7e, 0x00, 0x7d})
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := ParseHeader(data)
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("n %d with error %v", n, err)
			}
			if err != ErrNonMinimalLength && err != ErrLengthOverflow {
				t.Fatalf("unexpected error %v", err)
			}
		case n == 0:
			if len(data) >= MaxHeaderSize {
				t.Fatalf("wants more than %d bytes", len(data))
			}
		default:
			// Encodings are minimal, so there is exactly one per header.
			if enc := AppendHeader(nil, h); !bytes.Equal(enc, data[:n]) {
				t.Fatalf("re-encoded % x, parsed from % x", enc, data[:n])
			}
			if h.Size() != n || n > MaxHeaderSize {
				t.Fatalf("Size() %d, n %d", h.Size(), n)
			}
			if h.Length < 0 {
				t.Fatalf("negative length %d", h.Length)
			}
		}
		// A header that arrives in pieces: every prefix either asks for
		// more or gives the answer the whole input gives.
		for k := 0; k <= len(data) && k <= MaxHeaderSize; k++ {
			ph, pn, perr := ParseHeader(data[:k])
			if pn == 0 && perr == nil {
				if err == nil && n > 0 && k >= n {
					t.Fatalf("prefix of %d bytes wants more; whole input parsed %d bytes", k, n)
				}
				continue
			}
			if perr != err || pn != n || (err == nil && ph != h) {
				t.Fatalf("prefix of %d bytes: %+v, %d, %v; whole input: %+v, %d, %v", k, ph, pn, perr, h, n, err)
			}
		}
	})
}

// framesFrom parses a sequence of frames out of data delivered in chunks cut
// at cuts, skipping each payload, as a reader with a small buffer would. It
// returns the headers and the error that stopped parsing, if any. A payload
// running past the end of data is cut short.
func framesFrom(data []byte, cuts []int) ([]Header, error) {
	var (
		headers []Header
		buf     []byte
		skip    int64
		start   int
	)
	for _, end := range append(cuts, len(data)) {
		buf = append(buf, data[start:end]...)
		start = end
		for {
			if skip > 0 {
				d := min(skip, int64(len(buf)))
				buf, skip = buf[d:], skip-d
				if skip > 0 {
					break
				}
			}
			h, n, err := ParseHeader(buf)
			if err != nil {
				return headers, err
			}
			if n == 0 {
				break
			}
			headers = append(headers, h)
			buf, skip = buf[n:], h.Length
		}
	}
	return headers, nil
}

// fuzzCuts returns up to 8 sorted cut points in [0, n] chosen by seed.
func fuzzCuts(seed uint64, n int) []int {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	cuts := make([]int, rng.IntN(8))
	for i := range cuts {
		cuts[i] = rng.IntN(n + 1)
	}
	sort.Ints(cuts)
	return cuts
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("\x81\x05Hello"))
	f.Add([]byte("\x01\x03Hel\x89\x00\x80\x02lo"))
	f.Add([]byte("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"))
	f.Add([]byte("\xc1\x01x\x80\x01y"))
	f.Add([]byte("\x80\x00"))
	f.Add([]byte("\x01\x00\x01\x00"))
	f.Add([]byte("\x88\x02\x03\xe8"))
	f.Fuzz(func(t *testing.T, data []byte) {
		headers, parseErr := framesFrom(data, nil)
		// The same frames must come out however the input is cut.
		for seed := range uint64(4) {
			cuts := fuzzCuts(seed, len(data))
			got, err := framesFrom(data, cuts)
			if err != parseErr || len(got) != len(headers) {
				t.Fatalf("cut at %v: %d frames, err %v; whole: %d frames, err %v", cuts, len(got), err, len(headers), parseErr)
			}
			for i := range got {
				if got[i] != headers[i] {
					t.Fatalf("cut at %v: frame %d is %+v, whole input gave %+v", cuts, i, got[i], headers[i])
				}
			}
		}
		for _, allowedRSV := range []byte{0, RSV1} {
			for _, wantMasked := range []bool{true, false} {
				checkStream(t, headers, wantMasked, allowedRSV)
			}
		}
	})
}

// checkStream feeds headers to a Stream until Check fails and compares its
// answers with a model of section 5.4.
func checkStream(t *testing.T, headers []Header, wantMasked bool, allowedRSV byte) {
	t.Helper()
	var (
		s         Stream
		inMessage bool
		msgOp     Opcode
	)
	for i := range headers {
		h := headers[i]
		op, err := s.Check(&h, wantMasked, allowedRSV)
		if h != headers[i] {
			t.Fatalf("Check modified the header")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeProtocolError {
				t.Fatalf("frame %d: error %v is not a protocol error", i, err)
			}
			if s.InMessage() != inMessage {
				t.Fatalf("frame %d: failed Check changed InMessage", i)
			}
			return // the connection fails here
		}
		if !h.Opcode.Known() || h.Masked != wantMasked {
			t.Fatalf("frame %d: accepted %+v (wantMasked %v)", i, h, wantMasked)
		}
		if h.Opcode.IsControl() {
			if op != h.Opcode || h.RSV != 0 || !h.Fin || h.Length > MaxControlPayload {
				t.Fatalf("frame %d: accepted control %+v as %v", i, h, op)
			}
			continue
		}
		if op != OpText && op != OpBinary {
			t.Fatalf("frame %d: data frame %+v reported as %v", i, h, op)
		}
		switch {
		case h.Opcode == OpContinuation:
			if !inMessage || h.RSV != 0 || op != msgOp {
				t.Fatalf("frame %d: accepted continuation %+v as %v (in message %v of %v)", i, h, op, inMessage, msgOp)
			}
		default:
			if inMessage || h.RSV&^allowedRSV != 0 || op != h.Opcode {
				t.Fatalf("frame %d: accepted %+v as %v (in message %v)", i, h, op, inMessage)
			}
			msgOp = h.Opcode
		}
		inMessage = !h.Fin
		if s.InMessage() != inMessage {
			t.Fatalf("frame %d: InMessage %v, want %v", i, s.InMessage(), inMessage)
		}
	}
}

func FuzzClosePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03})
	f.Add([]byte("\x03\xe8"))
	f.Add([]byte("\x03\xe8bye"))
	f.Add([]byte("\x03\xed"))
	f.Add([]byte("\x03\xe8\xed\xa0\x80"))
	f.Fuzz(func(t *testing.T, data []byte) {
		code, reason, err := ParseClosePayload(data)
		switch {
		case len(data) == 0:
			if code != CodeNoStatus || err != nil {
				t.Fatalf("empty payload: %d, %v", code, err)
			}
			return
		case len(data) == 1:
			if err != ErrClosePayloadLength {
				t.Fatalf("1-byte payload: err %v", err)
			}
			return
		}
		wireCode := uint16(data[0])<<8 | uint16(data[1])
		switch {
		case !ValidCloseCode(wireCode):
			if err != ErrCloseCode {
				t.Fatalf("code %d: err %v, want %v", wireCode, err, ErrCloseCode)
			}
		case !utf8.Valid(data[2:]):
			if err != ErrCloseReasonUTF8 {
				t.Fatalf("reason %q: err %v, want %v", data[2:], err, ErrCloseReasonUTF8)
			}
		default:
			if err != nil || code != wireCode || !bytes.Equal(reason, data[2:]) {
				t.Fatalf("%q: got %d %q %v", data, code, reason, err)
			}
			if p := AppendClosePayload(nil, code, string(reason)); !bytes.Equal(p, data) {
				t.Fatalf("round trip: % x, want % x", p, data)
			}
		}
	})
}

func FuzzUTF8(f *testing.F) {
	for _, s := range []string{"", "Hello", "κόσμε", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\x80", "\xf0\x9f\x98"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := utf8.Valid(data)
		// The first byte that leaves no valid continuation, or len(data).
		// validPrefix only turns false, so a binary search finds it.
		firstBad := sort.Search(len(data), func(i int) bool { return !validPrefix(data[:i+1]) })

		var seed uint64
		if len(data) > 0 {
			seed = uint64(data[0])
		}
		cutsList := [][]int{nil, fuzzCuts(seed, len(data)), fuzzCuts(seed+256, len(data))}
		oneByOne := make([]int, 0, len(data))
		for i := 1; i < len(data); i++ {
			oneByOne = append(oneByOne, i)
		}
		cutsList = append(cutsList, oneByOne)

		for _, cuts := range cutsList {
			var v UTF8
			start := 0
			for _, end := range append(cuts, len(data)) {
				ok := v.Write(data[start:end])
				if ok != (end <= firstBad) {
					t.Fatalf("cut at %v: Write(%q) ending at %d = %v; first invalid byte at %d", cuts, data[start:end], end, ok, firstBad)
				}
				start = end
			}
			if v.Complete() != want {
				t.Fatalf("cut at %v: Complete() = %v, utf8.Valid = %v", cuts, v.Complete(), want)
			}
		}
	})
}
