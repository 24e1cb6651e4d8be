package deflate

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// This file writes DEFLATE blocks (RFC 1951 section 3.2): a bit writer,
// the length and distance code tables, Huffman code construction, and
// stored, fixed-Huffman and dynamic-Huffman blocks of LZ77 tokens.

const (
	numLitLen  = 286 // literal/length alphabet in use: 0..285 (section 3.2.5)
	numDist    = 30  // distance alphabet: 0..29
	numCodeLen = 19  // code length alphabet (section 3.2.7)
	endOfBlock = 256

	maxLitLenBits  = 15
	maxCodeLenBits = 7
)

// A token is a literal byte, or a match: the top bit set, length-3 in bits
// 16..23 and distance-1 in bits 0..15.
type token uint32

const matchFlag = 1 << 31

func literalToken(b byte) token         { return token(b) }
func matchToken(length, dist int) token { return matchFlag | token(length-3)<<16 | token(dist-1) }

// Length and distance code tables of section 3.2.5.
var (
	lengthBase  [29]uint16
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    [30]uint16
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	lengthCodes [256]uint8 // length-3 → length code - 257
	distCodes   [512]uint8 // distance-1 → code, as zlib's _dist_code: [0,256) direct, then by (d-1)>>7

	fixedLitLen huffCode // section 3.2.6
	fixedDist   huffCode
)

// huffCode is a canonical Huffman code: code[s] holds the bit-reversed code
// of symbol s, ready for an LSB-first bit writer, and length[s] its length.
type huffCode struct {
	code   [numLitLen + 2]uint16
	length [numLitLen + 2]uint8
}

func init() {
	base := 3
	for c := range lengthBase {
		lengthBase[c] = uint16(base)
		for range 1 << lengthExtra[c] {
			if base-3 < 256 {
				lengthCodes[base-3] = uint8(c)
			}
			base++
		}
	}
	lengthBase[28], lengthCodes[255] = 258, 28 // 258 has a code of its own
	base = 1
	for c := range distBase {
		distBase[c] = uint16(base)
		for range 1 << distExtra[c] {
			d := base - 1
			if d < 256 {
				distCodes[d] = uint8(c)
			} else {
				distCodes[256+d>>7] = uint8(c)
			}
			base++
		}
	}
	var lengths [288]uint8
	for s := range lengths {
		switch {
		case s < 144:
			lengths[s] = 8
		case s < 256:
			lengths[s] = 9
		case s < 280:
			lengths[s] = 7
		default:
			lengths[s] = 8
		}
	}
	fixedLitLen.assign(lengths[:])
	for s := range numDist {
		lengths[s] = 5
	}
	fixedDist.assign(lengths[:numDist])
}

func distCode(d int) uint8 { // d = distance-1
	if d < 256 {
		return distCodes[d]
	}
	return distCodes[256+d>>7]
}

// assign gives canonical codes to lengths (section 3.2.2).
func (h *huffCode) assign(lengths []uint8) {
	var count [maxLitLenBits + 1]uint16
	for _, l := range lengths {
		count[l]++
	}
	count[0] = 0
	var next [maxLitLenBits + 1]uint16
	code := uint16(0)
	for b := 1; b <= maxLitLenBits; b++ {
		code = (code + count[b-1]) << 1
		next[b] = code
	}
	for s, l := range lengths {
		h.length[s] = l
		if l == 0 {
			h.code[s] = 0
			continue
		}
		h.code[s] = bits.Reverse16(next[l]) >> (16 - l)
		next[l]++
	}
}

// bitWriter appends bits LSB first (section 3.1.1) to out.
type bitWriter struct {
	acc uint64
	n   uint
	out []byte
}

// writeBits writes the n low bits of v; n ≤ 32.
func (w *bitWriter) writeBits(v uint32, n uint) {
	w.acc |= uint64(v) << w.n
	w.n += n
	if w.n >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.acc))
		w.acc >>= 32
		w.n -= 32
	}
}

// flushBytes moves the complete bytes to out and keeps the rest (< 8 bits).
func (w *bitWriter) flushBytes() {
	for w.n >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
}

// alignByte pads with zero bits to a byte boundary and flushes.
func (w *bitWriter) alignByte() {
	w.flushBytes()
	if w.n > 0 {
		w.out = append(w.out, byte(w.acc))
		w.acc, w.n = 0, 0
	}
}

// huffScratch holds what building a dynamic block needs, to be reused.
type huffScratch struct {
	litLen, dist, codeLen huffCode
	lengths               [numLitLen + numDist]uint8
	rle                   [numLitLen + numDist]uint16 // symbol | extra<<8
	nrle                  int
	nlit, ndist, ncl      int // sizes of the dynamic header
	clFreq                [numCodeLen]int32
	sorted                [numLitLen]uint64
	freq                  [2 * numLitLen]int32
	parent                [2 * numLitLen]int16
	depth                 [2 * numLitLen]uint8
}

