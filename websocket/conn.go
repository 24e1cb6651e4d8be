package websocket

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unique"

	"github.com/duplexws/duplex/internal/deflate"
	"github.com/duplexws/duplex/internal/frame"
)

// DefaultReadLimit is the largest message a Conn accepts unless the
// options' ReadLimit or SetReadLimit says otherwise.
const DefaultReadLimit = 32 << 10

// Defaults of the options shared by Accept and Dial.
const (
	defaultBufferSize   = 4096
	minBufferSize       = 256 // a control frame and its header always fit
	defaultCloseTimeout = 5 * time.Second
)

// connConfig is what AcceptOptions and DialOptions have in common, with the
// defaults filled in.
type connConfig struct {
	readBufferSize  int
	writeBufferSize int
	pingInterval    time.Duration
	pongTimeout     time.Duration
	closeTimeout    time.Duration
	limits          readLimits
	readLimit       int64 // 0: DefaultReadLimit

	// writePool keeps the write buffers: writeBufferSize and room for a
	// frame header; readPool the read buffers. sharedConfig sets them.
	writePool, readPool *bufferPool
}

// sharedConfigs holds one copy of each configuration in use, so that the
// Conns accepted or dialed with equal options point to it instead of
// holding 128 bytes each. It stops growing at maxSharedConfigs entries
// (options that differ from one connection to the next): later
// configurations get a copy of their own.
var (
	sharedConfigs  sync.Map // connConfig -> *connConfig
	sharedConfigsN atomic.Int32
)

const maxSharedConfigs = 64

// sharedConfig returns a pointer to a connConfig equal to cfg, with its
// writePool set, which its holders must not change.
func sharedConfig(cfg connConfig) *connConfig {
	cfg.writePool = poolFor(cfg.writeBufferSize + frame.MaxHeaderSize)
	cfg.readPool = poolFor(cfg.readBufferSize)
	if p, ok := sharedConfigs.Load(cfg); ok {
		return p.(*connConfig)
	}
	if sharedConfigsN.Load() >= maxSharedConfigs {
		return &cfg
	}
	p, loaded := sharedConfigs.LoadOrStore(cfg, &cfg)
	if !loaded {
		sharedConfigsN.Add(1)
	}
	return p.(*connConfig)
}

func newConnConfig(readSize, writeSize int, pingInterval, pongTimeout, closeTimeout time.Duration) connConfig {
	cfg := connConfig{
		readBufferSize:  max(readSize, minBufferSize),
		writeBufferSize: max(writeSize, minBufferSize),
		pingInterval:    pingInterval,
		pongTimeout:     pongTimeout,
		closeTimeout:    closeTimeout,
		limits:          newReadLimits(0, 0, RateLimit{}),
	}
	if readSize <= 0 {
		cfg.readBufferSize = defaultBufferSize
	}
	if writeSize <= 0 {
		cfg.writeBufferSize = defaultBufferSize
	}
	if cfg.pongTimeout <= 0 {
		cfg.pongTimeout = cfg.pingInterval
	}
	if cfg.closeTimeout <= 0 {
		cfg.closeTimeout = defaultCloseTimeout
	}
	return cfg
}

