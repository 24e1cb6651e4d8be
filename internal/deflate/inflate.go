package deflate

import (
	"encoding/binary"
	"math/bits"
)

// inflater is this package's DEFLATE decoder (RFC 1951). compress/flate's
// allocates Huffman tables for every dynamic block with codes longer than
// 9 bits, which is most of them; this one allocates nothing after it is
// made, and is pooled. It decodes into a window from which MessageReader
// copies out, stopping whenever the window is full, so that the output of
// a message is never held beyond the window, and before it asks its source
// for input that may be long in coming while output is waiting
// (source.mayWait), so that what has arrived is seen before a wait for the
// rest. Its checks follow compress/flate's, which the tests and fuzzers
// compare it with.
type inflater struct {
	src source
	in  []byte // unread input of the current chunk
	bb  uint64 // bit buffer, LSB first
	nb  uint   // bits in bb

	win  [winSize]byte // the last windowSize bytes or more, then new output
	rpos int           // next byte to hand out
	wpos int           // next byte to decode

	state     int
	final     bool // the current block is the last
	storedLen int  // bytes left in a stored block
	lit, dist *huffTable
	dynLit    huffTable
	dynDist   huffTable
	clTable   huffTable
	lengths   [numLitLen + 32]uint8
	err       error
	probe     [1]byte
}

const (
	// winSize leaves room for a full window behind 32 KiB of new output
	// plus one match.
	winSize   = 2*windowSize + maxMatch
	highWater = winSize - maxMatch

	stateHeader = iota
	stateStored
	stateHuffman
	stateDone
)

// reset starts a stream whose preceding output is dict (at most the last
// 32 KiB count).
func (f *inflater) reset(dict []byte) {
	dict = dict[max(0, len(dict)-windowSize):]
	f.wpos = copy(f.win[:], dict)
	f.rpos = f.wpos
	f.in, f.bb, f.nb = nil, 0, 0
	f.state, f.final, f.err = stateHeader, false, nil
}

// fill loads input bits until there are at least n, and reports whether it
// could (false at the end of the input, or a source error).
func (f *inflater) fill(n uint) bool {
	for f.nb < n {
		if len(f.in) == 0 {
			if f.in = f.src.next(); len(f.in) == 0 {
				return false
			}
		}
		if f.nb <= 32 && len(f.in) >= 4 {
			f.bb |= uint64(binary.LittleEndian.Uint32(f.in)) << f.nb
			f.in = f.in[4:]
			f.nb += 32
			continue
		}
		f.bb |= uint64(f.in[0]) << f.nb
		f.in = f.in[1:]
		f.nb += 8
	}
	return true
}

// getBits takes n bits; n ≤ 32. ok is false at the end of the input.
func (f *inflater) getBits(n uint) (v uint32, ok bool) {
	if !f.fill(n) {
		return 0, false
	}
	v = uint32(f.bb & (1<<n - 1))
	f.bb >>= n
	f.nb -= n
	return v, true
}

// fail records the error of a stream that cannot go on: the source's, or
// corrupt data.
func (f *inflater) fail() {
	if f.src.err != nil {
		f.err = f.src.err
	} else {
		f.err = ErrCorrupt
	}
	f.state = stateDone
}

// maxSymbolBits is the most input one Huffman step takes: a length code,
// its extra bits, a distance code and its extra bits (section 3.2.5).
const maxSymbolBits = 15 + 5 + 15 + 13

// pending reports whether decoded output waits to be handed out.
func (f *inflater) pending() bool { return f.rpos < f.wpos }

// decode decodes until the window is full, the stream ends or fails, or
// output is pending and the next step may have to ask the source for more
// input: the source may wait for the network, and what has arrived must be
// seen first (so that text is checked as it arrives, as RFC 6455 section
// 8.1 fails invalid UTF-8 at once).
func (f *inflater) decode() {
	for f.err == nil && f.wpos < highWater {
		switch f.state {
		case stateHeader:
			if f.pending() && f.src.mayWait() {
				return // once a block at most: the next header may need input
			}
			f.header()
		case stateStored:
			if !f.stored() {
				return
			}
		case stateHuffman:
			if !f.huffman() {
				return
			}
		case stateDone:
			return
		}
	}
}

