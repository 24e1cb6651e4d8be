package conformance

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The raw peer's permessage-deflate (RFC 7692), written from the RFCs and
// compress/flate alone: it shares no code with internal/deflate, so that a
// misreading there cannot cancel itself out here.
//
// compress/flate always compresses with a 32 KiB window, which a peer may
// only receive when the agreed window of that direction is 15 bits. Below
// that the raw peer compresses with boundedDeflate, a small LZ77 encoder of
// its own that never refers further back than the window. Either way it
// checks what our endpoint compresses twice: compress/flate must inflate it
// (primed with the history when context takeover is on), and auditInflate,
// an inflater of its own, must find no back-reference further than the
// agreed window (section 7.1.2) nor, without context takeover, one into an
// earlier message (section 7.1.1).

// deflateParams is a permessage-deflate agreement as the raw peer reads it.
type deflateParams struct {
	serverNoContext, clientNoContext bool
	serverBits, clientBits           int
}

// parseDeflate reads one permessage-deflate element, "permessage-deflate;
// name[=value]; ...", as this suite writes them: the raw peer parses only
// what it sends or asserts exactly. An absent window is 15 bits; a
// client_max_window_bits without a value (an offer's) leaves 15.
func parseDeflate(element string) (deflateParams, error) {
	p := deflateParams{serverBits: 15, clientBits: 15}
	parts := strings.Split(element, ";")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), "permessage-deflate") {
		return p, fmt.Errorf("%q is not permessage-deflate", element)
	}
	for _, part := range parts[1:] {
		name, value, hasValue := strings.Cut(strings.TrimSpace(part), "=")
		bits := 15
		if hasValue {
			n, err := strconv.Atoi(strings.Trim(value, `"`))
			if err != nil || n < 8 || n > 15 {
				return p, fmt.Errorf("%s=%s", name, value)
			}
			bits = n
		}
		switch strings.ToLower(name) {
		case "server_no_context_takeover":
			p.serverNoContext = true
		case "client_no_context_takeover":
			p.clientNoContext = true
		case "server_max_window_bits":
			p.serverBits = bits
		case "client_max_window_bits":
			p.clientBits = bits
		default:
			return p, fmt.Errorf("unknown parameter %q", name)
		}
	}
	return p, nil
}

// agreedDeflate is what an offer and the response that accepted it bind both
// ends to. The response rules; the offer adds the client's own commitments,
// which hold even when the response leaves them out: client_no_context_takeover
// (section 7.1.1.2) and a client_max_window_bits value (section 7.1.2.2).
func agreedDeflate(offer, response string) (deflateParams, error) {
	p, err := parseDeflate(response)
	if err != nil || offer == "" {
		return p, err
	}
	o, err := parseDeflate(offer)
	if err != nil {
		return p, err
	}
	p.clientNoContext = p.clientNoContext || o.clientNoContext
	p.clientBits = min(p.clientBits, o.clientBits)
	return p, nil
}

// rawDeflate is the raw peer's end of an agreed permessage-deflate.
type rawDeflate struct {
	params deflateParams
	out    deflateSender   // the raw peer's messages
	in     deflateReceiver // our endpoint's messages
}

// newRawDeflate sets up the raw peer for params; ourRole is the library's.
func newRawDeflate(params deflateParams, ourRole role) *rawDeflate {
	server := deflateDirection{bits: params.serverBits, takeover: !params.serverNoContext}
	client := deflateDirection{bits: params.clientBits, takeover: !params.clientNoContext}
	d := &rawDeflate{params: params}
	if ourRole == roleServer {
		d.out.deflateDirection, d.in.deflateDirection = client, server
	} else {
		d.out.deflateDirection, d.in.deflateDirection = server, client
	}
	return d
}

// deflateDirection is the window and context takeover of one direction.
type deflateDirection struct {
	bits     int
	takeover bool
}

func (d deflateDirection) window() int { return 1 << d.bits }

// deflateSender compresses the raw peer's messages (section 7.2.1).
type deflateSender struct {
	deflateDirection
	level   int           // compress/flate's, at 15 bits; 0: BestSpeed, which is fastest under -race
	bounded bool          // boundedDeflate at 15 bits too; set before the first message
	fw      *flate.Writer // at 15 bits
	buf     bytes.Buffer
	hist    []byte // boundedDeflate's, with context takeover
}

