package websocket

import (
	"io"
	"math/bits"
	"net"
	"os"
	"syscall"
)

// readBuffer is a Conn's read buffer. An idle connection holds none: on a
// TCP or Unix socket it waits for data through the runtime's poller
// (syscall.RawConn) with the buffer back in a pool, and takes one when
// bytes arrive. A connection spends nearly all its life waiting, so this
// saves the buffer's size on every idle connection. Other connections (TLS,
// wrappers) read through net.Conn and keep their buffer, taken at the first
// read.
//
// It reads the way bufio.Reader does, except that errors are not stored:
// a deadline's error is returned once and the next call reads again.
type readBuffer struct {
	src  net.Conn
	raw  syscall.RawConn // src's descriptor; nil when it reads through src
	pool *bufferPool
	bp   *[]byte     // the buffer, from pool; nil while there is none
	big  *bufferPool // where bp came from when grow took it; nil: pool
	buf  []byte      // *bp at full length, or a larger buffer of early bytes
	r, w int         // buf[r:w] is unread

	// noWait makes a raw read that finds nothing fail with errWouldBlock
	// instead of waiting (see Conn.Await).
	noWait bool

	// While watchWait is set, onWait is called each time a read is about
	// to wait for the network: for a raw read when nothing has arrived, for
	// one through net.Conn before each read (see Conn.waitingForPeer).
	watchWait bool
	onWait    func()

	// The raw read in progress: into dst, or into a buffer from the pool
	// when dst is nil. onReadable, bound once, reports through n and err.
	dst        []byte
	n          int
	err        error
	onReadable func(fd uintptr) bool

	// Arrived asks the kernel through onQueued, which reports in queued;
	// bound at the first call.
	onQueued func(fd uintptr)
	queued   int
}

// newReadBuffer returns src's read buffer, holding early: bytes read past
// the end of the handshake.
func newReadBuffer(src net.Conn, size int, early []byte) *readBuffer {
	b := &readBuffer{src: src, pool: poolFor(size)}
	switch conn := src.(type) {
	case *net.TCPConn, *net.UnixConn:
		// Exactly these types: a wrapper that embeds one has its own Read,
		// which reading from the descriptor would bypass.
		if sc, ok := conn.(syscall.Conn); ok && canReadRaw {
			if raw, err := sc.SyscallConn(); err == nil {
				b.raw = raw
				b.onReadable = b.readReady
			}
		}
	}
	if len(early) > 0 {
		if len(early) > size {
			b.buf = append([]byte(nil), early...) // once, not pooled
		} else {
			b.take()
			copy(b.buf, early)
		}
		b.w = len(early)
	}
	return b
}

// Size returns the buffer's size.
func (b *readBuffer) Size() int { return b.pool.size }

// Buffered returns the number of bytes that can be read without waiting.
func (b *readBuffer) Buffered() int { return b.w - b.r }

// Arrived returns the bytes that can be read without waiting: those
// buffered and, for a socket read raw, those its kernel holds (on Linux).
func (b *readBuffer) Arrived() int {
	n := b.w - b.r
	if b.raw != nil {
		b.queued = 0
		if b.onQueued == nil {
			b.onQueued = b.countQueued
		}
		b.raw.Control(b.onQueued)
		n += b.queued
	}
	return n
}

func (b *readBuffer) countQueued(fd uintptr) { b.queued = kernelQueued(fd) }

// take gets a buffer from the pool.
func (b *readBuffer) take() {
	b.bp = b.pool.get()
	b.buf = (*b.bp)[:b.pool.size]
	b.r, b.w = 0, 0
}

// release returns the buffer, which holds nothing unread, to the pool.
// Without a raw descriptor the buffer stays: a read through net.Conn holds
// it while it waits anyway.
func (b *readBuffer) release() {
	b.r, b.w = 0, 0
	if b.raw == nil || b.buf == nil {
		return
	}
	if b.bp != nil {
		if b.big != nil {
			b.big.put(b.bp)
		} else {
			b.pool.put(b.bp)
		}
	}
	b.bp, b.buf, b.big = nil, nil, nil
}

// canGrow reports whether grow can grow the buffer.
func (b *readBuffer) canGrow() bool { return b.raw != nil }

