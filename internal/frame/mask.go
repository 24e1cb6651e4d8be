package frame

import (
	"encoding/binary"
	"math/bits"
)

// Mask applies the masking key to b in place (section 5.3). pos is the
// offset within the frame payload at which b starts; Mask returns the offset
// after b, so a payload can be masked in pieces. Masking and unmasking are
// the same operation.
func Mask(key [4]byte, pos int, b []byte) int {
	// Rotate the key so that k[0] applies to b[0], then work a word at a time.
	k32 := bits.RotateLeft32(binary.LittleEndian.Uint32(key[:]), -8*(pos&3))
	k64 := uint64(k32)<<32 | uint64(k32)
	i := 0
	for ; len(b)-i >= 32; i += 32 {
		w := b[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(w[0:8], binary.LittleEndian.Uint64(w[0:8])^k64)
		binary.LittleEndian.PutUint64(w[8:16], binary.LittleEndian.Uint64(w[8:16])^k64)
		binary.LittleEndian.PutUint64(w[16:24], binary.LittleEndian.Uint64(w[16:24])^k64)
		binary.LittleEndian.PutUint64(w[24:32], binary.LittleEndian.Uint64(w[24:32])^k64)
	}
	for ; len(b)-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(b[i:i+8], binary.LittleEndian.Uint64(b[i:i+8])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(k32 >> (8 * (i & 3)))
	}
	return (pos + len(b)) & 3
}

// MaskCopy writes src masked with key into dst, which must be at least as
// long, in one pass: what copying and then Mask would do, without reading
// the bytes twice. src is left as it is. pos and the result are as in Mask.
func MaskCopy(key [4]byte, pos int, dst, src []byte) int {
	dst = dst[:len(src)]
	k32 := bits.RotateLeft32(binary.LittleEndian.Uint32(key[:]), -8*(pos&3))
	k64 := uint64(k32)<<32 | uint64(k32)
	i := 0
	for ; len(src)-i >= 32; i += 32 {
		s := src[i : i+32 : i+32]
		d := dst[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(d[0:8], binary.LittleEndian.Uint64(s[0:8])^k64)
		binary.LittleEndian.PutUint64(d[8:16], binary.LittleEndian.Uint64(s[8:16])^k64)
		binary.LittleEndian.PutUint64(d[16:24], binary.LittleEndian.Uint64(s[16:24])^k64)
		binary.LittleEndian.PutUint64(d[24:32], binary.LittleEndian.Uint64(s[24:32])^k64)
	}
	for ; len(src)-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:i+8], binary.LittleEndian.Uint64(src[i:i+8])^k64)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ byte(k32>>(8*(i&3)))
	}
	return (pos + len(src)) & 3
}
