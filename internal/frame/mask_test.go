package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// maskReference is section 5.3 written out byte by byte.
func maskReference(key [4]byte, pos int, b []byte) {
	for i := range b {
		b[i] ^= key[(pos+i)%4]
	}
}

func randomKey(rng *rand.Rand) [4]byte {
	var key [4]byte
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	return key
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestMaskMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		for pos := 0; pos < 4; pos++ {
			key := randomKey(rng)
			data := randomBytes(rng, n)
			// Guard bytes on both sides catch writes outside b.
			buf := make([]byte, n+16)
			copy(buf[8:], data)
			got := buf[8 : 8+n]
			want := bytes.Clone(data)

			next := Mask(key, pos, got)
			maskReference(key, pos, want)
			if !bytes.Equal(got, want) {
				t.Fatalf("n %d, pos %d, key % x:\n got % x\nwant % x", n, pos, key, got, want)
			}
			if next != (pos+n)%4 {
				t.Fatalf("n %d, pos %d: returned %d, want %d", n, pos, next, (pos+n)%4)
			}
			for i, c := range append(buf[:8:8], buf[8+n:]...) {
				if c != 0 {
					t.Fatalf("n %d, pos %d: guard byte %d changed to %#x", n, pos, i, c)
				}
			}
		}
	}
}

// A payload masked in pieces, each starting at the position the previous
// call returned, equals the payload masked in one go.
func TestMaskInPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 2000; iter++ {
		n := rng.IntN(600)
		key := randomKey(rng)
		data := randomBytes(rng, n)
		want := bytes.Clone(data)
		maskReference(key, 0, want)

		got := bytes.Clone(data)
		pos := 0
		for rest := got; len(rest) > 0; {
			k := 1 + rng.IntN(min(len(rest), 80))
			pos = Mask(key, pos, rest[:k])
			rest = rest[k:]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("n %d, key % x: pieces differ from one-shot masking", n, key)
		}
		// Masking twice restores the payload.
		Mask(key, 0, got)
		if !bytes.Equal(got, data) {
			t.Fatalf("n %d: masking twice did not restore the payload", n)
		}
	}
}

// pos is only meaningful modulo 4, so an absolute payload offset works too.
func TestMaskAbsolutePosition(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for pos := 0; pos < 12; pos++ {
		got := []byte{0, 0, 0, 0, 0}
		Mask(key, pos, got)
		want := []byte{0, 0, 0, 0, 0}
		maskReference(key, pos, want)
		if !bytes.Equal(got, want) {
			t.Errorf("pos %d: got % x, want % x", pos, got, want)
		}
	}
}

// Section 5.7: "Hello" masked with 37 fa 21 3d.
func TestMaskRFCExample(t *testing.T) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b := []byte("Hello")
	if next := Mask(key, 0, b); next != 1 {
		t.Errorf("returned %d, want 1", next)
	}
	if want := []byte{0x7f, 0x9f, 0x4d, 0x51, 0x58}; !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
	Mask(key, 0, b)
	if string(b) != "Hello" {
		t.Fatalf("unmasked to %q", b)
	}
}

func BenchmarkMask(b *testing.B) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for _, size := range []int{16, 1024, 65536} {
		buf := make([]byte, size)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			pos := 0
			for b.Loop() {
				pos = Mask(key, pos, buf)
			}
		})
	}
}

// MaskCopy writes what Mask would make of a copy, within dst's first
// len(src) bytes, and leaves src as it was.
func TestMaskCopyMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 300; n++ {
		for pos := 0; pos < 4; pos++ {
			key := randomKey(rng)
			src := randomBytes(rng, n)
			orig := bytes.Clone(src)
			buf := make([]byte, n+16)
			dst := buf[8 : 8+n+4] // room past len(src) must stay untouched
			next := MaskCopy(key, pos, dst, src)
			want := bytes.Clone(src)
			maskReference(key, pos, want)
			if !bytes.Equal(buf[8:8+n], want) {
				t.Fatalf("n %d, pos %d, key % x:\n got % x\nwant % x", n, pos, key, buf[8:8+n], want)
			}
			if !bytes.Equal(src, orig) {
				t.Fatalf("n %d, pos %d: src changed", n, pos)
			}
			if next != (pos+n)%4 {
				t.Fatalf("n %d, pos %d: returned %d, want %d", n, pos, next, (pos+n)%4)
			}
			for i, c := range append(buf[:8:8], buf[8+n:]...) {
				if c != 0 {
					t.Fatalf("n %d, pos %d: guard byte %d changed to %#x", n, pos, i, c)
				}
			}
		}
	}
}

// BenchmarkMaskCopy against copy then Mask, the two passes it replaces.
func BenchmarkMaskCopy(b *testing.B) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	size := 64 << 10
	src, dst := make([]byte, size), make([]byte, size)
	b.Run("fused", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			MaskCopy(key, 0, dst, src)
		}
	})
	b.Run("copy+Mask", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			copy(dst, src)
			Mask(key, 0, dst)
		}
	})
}