// grow makes the buffer hold at least n bytes, keeping what it holds: it
// takes one of the next power of two in size from a pool of that size, to
// which release returns it. Only a connection read raw grows (Serve's
// loops do, for a message larger than the buffer): others never release.
func (b *readBuffer) grow(n int) {
	if n <= max(len(b.buf), b.pool.size) || b.raw == nil {
		return
	}
	p := poolFor(1 << bits.Len(uint(n-1)))
	bp := p.get()
	buf := (*bp)[:p.size]
	k := copy(buf, b.buf[b.r:b.w])
	b.release()
	b.bp, b.buf, b.big, b.r, b.w = bp, buf, p, 0, k
}

// Read reads up to len(p) bytes: what is buffered, or else what one read
// of the network returns. Like bufio.Reader, it reads a large p directly.
func (b *readBuffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if len(p) >= b.pool.size {
			return b.readInto(p)
		}
		if err := b.fill(1); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.consume(n)
	return n, nil
}

// Peek returns the next n bytes without consuming them, reading until they
// have arrived. With fewer, it returns those and the error that stopped it.
// n must not exceed Size.
func (b *readBuffer) Peek(n int) ([]byte, error) {
	if b.w-b.r < n {
		if err := b.fill(n); err != nil {
			return b.buf[b.r:b.w], err
		}
	}
	return b.buf[b.r : b.r+n], nil
}

// PeekSome returns what is buffered, reading once if nothing is, up to
// max bytes, without consuming it.
func (b *readBuffer) PeekSome(max int) ([]byte, error) {
	if b.r == b.w {
		if err := b.fill(1); err != nil {
			return nil, err
		}
	}
	return b.buf[b.r:min(b.w, b.r+max)], nil
}

// Discard skips the next n bytes, reading those not yet buffered.
func (b *readBuffer) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if b.r == b.w {
			if err := b.fill(1); err != nil {
				return done, err
			}
		}
		k := min(n-done, b.w-b.r)
		b.consume(k)
		done += k
	}
	return done, nil
}

func (b *readBuffer) consume(n int) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// fill reads until at least n bytes are buffered. A connection reading
// raw puts its buffer back in the pool while it waits with nothing
// buffered (see readReady).
func (b *readBuffer) fill(n int) error {
	if b.buf == nil && b.raw == nil {
		b.take()
	}
	if b.r > 0 {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	for b.w < n {
		k, err := b.readInto(nil)
		b.w += k
		if err != nil {
			if b.r == b.w {
				b.release()
			}
			return err
		}
	}
	return nil
}

// readInto reads once into p, or with p nil into the buffer after what it
// holds, taking a buffer from the pool if there is none.
func (b *readBuffer) readInto(p []byte) (int, error) {
	if b.raw == nil {
		if b.watchWait {
			b.onWait()
		}
		if p == nil {
			p = b.buf[b.w:]
		}
		n, err := b.src.Read(p)
		if n == 0 && err == nil {
			err = io.ErrNoProgress
		}
		return n, err
	}
	b.dst, b.n, b.err = p, 0, nil
	err := b.raw.Read(b.onReadable)
	b.dst = nil
	if err != nil {
		return 0, err // a deadline, or the connection closed
	}
	if b.n == 0 && b.err == nil {
		b.err = io.EOF
	}
	return b.n, b.err
}

// readReady is called by the poller with src's descriptor, first at once
// and again each time it becomes readable. It reads what is there. When
// nothing is, it returns false to wait, and if the buffer holds nothing
// either it goes back to the pool first: an idle connection holds none.
func (b *readBuffer) readReady(fd uintptr) bool {
	dst := b.dst
	if dst == nil {
		if b.buf == nil {
			b.take()
		}
		dst = b.buf[b.w:]
	}
	n, err := readFD(fd, dst)
	if err == errWouldBlock {
		if b.r == b.w {
			b.release()
		}
		if b.noWait {
			b.err = errWouldBlock
			return true
		}
		if b.watchWait {
			b.onWait() // sets the deadline this wait is held to
		}
		return false
	}
	b.n, b.err = n, err
	if err != nil {
		// As net.Conn's Read reports it.
		b.err = &net.OpError{Op: "read", Net: b.src.LocalAddr().Network(), Source: b.src.LocalAddr(), Addr: b.src.RemoteAddr(), Err: os.NewSyscallError("read", err)}
	}
	return true
}
