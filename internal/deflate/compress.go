package deflate

import (
	"compress/flate"
	"sync"
)

// Compression levels, as in compress/flate. The zero value of
// CompressorConfig.Level means DefaultLevel.
const (
	BestSpeed          = flate.BestSpeed
	BestCompression    = flate.BestCompression
	DefaultCompression = flate.DefaultCompression // level 6
	HuffmanOnly        = flate.HuffmanOnly        // no LZ77 matching

	// DefaultLevel favours speed: on a busy server compression costs CPU
	// per message, and WebSocket payloads are usually small.
	DefaultLevel = BestSpeed
)

// DefaultHistory is the history a Compressor keeps with context takeover
// at 15 bits when CompressorConfig.History is zero.
const DefaultHistory = 16 << 10

// CompressorConfig configures the compression of the messages one endpoint
// sends. The zero value compresses with context takeover, a 32 KiB window,
// DefaultLevel and DefaultHistory. Params.Outgoing gives the first two.
type CompressorConfig struct {
	// WindowBits is the window the peer agreed to keep for our messages,
	// 8..15 (0 means 15). No back-reference reaches further than 2^WindowBits
	// bytes. 8 is honoured exactly (256 bytes), which zlib-based peers
	// cannot do when they compress: they use 9 instead, and may decline an
	// offer of 8.
	WindowBits int
	// NoContextTakeover compresses every message on its own. The Compressor
	// then holds no memory between messages at all.
	NoContextTakeover bool
	// Level is a compress/flate level: 1 (BestSpeed) to 9
	// (BestCompression), DefaultCompression (6) or HuffmanOnly; 0 means
	// DefaultLevel. Level 1 looks at one earlier position per byte, 2-3
	// follow hash chains greedily, 4-9 follow longer chains and match
	// lazily. Every level chooses, per block, the smallest of stored,
	// fixed-Huffman and dynamic-Huffman coding.
	Level int
	// History is how many bytes of the previous messages the Compressor keeps
	// to refer back to with context takeover, at most 2^WindowBits; 0 means
	// min(DefaultHistory, 2^WindowBits), and a negative value keeps none.
	//
	// The trade-off: this memory is held by every connection, idle or not,
	// and each message first hashes the whole history into the shared
	// encoder, 1 to 3 ns a byte (20 to 40 µs for 16 KiB): for small
	// messages, that is most of the cost of compressing. A longer history
	// finds more matches, but small messages rarely need it: in this
	// package's tests, 200-byte JSON-like messages shrink to 64% without
	// history, to 34% with 1 KiB and to 33% with 4 or 16 KiB. The peer keeps
	// its full window either way, and referring back less than it keeps is
	// always valid (RFC 7692 section 7.2.1).
	History int
}

// Compressor compresses the messages of one connection in one direction
// (RFC 7692 section 7.2.1). It is not safe for concurrent use, and
// compresses one message at a time.
//
// With context takeover it keeps the last History bytes of the messages it
// compressed, allocated on first use; nothing else survives a message: the
// encoder is taken from a pool shared by all connections for the duration of
// a message and primed with that history. Without context takeover it holds
// nothing between messages.
//
// Only messages sent compressed may go through the Compressor: a message
// sent without compression is not part of the peer's window.
type Compressor struct {
	windowBits  int
	level       int
	historySize int // 0 without context takeover
	hist        []byte
	msg         MessageCompressor
}

// NewCompressor returns a Compressor for cfg.
func NewCompressor(cfg CompressorConfig) *Compressor {
	c := &Compressor{windowBits: clampBits(cfg.WindowBits), level: normalizeLevel(cfg.Level)}
	if !cfg.NoContextTakeover {
		window := 1 << c.windowBits
		switch {
		case cfg.History == 0:
			c.historySize = min(DefaultHistory, window)
		case cfg.History > 0:
			c.historySize = min(cfg.History, window)
		}
	}
	c.msg.c = c
	return c
}

func normalizeLevel(level int) int {
	switch {
	case level == 0:
		return DefaultLevel
	case level == DefaultCompression:
		return 6
	case level == HuffmanOnly:
		return HuffmanOnly
	case level < 0:
		return DefaultLevel
	}
	return min(level, BestCompression)
}

// Compress appends the compressed payload of the message p to dst and
// returns it: DEFLATE blocks ending in a sync flush whose final 00 00 FF FF
// is removed (RFC 7692 section 7.2.1). An empty message gives the single
// byte 0x00.
func (c *Compressor) Compress(dst, p []byte) []byte {
	m := c.BeginMessage()
	dst = m.Write(dst, p)
	return m.Finish(dst)
}

// MessageCompressor compresses one message given in pieces, for a writer
// that sends a message in several frames before it has all of it. Write
// returns the compressed bytes ready so far, which may be none: the encoder
// holds back up to one block (at most 64 KiB of input) and 258 bytes of
// look-ahead, never the whole message. Finish returns the rest. The frames
// of the message carry, in order, everything Write and Finish returned;
// the concatenation is exactly what Compress gives for the whole message.
//
// The encoder is taken from the pool at BeginMessage and returned by Finish
// or Abort, one of which must be called.
type MessageCompressor struct {
	c      *Compressor
	enc    *encoder
	active bool
}

// BeginMessage starts a message. It returns a pointer into c: the previous
// message must be finished or aborted.
func (c *Compressor) BeginMessage() *MessageCompressor {
	m := &c.msg
	if m.active {
		m.Abort()
	}
	m.active = true
	m.enc = encoderPool.Get().(*encoder)
	m.enc.start(nil, c.hist, c.windowBits, c.level)
	return m
}

// Write adds p to the message and appends the output ready so far to dst.
func (m *MessageCompressor) Write(dst, p []byte) []byte {
	if !m.active {
		return dst
	}
	m.enc.out = dst
	m.enc.write(p)
	m.enc.flushBytes()
	dst, m.enc.out = m.enc.out, nil
	return dst
}

// Finish ends the message, appends the rest of its payload to dst, updates
// the history and releases the encoder.
func (m *MessageCompressor) Finish(dst []byte) []byte {
	if !m.active {
		return dst
	}
	m.active = false
	e := m.enc
	e.out = dst
	dst, all := e.finish()
	if c := m.c; c.historySize > 0 {
		if c.hist == nil {
			c.hist = make([]byte, 0, c.historySize)
		}
		c.hist = append(c.hist[:0], all[max(0, len(all)-c.historySize):]...)
	}
	m.enc = nil
	encoderPool.Put(e)
	return dst
}

// Abort abandons the message and releases the encoder. The history stays
// as it was before the message, which is right only if none of the
// message's output was sent.
func (m *MessageCompressor) Abort() {
	if !m.active {
		return
	}
	m.active = false
	m.enc.out = nil
	encoderPool.Put(m.enc)
	m.enc = nil
}

var encoderPool = sync.Pool{New: func() any { return new(encoder) }}
