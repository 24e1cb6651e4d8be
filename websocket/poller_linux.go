package websocket

import (
	"sync"
	"syscall"
)

// The poller holds connections that wait in Await. It is one epoll set for
// the process, and a goroutine that exists while some connection waits.
// The goroutine waits for the set itself to become readable through the
// runtime's netpoller (an epoll set is a pollable descriptor), so it holds
// no thread; then it collects the ready connections with a non-blocking
// epoll_wait and hands each to a new goroutine, which continues its Await.
//
// Each wait registers the descriptor one-shot, with a token that names
// this wait; a token no longer in the table (the connection was closed
// meanwhile and its Await ended) is ignored.
type poller struct {
	mu      sync.Mutex
	es      epollSet
	waiting map[uint64]*Conn
	next    uint64
	running bool // the poller's goroutine exists
	err     error
}

// parkState is a Conn's place in the poller.
type parkState struct {
	token      uint64 // of the wait in progress; 0 when none (under poller.mu)
	registered bool   // the descriptor is in the epoll set (under readMu)
}

var (
	thePoller     poller
	thePollerOnce sync.Once
)

func getPoller() *poller {
	thePollerOnce.Do(func() {
		p := &thePoller
		p.waiting = make(map[uint64]*Conn)
		p.err = p.es.open("duplex-poller", 128)
	})
	if thePoller.err != nil {
		return nil
	}
	return &thePoller
}

// park puts c, which holds readMu and has nothing to read, in the poller.
// It returns false when c cannot wait there; then c is still the caller's.
func (c *Conn) park() bool {
	if c.br.raw == nil {
		return false
	}
	p := getPoller()
	if p == nil {
		return false
	}
	// All under p.mu, which the poller takes before it hands c on: what c
	// did before waiting happens before whatever continues the Await.
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.isClosed() {
		// closeNetConn sets c.closed, then unparks under p.mu, then
		// closes the descriptor. Checked under p.mu, an open c means its
		// unpark comes after this wait is in the table and ends it; a
		// closed one may have unparked already, and a descriptor it
		// closes next would leave this wait in the set forever.
		return false
	}
	p.next++
	token := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(token), int32(token>>32)
	// One-shot leaves the descriptor in the set, disarmed: rearm it.
	op := syscall.EPOLL_CTL_ADD
	if c.parked.registered {
		op = syscall.EPOLL_CTL_MOD
	}
	var ctlErr error
	err := c.br.raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(p.es.epfd, op, int(fd), &ev)
		switch {
		case ctlErr == syscall.ENOENT && op == syscall.EPOLL_CTL_MOD:
			ctlErr = syscall.EpollCtl(p.es.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		case ctlErr == syscall.EEXIST && op == syscall.EPOLL_CTL_ADD:
			ctlErr = syscall.EpollCtl(p.es.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err != nil || ctlErr != nil {
		return false // closed meanwhile, or epoll refused
	}
	c.parked.registered = true
	c.parked.token = token
	p.waiting[token] = c
	if !p.running {
		p.running = true
		go p.loop()
	}
	return true // the poller or unpark continues the Await: c is theirs
}

// unpark ends c's wait in the poller, if it has one, and continues its
// Await, which finds the connection closed. c is closing.
func (c *Conn) unpark() {
	p := &thePoller
	p.mu.Lock()
	token := c.parked.token
	mine := token != 0 && p.waiting[token] == c
	if mine {
		delete(p.waiting, token)
		c.parked.token = 0
		p.wakeIfIdle()
	}
	p.mu.Unlock()
	if mine {
		go c.awaitWake()
	}
}

// wakeIfIdle wakes the poller's goroutine when nothing waits any more, so
// that it ends. p.mu is held.
func (p *poller) wakeIfIdle() {
	if len(p.waiting) == 0 && p.running {
		p.es.wakeUp()
	}
}

// loop is the poller's goroutine. It ends when no connection waits.
func (p *poller) loop() {
	var woken []*Conn
	for {
		ready := p.es.wait()
		woken = woken[:0]
		p.mu.Lock()
		for _, ev := range ready {
			if c, ok := p.waiting[eventToken(ev)]; ok {
				delete(p.waiting, eventToken(ev))
				c.parked.token = 0
				woken = append(woken, c)
			}
		}
		stop := len(p.waiting) == 0
		if stop {
			p.running = false
		}
		p.mu.Unlock()
		for i, c := range woken {
			go c.awaitWake()
			woken[i] = nil
		}
		if stop {
			return
		}
	}
}
