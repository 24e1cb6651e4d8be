package deflate

import (
	"encoding/binary"
	"math/bits"
)

// encoder is this package's DEFLATE compressor (RFC 1951), used for every
// message. The standard library's cannot serve two cases of RFC 7692:
//
//   - Windows below 15 bits (section 7.1.2): compress/flate always looks
//     back up to 32 KiB, so its distances may exceed 2^bits. Here every
//     distance is at most 2^bits.
//   - Context takeover with pooled state (section 7.2.3): a flate.Writer can
//     only be reset to the dictionary it was created with, so priming a
//     shared writer with each connection's history would allocate one per
//     message. Here any history is loaded on each message.
//
// It is a hash-chain LZ77 matcher (greedy, or lazy by one byte at higher
// levels) that emits stored, fixed-Huffman or dynamic-Huffman blocks,
// whichever is smallest. Its ratio and speed match compress/flate's at the
// same level, and starting a message costs nothing where flate.Writer.Reset
// clears 640 KiB of tables above level 1. An encoder is large (about
// 400 KiB) and pooled; it holds nothing of a connection between messages.
type encoder struct {
	blockWriter

	buf    [bufSize]byte         // history, then the message
	head   [hashSize]int32       // hash → last absolute position
	prev   [windowSize]int32     // absolute position & windowMask → previous one with its hash
	tokens [maxBlockTokens]token // the current block

	ntok       int
	base       int32 // absolute position of buf[0]
	valid      int32 // absolute position of the first usable byte: older entries are stale
	end        int   // bytes in buf
	pos        int   // next byte to encode
	hashed     int   // positions below have been inserted in the hash chains (or skipped)
	blockStart int   // first byte of the current block
	nextBase   int32 // base of the next message

	pending       bool // a match at pos awaits its lazy check
	pendingLength int
	pendingDist   int

	// Set per message.
	maxDist int  // 2^windowBits
	chain   int  // candidates to try per position; 0 for Huffman only
	lazy    bool // try the next position before taking a match
	nice    int  // stop searching at a match this long
}

const (
	windowSize     = 1 << MaxWindowBits
	windowMask     = windowSize - 1
	minMatch       = 4 // matches are found through hashes of 4 bytes
	maxMatch       = 258
	bufSize        = 2*windowSize + maxMatch
	hashBits       = 15
	hashSize       = 1 << hashBits
	maxBlockTokens = 1 << 14
	// maxBase bounds absolute positions well below the int32 limit; past it
	// the hash tables are cleared.
	maxBase = 1 << 30
)

// levelParams maps compress/flate levels to the search effort.
func (e *encoder) setLevel(level int) {
	e.lazy = false
	switch {
	case level == HuffmanOnly:
		e.chain, e.nice = 0, 0
	case level <= 1:
		e.chain, e.nice = 1, 32
	case level <= 3:
		e.chain, e.nice = 4<<(level-2), 64
	case level <= 6:
		e.chain, e.nice, e.lazy = 16<<(level-4), 128, true
	default:
		e.chain, e.nice, e.lazy = 256<<(level-7), maxMatch, true
	}
}

// start begins a message compressed with a window of 2^windowBits bytes,
// after hist, the last bytes of the previous messages (at most the window).
// The output is appended to dst.
func (e *encoder) start(dst, hist []byte, windowBits, level int) {
	if e.nextBase > maxBase || e.nextBase == 0 {
		// Position 0 is never used, so that zeroed entries are stale.
		clear(e.head[:])
		clear(e.prev[:])
		e.nextBase = 1
	}
	e.base, e.valid = e.nextBase, e.nextBase
	e.maxDist = 1 << windowBits
	e.setLevel(level)
	e.end = copy(e.buf[:], hist)
	e.pos, e.blockStart, e.hashed, e.ntok, e.pending = e.end, e.end, 0, 0, false
	e.bitWriter = bitWriter{out: dst}
	if e.chain > 0 {
		e.insertUpTo(e.end) // prime the hash chains with the history
	}
}

// write adds p to the message and encodes what it can: everything but the
// last maxMatch bytes, kept so that a match can extend into the next write.
func (e *encoder) write(p []byte) {
	for len(p) > 0 {
		if e.end == len(e.buf) {
			e.slide()
		}
		n := copy(e.buf[e.end:], p)
		e.end += n
		p = p[n:]
		e.encode(e.end-maxMatch, false)
	}
}

// finish encodes the rest, ends the last block and adds the empty stored
// block of a sync flush without its 00 00 FF FF (RFC 7692 section 7.2.1),
// then returns the output and the history for the next message.
func (e *encoder) finish() (out, hist []byte) {
	e.encode(e.end, true)
	e.flushBlock()
	e.writeBits(0, 3) // BFINAL=0, BTYPE=00: the empty stored block
	e.alignByte()
	e.nextBase = e.base + int32(e.end)
	out, hist = e.out, e.buf[:e.end]
	e.out = nil
	return out, hist
}