// Conn is a WebSocket connection, made by Accept on the server or Dial on
// the client.
//
// Every method is safe for concurrent use. One goroutine at a time reads:
// Read, Reader and the reader Reader returns take turns. Each message is
// written whole with respect to other writes, whether by Write or by a
// Writer held until its Close; control frames (pings, pongs, the close
// frame) may go out between the frames of a message being written. Misuse,
// such as writing after Close, returns an error; no method panics.
//
// Control frames are read by whoever reads: pongs answer Ping, and the
// peer's close frame ends the connection, only while some goroutine is in
// Read or Reader, or after CloseRead. Always end a Conn with Close or
// CloseNow: they release its resources and wait for its goroutines.
type Conn struct {
	netConn     net.Conn
	raw         syscall.RawConn       // netConn's descriptor, set once: nil unless a TCP or Unix socket read raw
	subprotocol unique.Handle[string] // 8 bytes where a string takes 16
	comp        *compression          // nil unless permessage-deflate was agreed
	cfg         *connConfig           // shared by the Conns of equal options (sharedConfig)

	// The flags, side by side with closeReadCtl: alone, each would take 8
	// bytes with its padding. (A Conn is 352 bytes, exactly a size class of
	// the allocator: every 8 bytes more cost 32.)
	client       bool
	readClosed   atomic.Bool // CloseRead has taken over reading
	closeSent    atomic.Bool // the close frame has gone out; set under frameMu
	closed       atomic.Bool // the network connection is closed; set under closeMu
	peerClosed   atomic.Bool // the peer's close frame has arrived
	closeReadCtl sync.Once   // CloseRead starts reading once

	// Reading. The fields below readMu belong to whoever holds it.
	readMu     ctxMutex
	readLimit  atomic.Int64
	br         *readBuffer
	rate       *readRate // nil without a RateLimit
	reader     messageReader
	readErr    error // set once reading has ended for good
	*readState       // nil only while Serve's loop or the poller waits (dropReadState)

	// Writing.
	msgMu    ctxMutex // held for the whole of a data message
	frameMu  ctxMutex // held while one frame is written
	writer   messageWriter
	maskRand *rand.ChaCha8 // client only; under frameMu

	// Ending.
	closeMu  sync.Mutex
	closedCh atomic.Pointer[chan struct{}] // closed once closed is set; nil until closedChan
	closeErr error                         // why the connection ended; under closeMu
	wg       sync.WaitGroup                // the goroutines this Conn started

	// Pings waiting for their pong, and keepalive; nil until the first
	// Ping, or with no ping interval (pingsOf).
	pingState atomic.Pointer[pingState]

	// Await's state, made at the first Await (await.go).
	await atomic.Pointer[awaitState]

	// Serve: what it calls and the connection's place in its loop; set
	// once by Serve, then under readMu (serve.go).
	serving *serveState

	// The contexts whose end interrupts I/O; nil until the first watch of
	// a context that can end (watchesOf).
	watches atomic.Pointer[connWatches]
}

// readState is what reading a message takes: the state of the frame and
// message being read, and room for a control frame. Only a Conn that
// waits idle, served in a loop of Serve or parked in Await, holds none:
// it takes one from readStates when data arrives and puts it back when the
// connection is idle again (dropReadState), which saves its 288 bytes on
// each idle connection. Other Conns keep theirs.
type readState struct {
	stream      frame.Stream
	frameLeft   int64 // payload bytes of the current data frame still unread
	frameFin    bool  // the current data frame ends its message
	frameMasked bool
	frameKey    [4]byte
	framePos    int   // masking offset within the current frame
	skipLeft    int64 // payload bytes of a data frame being discarded
	msgActive   bool  // a data message has begun and not been read to its end
	msgByRead   bool  // Read began it: partial holds what arrived so far
	msgType     MessageType
	msgSize     int64     // payload bytes the current message's frames announced so far
	msgFrames   int64     // frames of the current message so far
	msgTimed    bool      // msgDeadline is set
	msgWatching bool      // a call that began a message watch is under way
	msgDeadline time.Time // when the call reading the current message gives up
	utf8        frame.UTF8
	inflate     *deflate.MessageReader // the compressed message being read, or nil
	msgInflated int64                  // bytes the current compressed message inflated to so far
	partial     []byte
	ctrl        [frame.MaxControlPayload]byte
}

var readStates = sync.Pool{New: func() any { return new(readState) }}

// takeReadState gives c a read state if it has none. The caller holds
// readMu.
func (c *Conn) takeReadState() {
	if c.readState == nil {
		c.readState = readStates.Get().(*readState)
	}
}

// dropReadState puts c's read state back in the pool if c is between
// messages, with no frame, deadline or fragmented message in progress, so
// that nothing in it is needed until the next frame arrives; it reports
// whether it did. The caller holds readMu for Serve or Await, and calls
// takeReadState before reading again.
func (c *Conn) dropReadState() bool {
	rs := c.readState
	if rs == nil {
		return true
	}
	if rs.msgActive || rs.frameLeft != 0 || rs.skipLeft != 0 || rs.msgTimed || rs.msgWatching || rs.stream.InMessage() {
		return false
	}
	*rs = readState{}
	readStates.Put(rs)
	c.readState = nil
	return true
}

// readBuffers holds the read buffers (their bookkeeping, not the bytes,
// which have a pool of their own) of Conns that wait idle, served in a
// loop or parked in Await: each would hold 184 bytes it needs only when
// data arrives.
var readBuffers sync.Pool // *readBuffer