// header reads a block header (section 3.2.3).
func (f *inflater) header() {
	if f.final {
		f.state = stateDone
		return
	}
	h, ok := f.getBits(3)
	if !ok {
		f.fail()
		return
	}
	f.final = h&1 == 1
	switch h >> 1 {
	case 0: // stored, section 3.2.4: skip to a byte boundary, LEN, NLEN
		f.bb >>= f.nb % 8
		f.nb -= f.nb % 8
		v, ok := f.getBits(32)
		if !ok || uint16(v) != ^uint16(v>>16) {
			f.fail()
			return
		}
		f.storedLen, f.state = int(v&0xffff), stateStored
	case 1:
		f.lit, f.dist, f.state = &fixedLitTable, &fixedDistTable, stateHuffman
	case 2:
		if f.readDynamic() {
			f.lit, f.dist, f.state = &f.dynLit, &f.dynDist, stateHuffman
		} else {
			f.fail()
		}
	default:
		f.fail()
	}
}

// stored copies a stored block's bytes. It returns false when it stops
// early to hand out output before it asks for more input.
func (f *inflater) stored() bool {
	n := min(f.storedLen, len(f.win)-f.wpos)
	for ; n > 0 && f.nb >= 8; n-- { // whole bytes already in the bit buffer
		f.win[f.wpos] = byte(f.bb)
		f.wpos++
		f.bb >>= 8
		f.nb -= 8
		f.storedLen--
	}
	for n > 0 {
		if len(f.in) == 0 {
			if f.pending() && f.src.mayWait() {
				return false // hand out what has arrived before waiting for more
			}
			if f.in = f.src.next(); len(f.in) == 0 {
				f.fail()
				return true
			}
		}
		c := copy(f.win[f.wpos:f.wpos+n], f.in)
		f.in = f.in[c:]
		f.wpos += c
		f.storedLen -= c
		n -= c
	}
	if f.storedLen == 0 {
		f.state = stateHeader
	}
	return true
}

// readDynamic reads the code tables of a dynamic block (section 3.2.7).
func (f *inflater) readDynamic() bool {
	v, ok := f.getBits(14)
	if !ok {
		return false
	}
	nlit, ndist, ncl := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlit > numLitLen || ndist > numDist {
		return false
	}
	var cl [numCodeLen]uint8
	for _, sym := range codeLengthOrder[:ncl] {
		l, ok := f.getBits(3)
		if !ok {
			return false
		}
		cl[sym] = uint8(l)
	}
	if !f.clTable.build(cl[:]) {
		return false
	}
	lengths := f.lengths[:nlit+ndist]
	for i := 0; i < len(lengths); {
		sym, ok := f.symbol(&f.clTable)
		if !ok {
			return false
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return false
			}
			x, ok := f.getBits(2)
			if !ok {
				return false
			}
			rep, val = int(x)+3, lengths[i-1]
		case 17:
			x, ok := f.getBits(3)
			if !ok {
				return false
			}
			rep = int(x) + 3
		default:
			x, ok := f.getBits(7)
			if !ok {
				return false
			}
			rep = int(x) + 11
		}
		if i+rep > len(lengths) {
			return false
		}
		for range rep {
			lengths[i] = val
			i++
		}
	}
	if lengths[endOfBlock] == 0 {
		return false
	}
	return f.dynLit.build(lengths[:nlit]) && f.dynDist.build(lengths[nlit:])
}

// huffman decodes the symbols of a block until its end or a full window.
// It returns false when it stops early to hand out output before it may
// have to ask for more input.
func (f *inflater) huffman() bool {
	lit := f.lit
	for f.wpos < highWater {
		if len(f.in) < maxSymbolBits/8 && f.nb+8*uint(len(f.in)) < maxSymbolBits && f.pending() && f.src.mayWait() {
			// The input at hand may end inside the next symbol, and more
			// may be long in coming: hand out what it decoded first.
			return false
		}
		// Fast path: a code of up to primaryBits bits from a full buffer.
		if f.nb < maxLitLenBits && f.nb <= 32 && len(f.in) >= 4 {
			f.bb |= uint64(binary.LittleEndian.Uint32(f.in)) << f.nb
			f.in = f.in[4:]
			f.nb += 32
		}
		var sym int
		if e := lit.primary[f.bb&(1<<primaryBits-1)]; e != 0 && uint(e&15) <= f.nb {
			f.bb >>= e & 15
			f.nb -= uint(e & 15)
			sym = int(e >> 4)
		} else {
			var ok bool
			if sym, ok = f.symbol(lit); !ok {
				f.fail()
				return true
			}
		}
		if sym < 256 {
			f.win[f.wpos] = byte(sym)
			f.wpos++
			continue
		}
		if sym == endOfBlock {
			f.state = stateHeader
			return true
		}
		sym -= 257
		if sym >= 29 {
			f.fail()
			return true
		}
		extra, ok := f.getBits(uint(lengthExtra[sym]))
		length := int(lengthBase[sym]) + int(extra)
		dsym, ok2 := f.symbol(f.dist)
		if !ok || !ok2 || dsym >= numDist {
			f.fail()
			return true
		}
		extra, ok = f.getBits(uint(distExtra[dsym]))
		dist := int(distBase[dsym]) + int(extra)
		if !ok || dist > f.wpos {
			f.fail() // a distance beyond the history
			return true
		}
		f.copyMatch(length, dist)
	}
	return true
}