// codeLengthOrder is the order of section 3.2.7.
var codeLengthOrder = [numCodeLen]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// buildLengths computes Huffman code lengths of at most maxBits for freq
// into lengths. The code is always complete, as inflaters demand: with fewer
// than two symbols in use, one or two get length 1.
func (s *huffScratch) buildLengths(freq []int32, maxBits uint8, lengths []uint8) {
	clear(lengths)
	n := 0
	for sym, f := range freq {
		if f > 0 {
			s.sorted[n] = uint64(f)<<16 | uint64(sym)
			n++
		}
	}
	if n < 2 {
		// Pad with a symbol that is never sent.
		used := -1
		if n == 1 {
			used = int(s.sorted[0] & 0xffff)
			lengths[used] = 1
		}
		if used == 0 {
			lengths[1] = 1
		} else {
			lengths[0] = 1
		}
		if n == 0 {
			lengths[1] = 1
		}
		return
	}
	slices.Sort(s.sorted[:n])
	for shift := 0; ; shift++ {
		if s.huffman(n, shift, maxBits, lengths) {
			return
		}
	}
}

// huffman builds the tree of the n sorted leaves with frequencies scaled
// down by shift (which flattens the tree), with the two-queue method, and
// reports whether its depth fits maxBits.
func (s *huffScratch) huffman(n, shift int, maxBits uint8, lengths []uint8) bool {
	for i := range n {
		s.freq[i] = max(int32(s.sorted[i]>>16)>>shift, 1)
	}
	// Leaves are 0..n-1, internal nodes n..2n-2; both queues stay sorted.
	leaf, inner, next := 0, n, n
	pick := func() int {
		if leaf < n && (inner >= next || s.freq[leaf] <= s.freq[inner]) {
			leaf++
			return leaf - 1
		}
		inner++
		return inner - 1
	}
	for next < 2*n-1 {
		a, b := pick(), pick()
		s.freq[next] = s.freq[a] + s.freq[b]
		s.parent[a], s.parent[b] = int16(next), int16(next)
		next++
	}
	root := 2*n - 2
	s.depth[root] = 0
	for i := root - 1; i >= 0; i-- {
		s.depth[i] = s.depth[s.parent[i]] + 1
		if i < n && s.depth[i] > maxBits {
			return false
		}
	}
	for i := range n {
		lengths[s.sorted[i]&0xffff] = s.depth[i]
	}
	return true
}

// blockWriter turns a block of tokens into bits.
type blockWriter struct {
	bitWriter
	litFreq  [numLitLen]int32
	distFreq [numDist]int32
	huff     huffScratch
}

// extraBits is the cost of the extra bits of the block, the same whatever
// the Huffman codes.
func (w *blockWriter) extraBits() int {
	n := 0
	for c, f := range w.litFreq[257:] {
		n += int(f) * int(lengthExtra[c])
	}
	for c, f := range w.distFreq {
		n += int(f) * int(distExtra[c])
	}
	return n
}

func codeBits(freq []int32, h *huffCode) int {
	n := 0
	for s, f := range freq {
		n += int(f) * int(h.length[s])
	}
	return n
}

// writeBlock writes tokens, which encode raw, as the smallest of a stored,
// a fixed-Huffman and a dynamic-Huffman block (BFINAL is never set: RFC
// 7692 section 7.2.1 ends a message with a sync flush instead). Dynamic
// codes are not tried for blocks of fewer than minDynamicTokens tokens,
// whose header would rarely pay for itself. The frequencies are reset.
func (w *blockWriter) writeBlock(tokens []token, raw []byte) {
	const minDynamicTokens = 128
	w.litFreq[endOfBlock] = 1
	extra := w.extraBits()
	fixedCost := 3 + codeBits(w.litFreq[:], &fixedLitLen) + codeBits(w.distFreq[:], &fixedDist) + extra
	storedCost := 3 + 7 + 8*(len(raw)+5*max(1, (len(raw)+0xfffe)/0xffff))
	dynamicCost := 1 << 62
	if len(tokens) >= minDynamicTokens {
		dynamicCost = w.prepareDynamic() + extra
	}
	switch {
	case storedCost <= fixedCost && storedCost <= dynamicCost:
		w.writeStored(raw)
	case dynamicCost < fixedCost:
		w.writeDynamicHeader()
		w.writeTokens(tokens, &w.huff.litLen, &w.huff.dist)
	default:
		w.writeBits(1<<1, 3) // BFINAL=0, BTYPE=01
		w.writeTokens(tokens, &fixedLitLen, &fixedDist)
	}
	clear(w.litFreq[:])
	clear(w.distFreq[:])
}

func (w *blockWriter) writeStored(raw []byte) {
	for first := true; first || len(raw) > 0; first = false {
		n := min(len(raw), 0xffff)
		w.writeBits(0, 3) // BFINAL=0, BTYPE=00
		w.alignByte()
		w.out = binary.LittleEndian.AppendUint16(w.out, uint16(n))
		w.out = binary.LittleEndian.AppendUint16(w.out, ^uint16(n))
		w.out = append(w.out, raw[:n]...)
		raw = raw[n:]
	}
}