// reuseReadBuffer gives c, which has dropped its own (dropReadBuffer), a
// read buffer from readBuffers that reads raw. The caller holds readMu.
func (c *Conn) reuseReadBuffer() {
	b, _ := readBuffers.Get().(*readBuffer)
	if b == nil {
		b = new(readBuffer)
		b.onReadable = b.readReady
	}
	b.src, b.raw, b.pool = c.netConn, c.raw, c.cfg.readPool
	c.br = b
}

// dropReadBuffer puts c's read buffer in readBuffers if it holds no bytes,
// which it does once it has given them back to their pool: an idle
// connection read raw. The caller holds readMu for Serve or Await, and
// calls reuseReadBuffer before reading again.
func (c *Conn) dropReadBuffer() {
	b := c.br
	if b == nil || b.buf != nil || b.raw == nil || b.watchWait {
		return
	}
	// What is bound to b, not to c, stays with it.
	*b = readBuffer{onReadable: b.onReadable, onQueued: b.onQueued}
	readBuffers.Put(b)
	c.br = nil
}

// newConn wraps an established connection whose handshake is done. early
// is whatever the handshake read past its end.
func newConn(netConn net.Conn, early []byte, client bool, subprotocol string, cfg connConfig) *Conn {
	c := &Conn{
		netConn:     netConn,
		client:      client,
		subprotocol: unique.Make(subprotocol),
		cfg:         sharedConfig(cfg),
		readState:   new(readState),
		br:          newReadBuffer(netConn, cfg.readBufferSize, early),
	}
	c.raw = c.br.raw
	c.readLimit.Store(cmp.Or(cfg.readLimit, DefaultReadLimit))
	c.rate = newReadRate(cfg.limits.rate)
	c.reader.c = c
	c.writer.c = c
	if client {
		var seed [32]byte
		crand.Read(seed[:]) // never fails (crypto/rand, Go 1.24+)
		c.maskRand = rand.NewChaCha8(seed)
	}
	if cfg.pingInterval > 0 {
		c.startKeepalive()
	}
	return c
}

// Subprotocol returns the subprotocol the handshake agreed on, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol.Value() }

// SetReadLimit sets the largest message, in bytes, that Read and Reader
// accept; the ReadLimit of the options, or DefaultReadLimit (32 KiB),
// applies until it is called. A message
// whose frames announce more fails the connection with StatusMessageTooBig
// as soon as the header of the frame that crosses the limit arrives, before
// its payload is read. A negative limit removes it.
func (c *Conn) SetReadLimit(n int64) { c.readLimit.Store(n) }

// goBackground starts f as a goroutine owned by c, unless c is closed.
// CloseNow and Close wait for it.
func (c *Conn) goBackground(f func()) bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.isClosed() {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Conn) isClosed() bool { return c.closed.Load() }

// closedChan returns a channel that is closed once the network connection
// is. It is made at the first call, by a wait that needs it (a contended
// lock, Ping, Close): an idle connection holds none.
func (c *Conn) closedChan() <-chan struct{} {
	if p := c.closedCh.Load(); p != nil {
		return *p
	}
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if p := c.closedCh.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	if c.closed.Load() {
		close(ch)
	}
	c.closedCh.Store(&ch)
	return ch
}

// closeNetConn closes the network connection once, recording why the
// connection ended; the first reason recorded wins.
func (c *Conn) closeNetConn(why error) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closeErr == nil {
		c.closeErr = why
	}
	if c.isClosed() {
		return
	}
	c.closed.Store(true)
	if p := c.closedCh.Load(); p != nil {
		close(*p)
	}
	c.unpark() // before the descriptor closes: it is still in the poller
	c.unserve()
	c.netConn.Close()
	c.stopKeepalive()
	// A long-lived context must not keep registrations of closed Conns.
	if ws := c.watches.Load(); ws != nil {
		ws.read.retire()
		ws.write.retire()
	}
}

// endErr returns why the connection ended, or fallback when nothing was
// recorded.
func (c *Conn) endErr(fallback error) error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closeErr != nil {
		return c.closeErr
	}
	return fallback
}

// lock takes m for a call on c, giving up when ctx ends or c closes.
func (c *Conn) lock(ctx context.Context, m *ctxMutex) error {
	if m.tryLock() {
		return nil // without making the channel a wait needs
	}
	err := m.lock(ctx, c.closedChan())
	if err == errLockClosed {
		return c.endErr(errConnClosed)
	}
	return err
}