// copyMatch appends length bytes from dist back; they may overlap.
func (f *inflater) copyMatch(length, dist int) {
	w := f.wpos
	from := w - dist
	if dist >= length {
		copy(f.win[w:w+length], f.win[from:from+length])
	} else {
		for end := w + length; w < end; {
			w += copy(f.win[w:end], f.win[from:w])
		}
	}
	f.wpos += length
}

// slide keeps the last window of output once it has all been handed out.
func (f *inflater) slide() {
	keep := f.wpos - windowSize
	copy(f.win[:], f.win[keep:f.wpos])
	f.wpos -= keep
	f.rpos -= keep
}

// symbol decodes one Huffman-coded symbol.
func (f *inflater) symbol(h *huffTable) (int, bool) {
	f.fill(maxLitLenBits) // fewer bits at the end are checked below
	e := h.primary[f.bb&(1<<primaryBits-1)]
	if n := uint(e & 15); e != 0 && n <= f.nb {
		f.bb >>= n
		f.nb -= n
		return int(e >> 4), true
	}
	// A long code: decode bit by bit, canonically (section 3.2.2).
	code, first, index := 0, 0, 0
	for l := uint(1); l <= maxLitLenBits && l <= f.nb; l++ {
		code |= int(f.bb>>(l-1)) & 1
		count := int(h.count[l])
		if code-count < first {
			f.bb >>= l
			f.nb -= l
			return int(h.symbol[index+code-first]), true
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, false
}

const primaryBits = 9

// huffTable decodes a canonical Huffman code: codes of up to primaryBits
// bits by one lookup (entry = symbol<<4 | length, 0 for none), longer ones
// from the counts.
type huffTable struct {
	primary [1 << primaryBits]uint16
	count   [maxLitLenBits + 1]uint16
	symbol  [numLitLen + 2]uint16
}

var fixedLitTable, fixedDistTable huffTable

func init() {
	fixedLitTable.build(fixedLitLen.length[:])
	fixedDistTable.build(fixedDist.length[:numDist])
}

// build makes the table of lengths. It refuses an over-subscribed code, and
// an incomplete one but for a lone code of length 1, as compress/flate and
// zlib do; an empty code builds and fails when used. The fixed distance
// code (30 codes of 5 bits) is built despite being incomplete.
func (h *huffTable) build(lengths []uint8) bool {
	clear(h.count[:])
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	left, maxLen := 1, 0
	for l := 1; l <= maxLitLenBits; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return false
		}
		if h.count[l] > 0 {
			maxLen = l
		}
	}
	if maxLen > 0 && left > 0 && !(maxLen == 1 && h.count[1] == 1) && h != &fixedDistTable {
		return false
	}
	var offs, next [maxLitLenBits + 2]int
	code := 0
	for l := 1; l <= maxLitLenBits; l++ {
		offs[l+1] = offs[l] + int(h.count[l])
		next[l] = code
		code = (code + int(h.count[l])) << 1
	}
	clear(h.primary[:])
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		h.symbol[offs[l]] = uint16(sym)
		offs[l]++
		c := next[l]
		next[l]++
		if l > primaryBits {
			continue
		}
		rev := int(bits.Reverse16(uint16(c)) >> (16 - l))
		for i := rev; i < len(h.primary); i += 1 << l {
			h.primary[i] = uint16(sym)<<4 | uint16(l)
		}
	}
	return true
}
