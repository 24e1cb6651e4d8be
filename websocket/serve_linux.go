package websocket

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A serveLoop holds connections that Serve serves: an epoll set in which
// each waits level-triggered for as long as it is served, and a goroutine,
// its drainer, that drains the set. The drainer waits for the set itself
// to become readable through the runtime's netpoller (an epoll set is a
// pollable descriptor), so it holds no thread while nothing arrives; then
// it collects the ready connections with a non-blocking epoll_wait and, for
// each, reads once and delivers every whole message read. A connection
// whose data is not all read stays ready, so the next epoll_wait reports it
// again: no read is made to find out that nothing is left, and no
// epoll_ctl is needed between messages.
//
// The drainer exists while the set holds some connection.
//
// An onMessage that blocks (a Write to a peer that does not read) must not
// stop the set: a watchdog, a timer armed while the drainer delivers,
// notices a delivery that has lasted takeoverAfter or more and starts a
// new drainer, which takes the set over; the connection being delivered
// leaves the epoll set meanwhile, and the old drainer, once its onMessage
// returns, puts it back and ends (takeOver, handBack). So a loop's
// goroutines are its drainer and one for each callback blocked at the
// time.
//
// Each registration has a token, which the event carries; a token no
// longer in the table (the connection was closed meanwhile) is ignored.
type serveLoop struct {
	mu       sync.Mutex
	es       epollSet
	conns    map[uint64]*Conn
	next     uint64
	running  bool     // a drainer exists
	drainer  *drainer // the current one, while running
	replaced int      // drainers taken over whose onMessage has not returned yet
	scratch  []byte   // the last drainer's, kept for the next while none runs

	// The watchdog: the timer is armed (armed true) from the start of a
	// delivery until it fires and finds the drainer between deliveries.
	watchdog *time.Timer
	armed    atomic.Bool
	lastSeq  uint64 // the drainer's seq when the watchdog last fired (under mu)
}

// A drainer is one goroutine draining a loop's set.
type drainer struct {
	// seq counts the drainer's deliveries, odd during one; the watchdog
	// sets it to takenOver to take the set over from a delivery that has
	// lasted too long.
	seq     atomic.Uint64
	ready   []*Conn // the connections of the current wait; nil once delivered and gone
	current int     // the index in ready of the delivery under way
	scratch []byte  // what onMessage is given
}

// takenOver is the seq of a drainer that the watchdog has replaced; an
// even number no delivery reaches.
const takenOver = 1<<64 - 2

// takeoverAfter is how long one delivery may keep the set from its other
// connections before another drainer takes over: longer than a delivery
// that does not wait (a read and a few writes to the kernel), short enough
// for the others not to notice much. The watchdog notices it after
// between one and two of these.
const takeoverAfter = 10 * time.Millisecond

// loopState is a served Conn's place in its loop.
type loopState struct {
	loop  *serveLoop
	token uint64 // of its registration; 0 when not in the set (under loop.mu)
	busy  bool   // a drainer is delivering its messages (under loop.mu)
}

var (
	serveLoops     []*serveLoop
	serveLoopsOnce sync.Once
	serveLoopNext  atomic.Uint32
)

func getServeLoops() []*serveLoop {
	serveLoopsOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		for range n {
			l, err := newServeLoop()
			if err != nil {
				return // with fewer loops, or none: Serve reads in goroutines
			}
			serveLoops = append(serveLoops, l)
		}
	})
	return serveLoops
}

func loopsAvailable() bool { return len(getServeLoops()) > 0 }

func newServeLoop() (*serveLoop, error) {
	l := &serveLoop{conns: make(map[uint64]*Conn)}
	if err := l.es.open("duplex-serve", 256); err != nil {
		return nil, err
	}
	l.watchdog = time.AfterFunc(time.Hour, l.watch)
	l.watchdog.Stop()
	return l, nil
}

