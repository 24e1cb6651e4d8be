package cli

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/internal/frame"
	"github.com/duplexws/duplex/websocket"
)

// proxyCloseWait is how long a relay waits, once one end has finished or
// the proxy has sent its own close frame, before it closes both
// connections.
const proxyCloseWait = 5 * time.Second

// relay carries the frames of one WebSocket connection between the client
// and the server, as they are. Each direction has a reader goroutine, which
// shows each frame as it comes, and a writer goroutine, which passes it on
// (after --delay) and counts the messages the faults count; run owns all
// four and waits for them.
type relay struct {
	p              *proxy
	n              int64 // connection number
	client, server net.Conn
	in, out        *relayDirection // client to server, server to client

	messages atomic.Int64 // data messages passed on that the faults count
	passMu   sync.Mutex   // with a fault: one direction passes a message on and counts it at a time
	closing  atomic.Bool  // the proxy sent a close frame of its own: nothing more is relayed

	killOnce sync.Once
	kill     chan struct{} // closed when both connections are closed

	mu    sync.Mutex
	timer *time.Timer // guarded by mu: closes both connections after an injected close
}

// relayDirection is one direction of a relay.
type relayDirection struct {
	name   string // "in" or "out"
	src    *bufio.Reader
	dst    net.Conn
	dstMu  sync.Mutex // serializes writes to dst: relayed frames and the proxy's own
	view   *dirView
	frames chan relayFrame // reader to writer
	queued chan struct{}   // one token per relayQueueUnit bytes queued: the queue's byte budget
	eof    bool            // set by the reader before it closes frames: src ended cleanly
}

// relayFrame is a frame as it came, header and payload.
type relayFrame struct {
	at           time.Time
	h            frame.Header
	wire         []byte // header and payload as read (masked payload left masked)
	shownDropped bool   // shown as not passed on
}

func newRelay(p *proxy, n int64, client net.Conn, clientR *bufio.Reader, server net.Conn, serverR *bufio.Reader, pmd *deflateParams) *relay {
	r := &relay{p: p, n: n, client: client, server: server, kill: make(chan struct{})}
	r.in = &relayDirection{name: "in", src: clientR, dst: server, frames: make(chan relayFrame, relayQueueTokens),
		queued: make(chan struct{}, relayQueueTokens), view: newDirView(n, "in", pmd, false, p.cfg.readLimit)}
	r.out = &relayDirection{name: "out", src: serverR, dst: client, frames: make(chan relayFrame, relayQueueTokens),
		queued: make(chan struct{}, relayQueueTokens), view: newDirView(n, "out", pmd, true, p.cfg.readLimit)}
	return r
}

// run relays until both directions end, or one ends and the other does
// not within proxyCloseWait, and then closes both connections.
func (r *relay) run() {
	var wg sync.WaitGroup
	ended := make(chan struct{}, 2)
	for _, d := range []*relayDirection{r.in, r.out} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.read(d)
		}()
		go func() {
			defer wg.Done()
			r.write(d)
			ended <- struct{}{}
		}()
	}
	<-ended
	wait := time.NewTimer(proxyCloseWait)
	select {
	case <-ended:
	case <-wait.C:
	case <-r.kill:
	}
	wait.Stop()
	r.closeBoth()
	wg.Wait()
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	r.p.event(r.n, "connection closed")
}

// read reads frames from d.src, shows each and hands it to the writer.
func (r *relay) read(d *relayDirection) {
	defer close(d.frames)
	for {
		f, err := readRelayFrame(d.src, r.p.cfg.readLimit)
		var tooBig *frameTooBigError
		switch {
		case errors.As(err, &tooBig):
			r.p.event(r.n, fmt.Sprintf("%s: %v", d.name, err))
			r.injectClose(websocket.StatusMessageTooBig, "frame over the proxy's read limit", "--read-limit")
			if _, err := io.CopyN(io.Discard, d.src, tooBig.length); err != nil {
				return
			}
			continue
		case errors.Is(err, io.EOF):
			d.eof = true
			return
		case err != nil:
			select {
			case <-r.kill: // the proxy closed the connection: nothing to say
			default:
				r.p.event(r.n, fmt.Sprintf("%s: %v", d.name, err))
			}
			return
		}
		ev := d.view.observe(f.at, f.h, f.wire[len(f.wire)-int(f.h.Length):], false)
		// Once the proxy has sent its own close, nothing more is passed
		// on: the frame is shown as such.
		ev.dropped = r.closing.Load()
		f.shownDropped = ev.dropped
		r.p.showFrame(ev)
		// Frames wait for the writer (and --delay) within a budget of
		// relayQueueBytes, or one frame when it is larger: a slow end
		// slows the other instead of filling the proxy's memory.
		for range queueTokens(len(f.wire)) {
			select {
			case d.queued <- struct{}{}:
			case <-r.kill:
				return
			}
		}
		d.frames <- f // never blocks: it has room for every token
	}
}

// write passes the frames of d on, after --delay, and applies the faults.
func (r *relay) write(d *relayDirection) {
	cfg := r.p.cfg
	for f := range d.frames {
		if cfg.delay > 0 {
			if wait := time.Until(f.at.Add(cfg.delay)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-r.kill:
				}
				t.Stop()
			}
		}
		r.passOn(d, f)
		for range queueTokens(len(f.wire)) {
			<-d.queued
		}
	}
	if d.eof {
		// Pass the end of the stream on, so that the other end sees it
		// after the last frame, and let the other direction finish.
		if cw, ok := d.dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
}

