package websocket

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// A serveLoop holds connections that Serve serves: an epoll set in which
// each waits level-triggered for as long as it is served, and one
// goroutine that drains the set. The goroutine waits for the set itself to
// become readable through the runtime's netpoller (an epoll set is a
// pollable descriptor), so it holds no thread while nothing arrives; then
// it collects the ready connections with a non-blocking epoll_wait and, for
// each, reads once and delivers every whole message read. A connection
// whose data is not all read stays ready, so the next epoll_wait reports it
// again: no read is made to find out that nothing is left, and no
// epoll_ctl is needed between messages.
//
// The goroutine exists while the set holds some connection.
//
// Each registration has a token, which the event carries; a token no
// longer in the table (the connection was closed meanwhile) is ignored.
type serveLoop struct {
	mu      sync.Mutex
	es      epollSet
	conns   map[uint64]*Conn
	next    uint64
	running bool   // the loop's goroutine exists
	scratch []byte // what onMessage is given; the loop's goroutine's
}

// loopState is a served Conn's place in its loop.
type loopState struct {
	loop  *serveLoop
	token uint64 // of its registration; 0 when not in the set (under loop.mu)
	busy  bool   // the loop's goroutine is delivering its messages (under loop.mu)
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
	return l, nil
}

func scratchOf(l *serveLoop) *[]byte {
	if l == nil {
		return new([]byte)
	}
	return &l.scratch
}

// enterLoop registers c in a loop, which delivers its messages from then
// on, and reports whether it did; c must not be touched after true. The
// caller holds readMu for Serve and has delivered what c buffered.
func (c *Conn) enterLoop() bool {
	if c.serving.raw == nil {
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
	err := s.raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(l.es.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || ctlErr != nil {
		return false // closed meanwhile, or epoll refused: a goroutine reads
	}
	s.token = token
	l.conns[token] = c
	if !l.running {
		l.running = true
		go l.run()
	}
	return true
}

// leaveLoop takes c out of its loop's set. l.mu is held.
func (c *Conn) leaveLoop(l *serveLoop) {
	delete(l.conns, c.serving.token)
	c.serving.token = 0
	c.serving.raw.Control(func(fd uintptr) {
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

// run is the loop's goroutine. It ends when the set holds no connection.
func (l *serveLoop) run() {
	ready := make([]*Conn, 0, 256)
	for {
		events := l.es.wait()
		ready = ready[:0]
		l.mu.Lock()
		for _, ev := range events {
			if c, ok := l.conns[eventToken(ev)]; ok {
				c.serving.busy = true
				ready = append(ready, c)
			}
		}
		l.mu.Unlock()
		for i, c := range ready {
			if !l.deliver(c) {
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
			l.running = false
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

// deliver reads once from c, which the set reported ready, and delivers
// what that completed. It reports whether c is still in the loop.
func (l *serveLoop) deliver(c *Conn) bool {
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
	action := c.dispatch(&l.scratch)
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