// enterLoop registers c in a loop, which delivers its messages from then
// on, and reports whether it did; c must not be touched after true. The
// caller holds readMu for Serve and has delivered what c buffered.
func (c *Conn) enterLoop() bool {
	if c.raw == nil {
		return false
	}
	loops := getServeLoops()
	if len(loops) == 0 {
		return false
	}
	s := c.serving
	l := s.loop
	if l == nil {
		l = loops[int(serveLoopNext.Add(1))%len(loops)]
		s.loop = l
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.isClosed() {
		// As in park: checked under l.mu, an open c's unserve comes after
		// this registration and ends it.
		go c.serveEnd()
		return true
	}
	l.next++
	token := l.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP}
	ev.Fd, ev.Pad = int32(token), int32(token>>32)
	var ctlErr error
	err := c.raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(l.es.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || ctlErr != nil {
		return false // closed meanwhile, or epoll refused: a goroutine reads
	}
	s.token = token
	l.conns[token] = c
	if !l.running {
		l.start()
	}
	return true
}

// start starts a drainer, the current one from now on. l.mu is held.
func (l *serveLoop) start() {
	d := &drainer{ready: make([]*Conn, 0, 256), scratch: l.scratch}
	l.running, l.drainer, l.lastSeq, l.scratch = true, d, 0, nil
	go l.run(d)
}

// leaveLoop takes c out of its loop's set. l.mu is held.
func (c *Conn) leaveLoop(l *serveLoop) {
	delete(l.conns, c.serving.token)
	c.serving.token = 0
	c.raw.Control(func(fd uintptr) {
		syscall.EpollCtl(l.es.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// unserve ends c's wait in its loop, if it waits there, and ends serving.
// c is closing, its descriptor not yet closed.
func (c *Conn) unserve() {
	s := c.serving
	if s == nil || s.loop == nil {
		return
	}
	l := s.loop
	l.mu.Lock()
	end := s.token != 0 && !s.busy
	if end {
		c.leaveLoop(l)
		if len(l.conns) == 0 && l.running {
			l.es.wakeUp() // so that it ends
		}
	}
	l.mu.Unlock()
	if end {
		// The loop no longer touches c, and readMu is still Serve's.
		go c.serveEnd()
	}
}

// run is a drainer's goroutine. It ends when the set holds no connection,
// or after a delivery the watchdog took the set over from.
func (l *serveLoop) run(d *drainer) {
	for {
		events := l.es.wait()
		ready := d.ready[:0]
		l.mu.Lock()
		for _, ev := range events {
			if c, ok := l.conns[eventToken(ev)]; ok && !c.serving.busy {
				c.serving.busy = true
				ready = append(ready, c)
			}
		}
		d.ready = ready
		l.mu.Unlock()
		for i, c := range ready {
			d.current = i
			seq := d.seq.Add(1) // odd: a delivery is under way
			if !l.armed.Load() && l.armed.CompareAndSwap(false, true) {
				l.watchdog.Reset(takeoverAfter)
			}
			kept := l.deliver(c, &d.scratch)
			if !d.seq.CompareAndSwap(seq, seq+1) {
				l.handBack(c, kept) // the set is another drainer's now
				return
			}
			if !kept {
				ready[i] = nil // no longer the loop's
			}
		}
		l.mu.Lock()
		var closing []*Conn
		for i, c := range ready {
			if c == nil {
				continue
			}
			ready[i] = nil
			c.serving.busy = false
			if c.isClosed() && c.serving.token != 0 {
				// unserve found it busy and left its end to the loop.
				c.leaveLoop(l)
				closing = append(closing, c)
			}
		}
		stop := len(l.conns) == 0
		if stop {
			l.running, l.drainer, l.scratch = false, nil, d.scratch
		}
		l.mu.Unlock()
		for _, c := range closing {
			c.serveEnd()
		}
		if stop {
			return
		}
	}
}

// watch is the watchdog's timer function. Between deliveries it disarms;
// during one it rearms, and when the same delivery is still under way a
// whole period later it takes the set over from the drainer.
func (l *serveLoop) watch() {
	l.mu.Lock()
	var closing []*Conn
	defer func() {
		l.mu.Unlock()
		for _, c := range closing {
			c.serveEnd()
		}
	}()
	// Disarmed first, then seq read: a drainer that starts a delivery
	// after this read sees armed false and arms the timer itself (both
	// sides write, then read, the other's atomic).
	l.armed.Store(false)
	d := l.drainer
	if d == nil {
		return
	}
	seq := d.seq.Load()
	if seq&1 == 0 {
		l.lastSeq = seq
		return
	}
	if seq == l.lastSeq && d.seq.CompareAndSwap(seq, takenOver) {
		closing = l.takeOver(d)
		return
	}
	l.lastSeq = seq
	if l.armed.CompareAndSwap(false, true) {
		l.watchdog.Reset(takeoverAfter)
	}
}

// takeOver replaces d, whose delivery has lasted too long, with a new
// drainer: the connection d delivers leaves the epoll set until d hands it
// back, and d's other ready connections are the set's again. It returns
// those of them that were closed meanwhile, whose end was left to d, for
// serveEnd. l.mu is held, and d no longer touches its ready connections.
func (l *serveLoop) takeOver(d *drainer) (closing []*Conn) {
	for i, c := range d.ready {
		if c == nil {
			continue
		}
		d.ready[i] = nil
		if i == d.current {
			c.raw.Control(func(fd uintptr) {
				syscall.EpollCtl(l.es.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
			})
			continue
		}
		c.serving.busy = false
		if c.isClosed() && c.serving.token != 0 {
			c.leaveLoop(l)
			closing = append(closing, c)
		}
	}
	l.replaced++
	l.start()
	return closing
}

// handBack ends a drainer that was taken over, once its delivery to c has
// returned; kept says whether c is still in the loop, out of the epoll set
// since the takeover. It puts c back in the set, or ends it if it was
// closed meanwhile.
func (l *serveLoop) handBack(c *Conn, kept bool) {
	l.mu.Lock()
	l.replaced--
	end := false
	if kept {
		c.serving.busy = false
		end = c.isClosed()
		if !end {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP}
			ev.Fd, ev.Pad = int32(c.serving.token), int32(c.serving.token>>32)
			var ctlErr error
			err := c.raw.Control(func(fd uintptr) {
				ctlErr = syscall.EpollCtl(l.es.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
			})
			end = err != nil || ctlErr != nil
		}
		if end {
			c.leaveLoop(l)
		}
	}
	if len(l.conns) == 0 && l.running {
		l.es.wakeUp() // so that the current drainer ends
	}
	l.mu.Unlock()
	if end {
		c.serveEnd()
	}
}

// deliver reads once from c, which the set reported ready, and delivers
// what that completed, with scratch for onMessage's payloads. It reports
// whether c is still in the loop.
func (l *serveLoop) deliver(c *Conn, scratch *[]byte) bool {
	c.takeReadBuffer()
	br := c.br
	if br.buf == nil {
		br.take()
	} else if br.r > 0 {
		br.w = copy(br.buf, br.buf[br.r:br.w])
		br.r = 0
	}
	k, err := br.readInto(nil)
	br.w += k
	action := c.dispatch(scratch)
	if action == serveWait && err != nil && err != errWouldBlock {
		// What arrived before the error is delivered first.
		c.readError(context.Background(), err)
		action = serveEnded
	}
	if action == serveWait {
		return true
	}
	l.mu.Lock()
	c.serving.busy = false
	c.leaveLoop(l)
	l.mu.Unlock()
	if action == serveEnded {
		c.serveEnd()
	} else {
		go c.serveBlocking()
	}
	return false
}