// compress returns the compressed payload of msg, its 00 00 FF FF removed.
func (s *deflateSender) compress(msg []byte) []byte {
	if s.bits < 15 || s.bounded {
		out := boundedDeflate(s.hist, msg, s.window())
		if s.takeover {
			s.hist = lastBytes(append(s.hist, msg...), s.window())
		}
		return out
	}
	s.buf.Reset()
	switch {
	case s.fw == nil && s.level == 0:
		s.fw = bestSpeedWriters.Get().(*flate.Writer)
		s.fw.Reset(&s.buf)
	case s.fw == nil:
		s.fw, _ = flate.NewWriter(&s.buf, s.level)
	case !s.takeover:
		s.fw.Reset(&s.buf) // a fresh compressor for every message
	}
	s.fw.Write(msg)
	s.fw.Flush()
	b := s.buf.Bytes()
	if !bytes.HasSuffix(b, syncTail) {
		panic("compress/flate's Flush did not end in 00 00 ff ff")
	}
	return bytes.Clone(b[:len(b)-len(syncTail)])
}

// release returns the sender's compressor to bestSpeedWriters, when it has
// one from there.
func (s *deflateSender) release() {
	if s.fw != nil && s.level == 0 {
		bestSpeedWriters.Put(s.fw)
	}
	s.fw = nil
}

// bestSpeedWriters holds the compressors of ended runs: making one costs
// milliseconds under -race, resetting one nothing.
var bestSpeedWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
	return w
}}

// syncTail ends a sync flush: the LEN and NLEN of an empty stored block,
// which a sender removes and a receiver restores (section 7.2.1, 7.2.2).
var syncTail = []byte{0x00, 0x00, 0xff, 0xff}

// finalEmptyBlock is an empty stored block with BFINAL set, which the raw
// peer appends after syncTail so that compress/flate sees the end of the
// stream.
var finalEmptyBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// deflateReceiver inflates our endpoint's messages (section 7.2.2).
type deflateReceiver struct {
	deflateDirection
	hist []byte // the last 32 KiB inflated, with context takeover
}

// inflate inflates a compressed message of our endpoint and checks its
// back-references against the agreement.
func (r *deflateReceiver) inflate(payload []byte) ([]byte, error) {
	var hist []byte
	if r.takeover {
		hist = r.hist
	}
	in := append(append(append([]byte(nil), payload...), syncTail...), finalEmptyBlock...)
	msg, err := io.ReadAll(flate.NewReaderDict(bytes.NewReader(in), hist))
	if err != nil {
		// Without context takeover an empty dictionary rejects a
		// reference to an earlier message.
		return nil, fmt.Errorf("compress/flate cannot inflate it: %w", err)
	}
	if r.bits < 15 {
		audited, maxDist, err := auditInflate(lastBytes(hist, r.window()), in)
		switch {
		case err != nil:
			return nil, fmt.Errorf("within a window of %d bytes: %w", r.window(), err)
		case !bytes.Equal(audited, msg):
			return nil, errors.New("auditInflate and compress/flate disagree")
		case maxDist > r.window():
			return nil, fmt.Errorf("a back-reference reaches %d bytes back, beyond the window of %d", maxDist, r.window())
		}
	}
	if r.takeover {
		r.hist = lastBytes(append(r.hist, msg...), 32<<10)
	}
	return msg, nil
}

// lastBytes returns the last n bytes of b, or b.
func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte(nil), b[len(b)-n:]...)
	}
	return b
}