// slide drops all but the window before pos, after ending the block, whose
// bytes a stored block needs.
func (e *encoder) slide() {
	e.flushBlock()
	delta := e.pos - windowSize
	copy(e.buf[:], e.buf[delta:e.end])
	e.end -= delta
	e.pos -= delta
	e.blockStart = e.pos
	e.hashed = max(e.hashed-delta, 0)
	e.base += int32(delta)
}

func (e *encoder) flushBlock() {
	if e.ntok > 0 {
		e.writeBlock(e.tokens[:e.ntok], e.buf[e.blockStart:e.pos])
		e.ntok = 0
	}
	e.blockStart = e.pos
}

func hash4(u uint32) uint32 { return u * 0x1e35a7bd >> (32 - hashBits) }

// insertUpTo adds the positions before i that have 4 bytes to hash. It is
// the cost of priming a message with its history, so it is kept tight.
func (e *encoder) insertUpTo(i int) {
	last := min(i, e.end-minMatch+1)
	if e.hashed >= last {
		return
	}
	buf := e.buf[:last+minMatch-1]
	abs := e.base + int32(e.hashed)
	if e.chain > 1 {
		for j := e.hashed; j < last; j++ {
			h := hash4(binary.LittleEndian.Uint32(buf[j:]))
			e.prev[abs&windowMask] = e.head[h]
			e.head[h] = abs
			abs++
		}
	} else {
		for j := e.hashed; j < last; j++ {
			e.head[hash4(binary.LittleEndian.Uint32(buf[j:]))] = abs
			abs++
		}
	}
	e.hashed = last
}

// findMatch inserts position i and returns its longest match within the
// window, or a length below minMatch.
func (e *encoder) findMatch(i int) (length, dist int) {
	e.insertUpTo(i)
	h := hash4(binary.LittleEndian.Uint32(e.buf[i:]))
	abs := e.base + int32(i)
	cand := e.head[h]
	if e.chain > 1 {
		e.prev[abs&windowMask] = cand
	}
	e.head[h] = abs
	e.hashed = i + 1

	minAbs := max(abs-int32(e.maxDist), e.valid)
	limit := min(maxMatch, e.end-i)
	cur := e.buf[i : i+limit]
	best := minMatch - 1
	for n := e.chain; cand >= minAbs && n > 0; n-- {
		c := int(cand - e.base)
		if e.buf[c+best] == cur[best] {
			if l := matchLen(e.buf[c:c+limit], cur); l > best {
				best, dist = l, int(abs-cand)
				if l >= e.nice || l == limit {
					break
				}
			}
		}
		if n == 1 {
			break
		}
		next := e.prev[cand&windowMask]
		if next >= cand {
			break // overwritten by a newer position: the chain ends
		}
		cand = next
	}
	return best, dist
}

// matchLen returns the length of the common prefix of a and b, len(a) ≤ len(b).
func matchLen(a, b []byte) int {
	n := 0
	for len(a)-n >= 8 {
		x := binary.LittleEndian.Uint64(a[n:]) ^ binary.LittleEndian.Uint64(b[n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		n += 8
	}
	for n < len(a) && a[n] == b[n] {
		n++
	}
	return n
}

// encode turns the bytes from pos up to limit into tokens. Unless final,
// every decision sees maxMatch bytes ahead, so that the output does not
// depend on how the message was split into writes: a lazy decision that
// needs more input is suspended in pending.
func (e *encoder) encode(limit int, final bool) {
	i := e.pos
	for i < limit {
		if e.ntok >= maxBlockTokens-1 {
			e.pos = i
			e.flushBlock()
		}
		if e.chain == 0 || e.end-i < minMatch {
			e.literal(e.buf[i])
			i++
			continue
		}
		var length, dist int
		if e.pending {
			length, dist, e.pending = e.pendingLength, e.pendingDist, false
		} else {
			length, dist = e.findMatch(i)
		}
		if e.lazy && length >= minMatch {
			// One byte later may start a longer match (RFC 1951 section 4).
			for length < e.nice && e.end-(i+1) >= minMatch {
				if !final && e.end-(i+1) < maxMatch {
					e.pending, e.pendingLength, e.pendingDist = true, length, dist
					e.pos = i
					return
				}
				l2, d2 := e.findMatch(i + 1)
				if l2 <= length {
					break
				}
				e.literal(e.buf[i])
				i++
				length, dist = l2, d2
				if e.ntok >= maxBlockTokens-1 {
					e.pos = i
					e.flushBlock()
				}
			}
		}
		if length < minMatch {
			e.literal(e.buf[i])
			i++
			continue
		}
		e.tokens[e.ntok] = matchToken(length, dist)
		e.ntok++
		e.litFreq[257+int(lengthCodes[length-3])]++
		e.distFreq[distCode(dist-1)]++
		i += length
		if e.chain == 1 {
			e.hashed = i // the fastest level does not index inside matches
		}
	}
	e.pos = max(e.pos, i)
}

func (e *encoder) literal(b byte) {
	e.tokens[e.ntok] = literalToken(b)
	e.ntok++
	e.litFreq[b]++
}