// errConnClosed is what calls on a Conn closed by this side return.
var errConnClosed = fmt.Errorf("websocket: connection closed: %w", net.ErrClosed)

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// ioDirection names one side of the network connection.
type ioDirection bool

const (
	reading ioDirection = false
	writing ioDirection = true
)

// watch makes ctx the context whose end interrupts I/O in direction dir,
// by a deadline in the past, and returns ctx's error if it has ended
// already. The caller holds readMu for reading and frameMu for writing.
//
// A context stays watched after the call, so a loop that passes the same
// context, or one sharing its Done channel, pays nothing after its first
// call: only a change of context registers a context.AfterFunc (which
// allocates), and no goroutine waits meanwhile. A context that cannot end,
// such as context.Background, is never registered; passing one stops the
// watch of the previous context.
func (c *Conn) watch(ctx context.Context, dir ioDirection) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := ctx.Done()
	ws := c.watches.Load()
	if ws == nil {
		if done == nil {
			return nil // none watched, and none to watch
		}
		ws = c.watchesOf()
	}
	w := &ws.read
	if dir == writing {
		w = &ws.write
	}
	if done == w.done {
		return nil
	}
	old := w.ctx
	gen := w.retire()
	w.ctx, w.done = nil, nil
	if old != nil && old.Err() != nil {
		// The old context ended, so its AfterFunc may have set a deadline
		// that would cut short I/O under the new one.
		w.setDeadline(c.netConn, time.Time{})
		if dir == reading {
			c.msgTimed = false // the message's clock starts again
		}
	}
	if done == nil {
		return nil
	}
	w.ctx, w.done = ctx, done
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.gen == gen {
			w.setDeadline(c.netConn, aLongTimeAgo)
		}
	})
	w.mu.Lock()
	if w.gen == gen {
		w.stop = stop
	} else {
		stop() // the Conn closed meanwhile and retired this watch
	}
	w.mu.Unlock()
	return nil
}

// unwatch stops watching any context in direction dir, before code that
// sets deadlines of its own.
func (c *Conn) unwatch(dir ioDirection) {
	c.watch(context.Background(), dir)
}

// connWatches are a Conn's watched contexts: read under readMu, write
// under frameMu. Most Conns, served ones among them, never watch a context
// that can end, so they are made at the first that does, not with the
// Conn, which is then 112 bytes smaller.
type connWatches struct {
	read, write ctxWatch
}

// watchesOf returns c's watches, made at the first call.
func (c *Conn) watchesOf() *connWatches {
	if ws := c.watches.Load(); ws != nil {
		return ws
	}
	ws := &connWatches{write: ctxWatch{dir: writing}}
	if c.watches.CompareAndSwap(nil, ws) {
		return ws
	}
	return c.watches.Load()
}

// ctxWatch is the context watched for one direction of I/O.
type ctxWatch struct {
	dir  ioDirection
	ctx  context.Context // nil when none; under the direction's lock
	done <-chan struct{} // ctx.Done(); under the direction's lock

	// mu orders a context's AfterFunc against the end of its watch (once
	// gen has moved on, an AfterFunc of an older watch sets nothing), and
	// against control frames the reader writes under deadlines of its own.
	mu   sync.Mutex
	gen  uint64
	stop func() bool // stops the AfterFunc of the current watch
}

// retire ends the current watch, if any, and returns the generation of the
// next. Its AfterFunc no longer runs, or runs to no effect.
func (w *ctxWatch) retire() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	if w.stop != nil {
		w.stop()
		w.stop = nil
	}
	return w.gen
}

func (w *ctxWatch) setDeadline(conn net.Conn, t time.Time) {
	if w.dir == writing {
		conn.SetWriteDeadline(t)
	} else {
		conn.SetReadDeadline(t)
	}
}

// isTimeout reports whether err is a deadline expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bufferPool keeps write buffers of one size between writes, so that an
// idle connection holds none.
type bufferPool struct {
	size int
	pool sync.Pool
}

var bufferPools sync.Map // size -> *bufferPool

func poolFor(size int) *bufferPool {
	if p, ok := bufferPools.Load(size); ok {
		return p.(*bufferPool)
	}
	p, _ := bufferPools.LoadOrStore(size, &bufferPool{size: size})
	return p.(*bufferPool)
}

func (p *bufferPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, p.size)
	return &b
}

func (p *bufferPool) put(b *[]byte) {
	*b = (*b)[:0]
	p.pool.Put(b)
}