// boundedDeflate compresses msg in one fixed-Huffman block (RFC 1951 section
// 3.2.6) followed by a sync flush without its 00 00 FF FF. Its greedy LZ77
// refers back at most window bytes, into hist (the previous messages, with
// context takeover) as well as msg: it can send what compress/flate cannot,
// a message for a window below 32 KiB.
func boundedDeflate(hist, msg []byte, window int) []byte {
	hist = lastBytes(hist, window)
	data := append(append([]byte(nil), hist...), msg...)
	// Hash chains of the positions of 3-byte strings, stored plus one so
	// that the zero value is the end of a chain.
	const hashBits = 12
	head := make([]int32, 1<<hashBits)
	prev := make([]int32, len(data))
	hash := func(i int) int {
		return int((uint32(data[i])<<16 | uint32(data[i+1])<<8 | uint32(data[i+2])) * 2654435761 >> (32 - hashBits))
	}
	insert := func(i int) {
		if i+3 <= len(data) {
			h := hash(i)
			prev[i], head[h] = head[h], int32(i+1)
		}
	}
	for i := range hist {
		insert(i)
	}
	var w bitWriter
	w.write(0, 1) // BFINAL
	w.write(1, 2) // BTYPE 01: fixed Huffman codes
	for i := len(hist); i < len(data); {
		bestLen, bestDist := 0, 0
		if i+3 <= len(data) {
			for j, tries := int(head[hash(i)])-1, 0; j >= 0 && i-j <= window && tries < 16 && bestLen < 258; j, tries = int(prev[j])-1, tries+1 {
				n := 0
				for n < 258 && i+n < len(data) && data[j+n] == data[i+n] {
					n++
				}
				if n > bestLen {
					bestLen, bestDist = n, i-j
				}
			}
		}
		if bestLen < 3 {
			writeFixedLiteral(&w, int(data[i]))
			insert(i)
			i++
			continue
		}
		writeFixedMatch(&w, bestLen, bestDist)
		for k := range bestLen {
			insert(i + k)
		}
		i += bestLen
	}
	writeFixedLiteral(&w, 256) // end of block
	// The sync flush: an empty stored block, BFINAL 0 and BTYPE 00, padded
	// to a byte; its LEN and NLEN are the 00 00 FF FF left out.
	w.write(0, 3)
	return w.flush()
}

// bitWriter packs bits least significant first (RFC 1951 section 3.1.1).
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) write(v int, n uint) {
	w.acc |= uint64(v) << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// writeCode writes a Huffman code, which goes most significant bit first.
func (w *bitWriter) writeCode(code int, n uint) {
	rev := 0
	for range n {
		rev = rev<<1 | code&1
		code >>= 1
	}
	w.write(rev, n)
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.out = append(w.out, byte(w.acc))
	}
	return w.out
}

// writeFixedLiteral writes a literal/length symbol in the fixed code.
func writeFixedLiteral(w *bitWriter, sym int) {
	switch {
	case sym < 144:
		w.writeCode(0x30+sym, 8)
	case sym < 256:
		w.writeCode(0x190+sym-144, 9)
	case sym < 280:
		w.writeCode(sym-256, 7)
	default:
		w.writeCode(0xc0+sym-280, 8)
	}
}