func (w *blockWriter) writeTokens(tokens []token, lit, dist *huffCode) {
	for _, t := range tokens {
		if t&matchFlag == 0 {
			w.writeBits(uint32(lit.code[t]), uint(lit.length[t]))
			continue
		}
		length := int(t>>16&0xff) + 3
		c := lengthCodes[length-3]
		w.writeBits(uint32(lit.code[257+int(c)])|uint32(length-int(lengthBase[c]))<<lit.length[257+int(c)],
			uint(lit.length[257+int(c)]+lengthExtra[c]))
		d := int(t & 0xffff)
		dc := distCode(d)
		w.writeBits(uint32(dist.code[dc])|uint32(d+1-int(distBase[dc]))<<dist.length[dc],
			uint(dist.length[dc]+distExtra[dc]))
	}
	w.writeBits(uint32(lit.code[endOfBlock]), uint(lit.length[endOfBlock]))
}

// prepareDynamic builds the codes of a dynamic block (section 3.2.7) from
// the frequencies and returns the block's size in bits without extra bits.
func (w *blockWriter) prepareDynamic() int {
	h := &w.huff
	h.buildLengths(w.litFreq[:], maxLitLenBits, h.lengths[:numLitLen])
	h.litLen.assign(h.lengths[:numLitLen])
	h.buildLengths(w.distFreq[:], maxLitLenBits, h.lengths[numLitLen:])
	h.dist.assign(h.lengths[numLitLen:])
	nlit, ndist := numLitLen, numDist
	for nlit > 257 && h.litLen.length[nlit-1] == 0 {
		nlit--
	}
	for ndist > 1 && h.dist.length[ndist-1] == 0 {
		ndist--
	}
	// The lengths are sent as one sequence, run-length encoded.
	copy(h.lengths[nlit:], h.dist.length[:ndist])
	h.runLengths(h.lengths[:nlit+ndist])
	h.buildLengths(h.clFreq[:], maxCodeLenBits, h.lengths[:numCodeLen])
	h.codeLen.assign(h.lengths[:numCodeLen])
	ncl := numCodeLen
	for ncl > 4 && h.codeLen.length[codeLengthOrder[ncl-1]] == 0 {
		ncl--
	}
	h.nlit, h.ndist, h.ncl = nlit, ndist, ncl
	cost := 3 + 5 + 5 + 4 + 3*ncl + codeBits(h.clFreq[:], &h.codeLen) +
		2*int(h.clFreq[16]) + 3*int(h.clFreq[17]) + 7*int(h.clFreq[18])
	return cost + codeBits(w.litFreq[:], &h.litLen) + codeBits(w.distFreq[:], &h.dist)
}

// runLengths encodes code lengths with the symbols 16 (repeat the previous
// 3-6 times), 17 (3-10 zeros) and 18 (11-138 zeros), and counts them.
func (h *huffScratch) runLengths(lengths []uint8) {
	clear(h.clFreq[:])
	h.nrle = 0
	emit := func(sym uint8, extra int) {
		h.rle[h.nrle] = uint16(sym) | uint16(extra)<<8
		h.nrle++
		h.clFreq[sym]++
	}
	for i := 0; i < len(lengths); {
		l := lengths[i]
		run := 1
		for i+run < len(lengths) && lengths[i+run] == l {
			run++
		}
		i += run
		if l == 0 {
			for run >= 11 {
				n := min(run, 138)
				emit(18, n-11)
				run -= n
			}
			if run >= 3 {
				emit(17, run-3)
				run = 0
			}
		} else {
			emit(l, 0)
			run--
			for run >= 3 {
				n := min(run, 6)
				emit(16, n-3)
				run -= n
			}
		}
		for ; run > 0; run-- {
			emit(l, 0)
		}
	}
}

// writeDynamicHeader writes the header of the block prepareDynamic built.
func (w *blockWriter) writeDynamicHeader() {
	h := &w.huff
	nlit, ndist, ncl := h.nlit, h.ndist, h.ncl
	w.writeBits(2<<1, 3) // BFINAL=0, BTYPE=10
	w.writeBits(uint32(nlit-257), 5)
	w.writeBits(uint32(ndist-1), 5)
	w.writeBits(uint32(ncl-4), 4)
	for _, sym := range codeLengthOrder[:ncl] {
		w.writeBits(uint32(h.codeLen.length[sym]), 3)
	}
	for _, r := range h.rle[:h.nrle] {
		sym, extra := r&0xff, uint32(r>>8)
		w.writeBits(uint32(h.codeLen.code[sym]), uint(h.codeLen.length[sym]))
		switch sym {
		case 16:
			w.writeBits(extra, 2)
		case 17:
			w.writeBits(extra, 3)
		case 18:
			w.writeBits(extra, 7)
		}
	}
}
