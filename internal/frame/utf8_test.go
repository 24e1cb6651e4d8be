package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// utf8Cases are edge cases in the manner of Markus Kuhn's UTF-8 decoder
// stress test and Autobahn's section 6.
var utf8Cases = []string{
	"",
	"a",
	"Hello-µ@ßöäüàá-UTF-8!!",
	"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", // κόσμε
	// First and last code point of each sequence length.
	"\x00", "\x7f",
	"\xc2\x80", "\xdf\xbf",
	"\xe0\xa0\x80", "\xef\xbf\xbf",
	"\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
	// Around the surrogates and U+FFFD.
	"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xef\xbf\xbe",
	// Beyond U+10FFFF.
	"\xf4\x90\x80\x80", "\xf7\xbf\xbf\xbf",
	"\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80",
	// Overlong forms.
	"\xc0\x80", "\xc1\xbf", "\xc0\xaf",
	"\xe0\x80\x80", "\xe0\x80\xaf", "\xe0\x9f\xbf",
	"\xf0\x80\x80\x80", "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf",
	// UTF-16 surrogates, single and paired.
	"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf",
	"\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf",
	"\xed\xa0\x80\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf",
	// Bytes that never appear.
	"\xf5", "\xf8", "\xfe", "\xff", "\xfe\xfe\xff\xff", "a\xffb",
	"\xf5\x80\x80\x80", "\xff\x80\x80\x80",
	// Lone and surplus continuation bytes.
	"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80\xbf\x80\xbf", "a\x80", "\xc3\xa9\x80",
	"\xe1\xbd\xb9\x80", "\xf0\x9d\x84\x9e\x80",
	// Lead bytes followed by a space.
	"\xc0 ", "\xdf ", "\xe0 ", "\xef ", "\xf0 ", "\xf4 ", "\xf7 ",
	// Truncated sequences, alone and at the end of valid text.
	"\xc2", "\xdf", "\xe0", "\xe0\xa0", "\xe1\x80", "\xef\xbf",
	"\xf0", "\xf0\x90", "\xf0\x90\x80", "\xf4\x8f\xbf", "\xf3\xbf\xbf",
	"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf0\x90\x80",
	"ab\xe1", "ab\xf0\x9d",
	// Truncated sequences followed by more text.
	"\xc2a", "\xe1\x80a", "\xf0\x90\x80a", "\xe0\xa0\xc2\x80",
	"\xc2\xe1\xbd\xb9", "\xf0\x90\x80\xf0\x90\x80\x80",
	// Fail-fast cases from Autobahn 6.4.
	"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
	"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
	"\xed\xa0",
	// Long ASCII runs around invalid bytes exercise the fast path.
	strings.Repeat("a", 100) + "\xed\xa0\x80" + strings.Repeat("b", 100),
	strings.Repeat("a", 100) + "\xe2\x82\xac" + strings.Repeat("b", 100),
	strings.Repeat("\xe2\x82\xac", 40),
	strings.Repeat("\xf0\x9f\x98\x80", 30) + "\xf0\x9f\x98",
}

// validPrefix reports whether b can be extended to valid UTF-8: the answer
// Write must give after seeing b.
func validPrefix(b []byte) bool {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return len(b)-i < utf8.UTFMax && completable(b[i:])
		}
		i += size
	}
	return true
}

// completable reports whether appending continuation bytes to the short
// sequence tail can make it valid. Only the byte after a lead byte is
// constrained beyond 80..BF, so trying every value for that one suffices.
func completable(tail []byte) bool {
	seconds := []byte{0x80}
	if len(tail) == 1 {
		seconds = seconds[:0]
		for c := 0x80; c <= 0xbf; c++ {
			seconds = append(seconds, byte(c))
		}
	}
	for _, c := range seconds {
		candidate := append(bytes.Clone(tail), c)
		for len(candidate) <= utf8.UTFMax {
			if utf8.Valid(candidate) {
				return true
			}
			candidate = append(candidate, 0x80)
		}
	}
	return false
}

// feedPieces feeds data to a fresh validator cut at the given offsets and
// checks, after every piece, that Write answers what validPrefix says of
// the text so far; at the end Complete must agree with utf8.Valid.
func feedPieces(t *testing.T, data []byte, cuts []int) {
	t.Helper()
	var v UTF8
	start := 0
	for _, end := range append(cuts, len(data)) {
		got := v.Write(data[start:end])
		if want := validPrefix(data[:end]); got != want {
			t.Fatalf("%q cut at %v: Write(%q) after %d bytes = %v, want %v",
				data, cuts, data[start:end], end, got, want)
		}
		start = end
	}
	if got, want := v.Complete(), utf8.Valid(data); got != want {
		t.Fatalf("%q cut at %v: Complete() = %v, utf8.Valid = %v", data, cuts, got, want)
	}
}

func TestUTF8Whole(t *testing.T) {
	for _, s := range utf8Cases {
		feedPieces(t, []byte(s), nil)
	}
}

func TestUTF8ByteByByte(t *testing.T) {
	for _, s := range utf8Cases {
		cuts := make([]int, 0, len(s))
		for i := 1; i < len(s); i++ {
			cuts = append(cuts, i)
		}
		feedPieces(t, []byte(s), cuts)
	}
}