// The length and distance codes of RFC 1951 section 3.2.5.
var (
	lengthBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

func writeFixedMatch(w *bitWriter, length, dist int) {
	l := len(lengthBase) - 1
	for lengthBase[l] > length {
		l--
	}
	writeFixedLiteral(w, 257+l)
	w.write(length-lengthBase[l], lengthExtra[l])
	d := len(distBase) - 1
	for distBase[d] > dist {
		d--
	}
	w.writeCode(d, 5)
	w.write(dist-distBase[d], distExtra[d])
}

// auditInflate inflates a DEFLATE stream (RFC 1951) that may refer back into
// hist, until a final block or the end of the input at a block boundary. It
// returns what the stream adds after hist and the longest distance of its
// back-references; a reference before the start of hist is an error.
func auditInflate(hist, in []byte) (out []byte, maxDist int, err error) {
	r := &bitReader{in: in}
	buf := append([]byte(nil), hist...)
	for {
		if r.pos == len(r.in) && r.nacc < 8 {
			return buf[len(hist):], maxDist, nil
		}
		final, err := r.bits(1)
		if err != nil {
			return nil, 0, err
		}
		typ, err := r.bits(2)
		if err != nil {
			return nil, 0, err
		}
		switch typ {
		case 0:
			buf, err = r.stored(buf)
		case 1:
			buf, err = r.codes(buf, fixedLiterals, fixedDistances, &maxDist)
		case 2:
			var lit, dist *huffman
			if lit, dist, err = r.dynamicTables(); err == nil {
				buf, err = r.codes(buf, lit, dist, &maxDist)
			}
		default:
			err = errors.New("block type 3")
		}
		if err != nil {
			return nil, 0, err
		}
		if final == 1 {
			return buf[len(hist):], maxDist, nil
		}
	}
}

var errStreamEnds = errors.New("the DEFLATE stream ends inside a block")

// bitReader reads bits least significant first.
type bitReader struct {
	in   []byte
	pos  int
	acc  uint64
	nacc uint
}

func (r *bitReader) bits(n uint) (int, error) {
	for r.nacc < n {
		if r.pos == len(r.in) {
			return 0, errStreamEnds
		}
		r.acc |= uint64(r.in[r.pos]) << r.nacc
		r.pos++
		r.nacc += 8
	}
	v := int(r.acc & (1<<n - 1))
	r.acc >>= n
	r.nacc -= n
	return v, nil
}

// stored copies a stored block (section 3.2.4).
func (r *bitReader) stored(buf []byte) ([]byte, error) {
	r.acc >>= r.nacc % 8
	r.nacc -= r.nacc % 8
	n, err := r.bits(16)
	if err != nil {
		return nil, err
	}
	nn, err := r.bits(16)
	if err != nil {
		return nil, err
	}
	if n != ^nn&0xffff {
		return nil, fmt.Errorf("stored block LEN %#x NLEN %#x", n, nn)
	}
	for range n {
		b, err := r.bits(8)
		if err != nil {
			return nil, err
		}
		buf = append(buf, byte(b))
	}
	return buf, nil
}

// huffman is a canonical Huffman code (section 3.2.2): how many codes of
// each length, and the symbols in code order.
type huffman struct {
	count  [16]int
	symbol []int
}

func newHuffman(lengths []int) (*huffman, error) {
	h := &huffman{symbol: make([]int, 0, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - h.count[l]
		if left < 0 {
			return nil, errors.New("over-subscribed Huffman code")
		}
	}
	for l := 1; l < 16; l++ {
		for sym, sl := range lengths {
			if sl == l {
				h.symbol = append(h.symbol, sym)
			}
		}
	}
	return h, nil
}

// decode reads one symbol, a bit at a time.
func (r *bitReader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := r.bits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		if count := h.count[l]; code-first < count {
			return h.symbol[index+code-first], nil
		} else {
			index += count
			first = (first + count) << 1
			code <<= 1
		}
	}
	return 0, errors.New("invalid Huffman code")
}

var fixedLiterals, fixedDistances = func() (*huffman, *huffman) {
	var lengths [288]int
	for i := range lengths {
		switch {
		case i < 144:
			lengths[i] = 8
		case i < 256:
			lengths[i] = 9
		case i < 280:
			lengths[i] = 7
		default:
			lengths[i] = 8
		}
	}
	lit, _ := newHuffman(lengths[:])
	var dl [30]int
	for i := range dl {
		dl[i] = 5
	}
	dist, _ := newHuffman(dl[:])
	return lit, dist
}()

// dynamicTables reads the code lengths of a dynamic block (section 3.2.7).
func (r *bitReader) dynamicTables() (lit, dist *huffman, err error) {
	var head [3]int
	for i, n := range []uint{5, 5, 4} {
		if head[i], err = r.bits(n); err != nil {
			return nil, nil, err
		}
	}
	nlen, ndist, ncode := head[0]+257, head[1]+1, head[2]+4
	if nlen > 286 || ndist > 30 {
		return nil, nil, fmt.Errorf("dynamic block with %d literal and %d distance codes", nlen, ndist)
	}
	var clen [19]int
	order := [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	for _, sym := range order[:ncode] {
		if clen[sym], err = r.bits(3); err != nil {
			return nil, nil, err
		}
	}
	lencode, err := newHuffman(clen[:])
	if err != nil {
		return nil, nil, err
	}
	lengths := make([]int, 0, nlen+ndist)
	for len(lengths) < nlen+ndist {
		sym, err := r.decode(lencode)
		if err != nil {
			return nil, nil, err
		}
		if sym < 16 {
			lengths = append(lengths, sym)
			continue
		}
		value, extra, base := 0, uint(7), 11
		switch sym {
		case 16:
			if len(lengths) == 0 {
				return nil, nil, errors.New("repeat of no code length")
			}
			value, extra, base = lengths[len(lengths)-1], 2, 3
		case 17:
			extra, base = 3, 3
		}
		n, err := r.bits(extra)
		if err != nil {
			return nil, nil, err
		}
		if len(lengths)+base+n > nlen+ndist {
			return nil, nil, errors.New("code lengths overflow")
		}
		for range base + n {
			lengths = append(lengths, value)
		}
	}
	if lengths[256] == 0 {
		return nil, nil, errors.New("no end-of-block code")
	}
	if lit, err = newHuffman(lengths[:nlen]); err != nil {
		return nil, nil, err
	}
	if dist, err = newHuffman(lengths[nlen:]); err != nil {
		return nil, nil, err
	}
	return lit, dist, nil
}

// codes inflates the symbols of a Huffman-coded block up to its end.
func (r *bitReader) codes(buf []byte, lit, dist *huffman, maxDist *int) ([]byte, error) {
	for {
		sym, err := r.decode(lit)
		if err != nil {
			return nil, err
		}
		switch {
		case sym < 256:
			buf = append(buf, byte(sym))
			continue
		case sym == 256:
			return buf, nil
		case sym > 285:
			return nil, fmt.Errorf("length symbol %d", sym)
		}
		l := sym - 257
		extra, err := r.bits(lengthExtra[l])
		if err != nil {
			return nil, err
		}
		length := lengthBase[l] + extra
		d, err := r.decode(dist)
		if err != nil {
			return nil, err
		}
		if d >= 30 {
			return nil, fmt.Errorf("distance symbol %d", d)
		}
		if extra, err = r.bits(distExtra[d]); err != nil {
			return nil, err
		}
		distance := distBase[d] + extra
		if distance > len(buf) {
			return nil, fmt.Errorf("a back-reference reaches %d bytes back, %d before the start of the history",
				distance, distance-len(buf))
		}
		*maxDist = max(*maxDist, distance)
		for range length {
			buf = append(buf, buf[len(buf)-distance])
		}
	}
}

// TestRawDeflate checks the raw peer's own DEFLATE code against
// compress/flate, so that a case failing points at the library.
func TestRawDeflate(t *testing.T) {
	inputs := [][]byte{nil, []byte("a"), jsonText(20<<10, 1), randomBytes(20<<10, 2), jsonText(20<<10, 1), randomLetters(3000, 3)}
	for _, level := range []int{flate.HuffmanOnly, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression} {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, level)
		var hist []byte
		for i, in := range inputs {
			buf.Reset()
			fw.Write(in)
			fw.Flush()
			out, maxDist, err := auditInflate(lastBytes(hist, 32<<10), buf.Bytes())
			if err != nil || !bytes.Equal(out, in) || maxDist > 32<<10 {
				t.Fatalf("level %d, input %d: auditInflate of compress/flate's output: %d bytes, distance %d, %v",
					level, i, len(out), maxDist, err)
			}
			hist = append(hist, in...)
		}
	}
	for bits := 8; bits <= 15; bits++ {
		w := 1 << bits
		r := randomLetters(w, uint64(bits))
		var hist []byte
		for i, in := range [][]byte{r, append(r[:w:w], r[:100]...), jsonText(5000, 4), nil} {
			c := boundedDeflate(hist, in, w)
			full := append(append(c, syncTail...), finalEmptyBlock...)
			got, err := io.ReadAll(flate.NewReaderDict(bytes.NewReader(full), lastBytes(hist, w)))
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("window %d, input %d: compress/flate inflates boundedDeflate's output to %d bytes, %v", w, i, len(got), err)
			}
			out, maxDist, err := auditInflate(lastBytes(hist, w), full)
			if err != nil || !bytes.Equal(out, in) || maxDist > w || i == 1 && maxDist != w {
				t.Fatalf("window %d, input %d: auditInflate: %d bytes, distance %d, %v", w, i, len(out), maxDist, err)
			}
			hist = append(hist, in...)
		}
	}
}
