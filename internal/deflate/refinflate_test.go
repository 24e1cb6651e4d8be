package deflate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// refInflate is an independent, slow DEFLATE decoder (after Mark Adler's
// puff.c) for tests. It decodes data, a raw stream without BFINAL, to the
// end of its input, which must fall on a block boundary, with hist as the
// bytes before it. It reports the longest back-reference distance met and
// fails on a distance beyond the data decoded so far, history included.
func refInflate(hist, data []byte) (out []byte, maxDist int, err error) {
	r := &refReader{in: data, out: append([]byte(nil), hist...)}
	defer func() {
		if e := recover(); e != nil {
			err = fmt.Errorf("refInflate: %v", e)
		}
	}()
	for r.pos < len(r.in) || r.nbit >= 8 {
		final := r.bits(1)
		switch r.bits(2) {
		case 0:
			r.stored()
		case 1:
			r.codes(&refFixedLit, &refFixedDist)
		case 2:
			lit, dist := r.dynamic()
			r.codes(lit, dist)
		default:
			panic("block type 3")
		}
		if final == 1 {
			break
		}
		// Leftover bits after the last block are padding.
		if r.pos == len(r.in) && r.nbit < 8 {
			if r.bitbuf&(1<<r.nbit-1) != 0 {
				panic("nonzero padding")
			}
			break
		}
	}
	return r.out[len(hist):], r.maxDist, nil
}

type refReader struct {
	in      []byte
	pos     int
	bitbuf  uint32
	nbit    uint
	out     []byte
	maxDist int
}

func (r *refReader) bits(n uint) int {
	for r.nbit < n {
		if r.pos >= len(r.in) {
			panic(errors.New("out of input"))
		}
		r.bitbuf |= uint32(r.in[r.pos]) << r.nbit
		r.pos++
		r.nbit += 8
	}
	v := int(r.bitbuf & (1<<n - 1))
	r.bitbuf >>= n
	r.nbit -= n
	return v
}

func (r *refReader) stored() {
	r.bitbuf, r.nbit = 0, 0 // to a byte boundary
	if r.pos+4 > len(r.in) {
		panic("short stored header")
	}
	n := int(r.in[r.pos]) | int(r.in[r.pos+1])<<8
	if ^n&0xffff != int(r.in[r.pos+2])|int(r.in[r.pos+3])<<8 {
		panic("stored length mismatch")
	}
	r.pos += 4
	if r.pos+n > len(r.in) {
		panic("short stored block")
	}
	r.out = append(r.out, r.in[r.pos:r.pos+n]...)
	r.pos += n
}

type refHuff struct {
	count  [16]int
	symbol []int
}

func newRefHuff(lengths []int, complete bool) *refHuff {
	h := &refHuff{symbol: make([]int, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	// Check that the code is not over-subscribed and is complete (or a
	// single code), as zlib demands.
	left := 1
	for l := 1; l <= 15; l++ {
		left <<= 1
		left -= h.count[l]
		if left < 0 {
			panic("over-subscribed code")
		}
	}
	if complete && left > 0 && len(lengths)-h.count[0] != 1 {
		panic(fmt.Sprintf("incomplete code: %v", lengths))
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h
}

func (r *refReader) decode(h *refHuff) int {
	code, first, index := 0, 0, 0
	for l := 1; l <= 15; l++ {
		code |= r.bits(1)
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+code-first]
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	panic("bad code")
}

var refFixedLit, refFixedDist = func() (refHuff, refHuff) {
	var l [288]int
	for s := range l {
		switch {
		case s < 144:
			l[s] = 8
		case s < 256:
			l[s] = 9
		case s < 280:
			l[s] = 7
		default:
			l[s] = 8
		}
	}
	d := make([]int, 30)
	for i := range d {
		d[i] = 5
	}
	return *newRefHuff(l[:], true), *newRefHuff(d, false)
}()

var (
	refLenBase   = []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	refLenExtra  = []uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	refDistBase  = []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	refDistExtra = []uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

func (r *refReader) codes(lit, dist *refHuff) {
	for {
		sym := r.decode(lit)
		switch {
		case sym < 256:
			r.out = append(r.out, byte(sym))
		case sym == 256:
			return
		default:
			sym -= 257
			if sym >= 29 {
				panic("bad length symbol")
			}
			length := refLenBase[sym] + r.bits(refLenExtra[sym])
			ds := r.decode(dist)
			if ds >= 30 {
				panic("bad distance symbol")
			}
			d := refDistBase[ds] + r.bits(refDistExtra[ds])
			if d > len(r.out) {
				panic(fmt.Sprintf("distance %d beyond the %d bytes decoded", d, len(r.out)))
			}
			r.maxDist = max(r.maxDist, d)
			for range length {
				r.out = append(r.out, r.out[len(r.out)-d])
			}
		}
	}
}

func (r *refReader) dynamic() (*refHuff, *refHuff) {
	nlen, ndist, ncode := r.bits(5)+257, r.bits(5)+1, r.bits(4)+4
	if nlen > 286 || ndist > 30 {
		panic("bad counts")
	}
	order := []int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	lengths := make([]int, 19)
	for i := range ncode {
		lengths[order[i]] = r.bits(3)
	}
	lencode := newRefHuff(lengths, true)
	lengths = make([]int, 0, nlen+ndist)
	for len(lengths) < nlen+ndist {
		sym := r.decode(lencode)
		switch {
		case sym < 16:
			lengths = append(lengths, sym)
		case sym == 16:
			if len(lengths) == 0 {
				panic("repeat with no first length")
			}
			prev := lengths[len(lengths)-1]
			for range 3 + r.bits(2) {
				lengths = append(lengths, prev)
			}
		case sym == 17:
			lengths = append(lengths, make([]int, 3+r.bits(3))...)
		default:
			lengths = append(lengths, make([]int, 11+r.bits(7))...)
		}
	}
	if len(lengths) > nlen+ndist {
		panic("too many lengths")
	}
	if lengths[256] == 0 {
		panic("no end-of-block code")
	}
	return newRefHuff(lengths[:nlen], true), newRefHuff(lengths[nlen:], true)
}

// Test data.

// randomBytes returns n incompressible bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var words = strings.Fields(`the quick brown fox jumps over lazy dog websocket frame message
	compression window history deflate server client "user": "id": {"type":"chat", "text":
	42, true, false, null, channel lobby presence join leave publish subscribe offset epoch`)

// textBytes returns n bytes of compressible, JSON-like text.
func textBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:n]
}