// Every way to cut each case into two and three pieces, empty pieces
// included.
func TestUTF8Splits(t *testing.T) {
	for _, s := range utf8Cases {
		if len(s) > 64 {
			continue // the long cases are covered by the random splits below
		}
		data := []byte(s)
		for i := 0; i <= len(data); i++ {
			feedPieces(t, data, []int{i})
			for j := i; j <= len(data); j++ {
				feedPieces(t, data, []int{i, j})
			}
		}
	}
}

func TestUTF8RandomSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range utf8Cases {
		for range 50 {
			feedPieces(t, []byte(s), randomCuts(rng, len(s)))
		}
	}
}

// Random text built from fragments that stress the validator, compared with
// the standard library.
func TestUTF8Random(t *testing.T) {
	fragments := []string{
		"a", "~", "\x00", "\x80", "\xbf", "\xc0", "\xc1", "\xc2", "\xdf", "\xe0", "\xe1",
		"\xed", "\xef", "\xf0", "\xf4", "\xf5", "\xff", "\x8f", "\x90", "\x9f", "\xa0",
		"é", "€", "😀", "\U0010FFFF", "\uFFFD", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		strings.Repeat("x", 20),
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, fragments[rng.IntN(len(fragments))]...)
		}
		feedPieces(t, b, randomCuts(rng, len(b)))
	}
}

// randomCuts returns sorted offsets in [0, n].
func randomCuts(rng *rand.Rand, n int) []int {
	var cuts []int
	for at := 0; at < n; {
		at += rng.IntN(5)
		cuts = append(cuts, min(at, n))
	}
	return cuts
}

// Autobahn 6.4.x: the validator must fail at the first byte that makes the
// text invalid, not when the sequence or the message ends.
func TestUTF8FailFast(t *testing.T) {
	tests := []struct {
		text   string
		failAt int // index of the first byte for which Write returns false
	}{
		{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64", 12},
		{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 12},
		{"\xed\xa0", 1},
		{"\xe0\x80", 1},
		{"\xf0\x80\x80\x80", 1},
		{"\xf0\x8f", 1},
		{"\xc0\x80", 0},
		{"\xc1", 0},
		{"\xf5", 0},
		{"abc\x80", 3},
		{"\xe1\x80a", 2},
		{"\xf0\x90\x80\xc2", 3},
	}
	for _, tt := range tests {
		var v UTF8
		for i := range len(tt.text) {
			got := v.Write([]byte{tt.text[i]})
			if want := i < tt.failAt; got != want {
				t.Fatalf("%q byte %d (%#x): Write = %v, want %v", tt.text, i, tt.text[i], got, want)
			}
		}
		if v.Complete() {
			t.Fatalf("%q: Complete after failure", tt.text)
		}
		// Nor may any single Write that contains the failing byte succeed.
		var whole UTF8
		if whole.Write([]byte(tt.text[:tt.failAt+1])) {
			t.Fatalf("%q: Write of the first %d bytes succeeded", tt.text, tt.failAt+1)
		}
	}
}

func TestUTF8StaysFailed(t *testing.T) {
	var v UTF8
	if v.Write([]byte("a\xffb")) {
		t.Fatal("accepted 0xff")
	}
	for _, p := range []string{"", "valid", "\x80", "\xc3\xa9"} {
		if v.Write([]byte(p)) || v.Complete() {
			t.Fatalf("Write(%q) after failure succeeded", p)
		}
	}
	v.Reset()
	if !v.Complete() || !v.Write([]byte("é")) || !v.Complete() {
		t.Fatal("Reset did not ready the validator for a new text")
	}
}

func TestUTF8CompleteAfterTruncation(t *testing.T) {
	var v UTF8
	if !v.Complete() {
		t.Fatal("zero value is not Complete")
	}
	if !v.Write([]byte("ab\xf0\x9f\x98")) || v.Complete() {
		t.Fatal("truncated sequence: want Write true, Complete false")
	}
	v.Reset()
	if !v.Write([]byte("\xe2")) || v.Complete() {
		t.Fatal("lone lead byte after Reset: want Write true, Complete false")
	}
	if !v.Write(nil) || v.Complete() {
		t.Fatal("empty Write changed the state")
	}
	if !v.Write([]byte("\x82\xac")) || !v.Complete() {
		t.Fatal("€ finished across Writes: want Complete")
	}
}

func BenchmarkUTF8(b *testing.B) {
	mixed := "Hello, κόσμε! Grüße, 世界 😀 — ascii text in between. "
	for _, kind := range []struct{ name, unit string }{{"ASCII", "websocket frames "}, {"mixed", mixed}} {
		for _, size := range []int{1 << 10, 64 << 10} {
			data := utf8Text(kind.unit, size)
			b.Run(fmt.Sprintf("%s/%d", kind.name, size), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				var v UTF8
				for b.Loop() {
					v.Reset()
					if !v.Write(data) || !v.Complete() {
						b.Fatal("invalid")
					}
				}
			})
		}
	}
}

// utf8Text repeats unit rune by rune up to exactly size bytes, padding with
// ASCII where a whole rune no longer fits.
func utf8Text(unit string, size int) []byte {
	b := make([]byte, 0, size)
	for len(b) < size {
		for _, r := range unit {
			if len(b)+utf8.RuneLen(r) > size {
				break
			}
			b = utf8.AppendRune(b, r)
		}
		if len(b)+utf8.UTFMax > size {
			for len(b) < size {
				b = append(b, '.')
			}
		}
	}
	return b
}