// passOn writes f to d's destination unless the proxy has closed the
// connection itself, and counts the messages the faults count. With a
// fault configured, passing a message on and counting it is one step for
// both directions (passMu): otherwise a message the other way could slip
// through between the Nth and the fault.
func (r *relay) passOn(d *relayDirection, f relayFrame) {
	cfg := r.p.cfg
	if cfg.dropAfter > 0 || cfg.closeAfter > 0 {
		r.passMu.Lock()
		defer r.passMu.Unlock()
	}
	if r.closing.Load() {
		// The proxy has closed this connection itself: not passed on.
		if !f.shownDropped {
			r.p.event(r.n, fmt.Sprintf("%s: the %s frame before the close was not passed on", d.name, f.h.Opcode))
		}
		return
	}
	d.dstMu.Lock()
	_, err := d.dst.Write(f.wire)
	d.dstMu.Unlock()
	if err != nil {
		r.closeBoth()
		return
	}
	if f.h.Opcode.IsControl() || !f.h.Fin || !cfg.counts(d.name) {
		return
	}
	m := r.messages.Add(1)
	switch {
	case cfg.dropAfter > 0 && m == int64(cfg.dropAfter):
		r.p.event(r.n, fmt.Sprintf("cut without a close frame after %d messages (--drop-after)", m))
		r.closeBoth()
	case cfg.closeAfter > 0 && m == int64(cfg.closeAfter):
		r.injectClose(cfg.closeCode, "", fmt.Sprintf("after %d messages (--close-after)", m))
	}
}

// injectClose sends a close frame of the proxy's own with code and reason
// to both ends, once; nothing more is relayed, and both connections are
// closed once both ends have finished or after proxyCloseWait.
func (r *relay) injectClose(code websocket.StatusCode, reason, why string) {
	if !r.closing.CompareAndSwap(false, true) {
		return
	}
	r.p.event(r.n, fmt.Sprintf("the proxy closes both ends with %s %s", describeCode(code), why))
	payload := frame.AppendClosePayload(nil, uint16(code), reason)
	now := time.Now()
	for _, d := range []*relayDirection{r.out, r.in} { // to the client, then to the server
		h := frame.Header{Fin: true, Opcode: frame.OpClose, Length: int64(len(payload))}
		p := append([]byte(nil), payload...)
		if d == r.in {
			h.Masked = true // a client's frame (RFC 6455 section 5.3)
			rand.Read(h.MaskKey[:])
			frame.Mask(h.MaskKey, 0, p)
		}
		d.dstMu.Lock()
		d.dst.SetWriteDeadline(time.Now().Add(proxyCloseWait))
		d.dst.Write(append(frame.AppendHeader(nil, h), p...))
		d.dst.SetWriteDeadline(time.Time{})
		d.dstMu.Unlock()
		r.p.showFrame(&frameEvent{at: now, conn: r.n, dir: d.name, h: h, payload: payload, msgOp: frame.OpClose, byProxy: true})
	}
	r.mu.Lock()
	r.timer = time.AfterFunc(proxyCloseWait, r.closeBoth)
	r.mu.Unlock()
}

// closeBoth closes both connections, once.
func (r *relay) closeBoth() {
	r.killOnce.Do(func() {
		close(r.kill)
		r.client.Close()
		r.server.Close()
	})
}

// frameTooBigError is a frame longer than the proxy's read limit.
type frameTooBigError struct {
	length, limit int64
}

func (e *frameTooBigError) Error() string {
	return fmt.Sprintf("a frame of %d bytes is over --read-limit %d", e.length, e.limit)
}

// The byte budget of the frames one direction holds between its reader and
// its writer, counted in units so that small frames take one each.
const (
	relayQueueBytes  = 1 << 20
	relayQueueUnit   = 4 << 10
	relayQueueTokens = relayQueueBytes / relayQueueUnit
)

// queueTokens is how many units of the budget a frame of n bytes takes: a
// frame larger than the budget takes all of it.
func queueTokens(n int) int {
	return min(max(1, (n+relayQueueUnit-1)/relayQueueUnit), relayQueueTokens)
}

// readRelayFrame reads one frame, decoded with internal/frame. io.EOF means
// the stream ended cleanly between frames; a *frameTooBigError leaves the
// payload unread.
func readRelayFrame(br *bufio.Reader, limit int64) (relayFrame, error) {
	var hdr [frame.MaxHeaderSize]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("the stream ended inside a frame header")
		}
		return relayFrame{}, err
	}
	n := frame.HeaderLen(hdr[1])
	if _, err := io.ReadFull(br, hdr[2:n]); err != nil {
		return relayFrame{}, fmt.Errorf("the stream ended inside a frame header: %w", noEOF(err))
	}
	at := time.Now()
	h, _, err := frame.ParseHeader(hdr[:n])
	if err != nil {
		return relayFrame{}, fmt.Errorf("invalid frame header: %w", err)
	}
	if h.Length > limit {
		return relayFrame{}, &frameTooBigError{length: h.Length, limit: limit}
	}
	wire := make([]byte, n+int(h.Length))
	copy(wire, hdr[:n])
	if _, err := io.ReadFull(br, wire[n:]); err != nil {
		return relayFrame{}, fmt.Errorf("the stream ended inside a frame of %d bytes: %w", h.Length, noEOF(err))
	}
	return relayFrame{at: at, h: h, wire: wire}, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: inside a frame, an end is
// never clean.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
