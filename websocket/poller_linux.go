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
	loopFn  func() // loop, bound once

	// The epoll_ctl of a park, under mu: ctl, bound once, arms ctlEv for
	// the descriptor it is given and reports in ctlErr, so that a park
	// allocates nothing.
	ctl    func(fd uintptr)
	ctlEv  syscall.EpollEvent
	ctlErr error
}

// havePoller: Await parks connections here.
const havePoller = true

var (
	thePoller     poller
	thePollerOnce sync.Once
)

func getPoller() *poller {
	thePollerOnce.Do(func() {
		p := &thePoller
		p.waiting = make(map[uint64]*Conn)
		p.loopFn, p.ctl = p.loop, p.arm
		p.err = p.es.open("duplex-poller", 128)
	})
	if thePoller.err != nil {
		return nil
	}
	return &thePoller
}

// park puts c, which holds readMu for an Await whose state is a and has
// nothing to read, in the poller. It returns false when c cannot wait
// there; then c is still the caller's.
func (c *Conn) park(a *awaitState) bool {
	if c.raw == nil {
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
	p.ctlEv = syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	p.ctlEv.Fd, p.ctlEv.Pad = int32(token), int32(token>>32)
	p.ctlErr = nil
	if err := c.raw.Control(p.ctl); err != nil || p.ctlErr != nil {
		return false // closed meanwhile, or epoll refused
	}
	a.token = token
	p.waiting[token] = c
	if !p.running {
		p.running = true
		go p.loopFn()
	}
	return true // the poller or unpark continues the Await: c is theirs
}

// arm registers the descriptor fd for p.ctlEv. One-shot leaves a
// descriptor in the set, disarmed, after its first wait: so it rearms
// the descriptor, and adds it if it is not there (its first wait; one
// closed leaves the set). p.mu is held.
func (p *poller) arm(fd uintptr) {
	p.ctlErr = syscall.EpollCtl(p.es.epfd, syscall.EPOLL_CTL_MOD, int(fd), &p.ctlEv)
	if p.ctlErr == syscall.ENOENT {
		p.ctlErr = syscall.EpollCtl(p.es.epfd, syscall.EPOLL_CTL_ADD, int(fd), &p.ctlEv)
	}
}

// unpark ends c's wait in the poller, if it has one, and continues its
// Await, which finds the connection closed. c is closing.
func (c *Conn) unpark() {
	a := c.await.Load()
	if a == nil {
		return // it never awaited
	}
	p := &thePoller
	p.mu.Lock()
	token := a.token
	mine := token != 0 && p.waiting[token] == c
	if mine {
		delete(p.waiting, token)
		a.token = 0
		p.wakeIfIdle()
	}
	p.mu.Unlock()
	if mine {
		go a.wake()
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
				c.await.Load().token = 0
				woken = append(woken, c)
			}
		}
		stop := len(p.waiting) == 0
		if stop {
			p.running = false
		}
		p.mu.Unlock()
		for i, c := range woken {
			wake := c.await.Load().wake // bound once: go allocates nothing
			go wake()
			woken[i] = nil
		}
		if stop {
			return
		}
	}
}
