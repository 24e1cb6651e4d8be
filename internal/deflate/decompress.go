package deflate

import (
	"errors"
	"io"
	"slices"
	"sync"
)

var (
	// ErrCorrupt reports a message that is not valid DEFLATE data; the
	// connection fails with close code 1007 (RFC 6455 section 7.4.1). It
	// and ErrTooBig are returned as they are, never wrapped.
	ErrCorrupt = errors.New("websocket: permessage-deflate: corrupt compressed data")
	// ErrTooBig reports a message that inflates to more than the limit; the
	// connection fails with close code 1009.
	ErrTooBig = errors.New("websocket: permessage-deflate: message exceeds the read limit when inflated")
	// errHistoryLost reports a message after one that was not inflated to
	// its end with context takeover: the window it builds on is missing.
	errHistoryLost = errors.New("websocket: permessage-deflate: window lost by an unfinished message")
)

// DecompressorConfig configures the inflation of the messages one endpoint
// receives. The zero value keeps a 32 KiB window between messages.
// Params.Incoming gives both fields.
type DecompressorConfig struct {
	// WindowBits is the window the peer compresses with, 8..15 (0 means
	// 15). With context takeover the Decompressor keeps that many last
	// bytes: 2^WindowBits.
	WindowBits int
	// NoContextTakeover means that the peer compresses every message on
	// its own. The Decompressor then holds no memory between messages.
	NoContextTakeover bool
}

// Decompressor inflates the messages of one connection in one direction
// (RFC 7692 section 7.2.2). It is not safe for concurrent use, and inflates
// one message at a time.
//
// With context takeover it keeps the last 2^WindowBits bytes the peer sent,
// the most the peer may refer back to, allocated on first use. The inflater
// (about 70 KiB) is taken from a pool shared by all connections for the
// duration of a message and primed with that window.
type Decompressor struct {
	window   int // 2^WindowBits
	takeover bool
	broken   bool
	hist     []byte
	msg      MessageReader
}

// NewDecompressor returns a Decompressor for cfg.
func NewDecompressor(cfg DecompressorConfig) *Decompressor {
	d := &Decompressor{window: 1 << clampBits(cfg.WindowBits), takeover: !cfg.NoContextTakeover}
	d.msg.d = d
	return d
}

// MessageReader inflates one message. Its Read returns io.EOF at the end
// of the message, ErrTooBig as soon as the message inflates past the limit
// (after exactly limit bytes), ErrCorrupt for invalid data, and the
// source's own errors as they are. Errors are sticky.
//
// The inflater is taken from the pool at BeginMessage and returned at the
// end of the message, at an error, or by Close.
type MessageReader struct {
	d       *Decompressor
	f       *inflater
	limit   int64
	n       int64 // bytes inflated
	started bool
	err     error
}

// A ReadyReader is a source that can tell whether its next Read returns at
// once (with data, or at the end) rather than waiting, as for the network.
// A MessageReader whose source is one stops to hand out what it has
// inflated only before a Read that may wait; from any other source, before
// every Read.
type ReadyReader interface {
	io.Reader
	Ready() bool
}

// BeginMessage starts inflating a message whose compressed payload src
// yields, frame after frame, up to io.EOF at the end of the message; the
// 00 00 FF FF tail of RFC 7692 section 7.2.2 is added here. limit caps the
// inflated size; 0 or less means none. It returns a pointer into d: the
// previous message must be read to its end or closed.
//
// Read hands out what the input read so far inflates to before it reads
// src again where that may wait (see ReadyReader), so that a message is
// checked as it arrives.
//
// Reading may stop before src's end when the payload holds a final DEFLATE
// block (BFINAL set, RFC 7692 section 7.2.3.3): what follows is ignored,
// and the caller discards the rest of the message. An empty payload is the
// empty message.
func (d *Decompressor) BeginMessage(src io.Reader, limit int64) *MessageReader {
	return d.begin(src, nil, limit)
}

func (d *Decompressor) begin(src io.Reader, payload []byte, limit int64) *MessageReader {
	m := &d.msg
	m.Close()
	m.limit, m.n, m.started, m.err = limit, 0, false, nil
	if d.broken {
		m.err = errHistoryLost
		return m
	}
	f := inflaterPool.Get().(*inflater)
	f.src.reset(src, payload)
	if d.takeover {
		f.reset(d.hist)
	} else {
		f.reset(nil)
	}
	m.f = f
	return m
}

// Read inflates into p.
func (m *MessageReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if m.limit > 0 {
		room := m.limit - m.n
		if room <= 0 {
			// At the limit: anything more is too much.
			if n, err := m.inflate(m.f.probe[:]); n > 0 {
				return 0, m.fail(ErrTooBig)
			} else {
				return 0, err
			}
		}
		if int64(len(p)) > room {
			p = p[:room]
		}
	}
	return m.inflate(p)
}

// inflate copies out decoded bytes, decoding more as needed.
func (m *MessageReader) inflate(p []byte) (int, error) {
	f := m.f
	if !m.started {
		m.started = true
		if f.src.empty() {
			return 0, m.end()
		}
	}
	for {
		if f.rpos < f.wpos {
			n := copy(p, f.win[f.rpos:f.wpos])
			f.rpos += n
			m.n += int64(n)
			return n, nil
		}
		switch {
		case f.err != nil:
			return 0, m.fail(f.err)
		case f.state == stateDone:
			return 0, m.end()
		case f.wpos >= highWater:
			f.slide()
		}
		f.decode()
	}
}

// end completes the message: the window takes in its output.
func (m *MessageReader) end() error {
	if d := m.d; d.takeover {
		if d.hist == nil {
			d.hist = make([]byte, 0, d.window)
		}
		f := m.f
		d.hist = append(d.hist[:0], f.win[max(0, f.wpos-d.window):f.wpos]...)
	}
	m.release()
	m.err = io.EOF
	return io.EOF
}

func (m *MessageReader) fail(err error) error {
	m.release()
	m.d.broken = m.d.takeover
	m.err = err
	return err
}

func (m *MessageReader) release() {
	if m.f != nil {
		m.f.src.reset(nil, nil)
		inflaterPool.Put(m.f)
		m.f = nil
	}
}

// Close abandons the message if it is not over and releases the inflater.
// With context takeover, abandoning a message loses the window: later
// messages fail. Close always returns nil.
func (m *MessageReader) Close() error {
	if m.f != nil {
		m.fail(errHistoryLost)
	}
	return nil
}

// Decompress inflates a whole compressed message payload and appends it to
// dst, growing dst no further than limit bytes of output (0 or less: no
// limit). It returns ErrTooBig once the output would exceed limit bytes; dst
// then holds the first limit bytes.
func (d *Decompressor) Decompress(dst, payload []byte, limit int64) ([]byte, error) {
	m := d.begin(nil, payload, limit)
	for m.err == nil {
		if m.limit > 0 && m.n >= m.limit {
			m.Read(m.f.probe[:]) // ErrTooBig or io.EOF
			continue
		}
		if len(dst) == cap(dst) {
			want := max(cap(dst), 512)
			if m.limit > 0 {
				want = int(min(int64(want), m.limit-m.n))
			}
			dst = slices.Grow(dst, want)
		}
		n, _ := m.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
	}
	if m.err == io.EOF {
		return dst, nil
	}
	return dst, m.err
}

var inflaterPool = sync.Pool{New: func() any { return new(inflater) }}

// deflateTail ends every payload: the 00 00 FF FF RFC 7692 section 7.2.2
// restores, then an empty final stored block, so that the inflater sees
// the end of the message rather than waiting for more.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// source hands the inflater its input in chunks: the payload, from an
// io.Reader or a slice, then deflateTail, then nothing.
type source struct {
	r       io.Reader
	ready   ReadyReader // r, when it says whether its Read waits
	payload []byte      // a payload given whole, not yet handed out
	srcDone bool        // r is exhausted (or absent)
	tailed  bool        // deflateTail was handed out
	any     bool        // the payload had bytes
	err     error       // from r, other than io.EOF
	buf     [4096]byte
}

func (s *source) reset(r io.Reader, payload []byte) {
	s.r, s.payload, s.err = r, payload, nil
	s.ready, _ = r.(ReadyReader)
	s.srcDone, s.tailed, s.any = r == nil, false, len(payload) > 0
}

// empty reports whether the payload is empty, reading from r if needed;
// what it reads stays for next.
func (s *source) empty() bool {
	if len(s.payload) == 0 && !s.srcDone {
		s.payload = s.read()
	}
	return !s.any && s.srcDone
}

func (s *source) read() []byte {
	for !s.srcDone {
		n, err := s.r.Read(s.buf[:])
		if err != nil {
			s.srcDone = true
			if err != io.EOF {
				s.err = err
			}
		}
		if n > 0 {
			s.any = true
			return s.buf[:n]
		}
	}
	return nil
}

// mayWait reports whether next may wait for r: no input is at hand, and r
// does not say that its Read returns at once.
func (s *source) mayWait() bool {
	if len(s.payload) > 0 || s.srcDone {
		return false
	}
	return s.ready == nil || !s.ready.Ready()
}

// next returns the next chunk of input, empty at the end or after an error.
func (s *source) next() []byte {
	if b := s.payload; len(b) > 0 {
		s.payload = nil
		return b
	}
	if b := s.read(); len(b) > 0 {
		return b
	}
	if s.err != nil || s.tailed {
		return nil
	}
	s.tailed = true
	return deflateTail
}
