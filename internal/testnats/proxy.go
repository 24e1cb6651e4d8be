package testnats

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// proxy forwards loopback TCP connections to the server's current
// address, so that clients keep one address across restarts and the
// connections can be cut while the server runs on.
type proxy struct {
	ln       net.Listener
	upstream func() string // "" while the server is down

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both ends of every proxied connection
	closed bool
	wg     sync.WaitGroup // the accept loop and every connection's copiers
}

func newProxy(upstream func() string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, upstream: upstream, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to the server and copies both ways until either side
// ends; a client that arrives while the server is down is closed at once,
// as a refused connection would be.
func (p *proxy) serve(c net.Conn) {
	addr := p.upstream()
	if addr == "" {
		c.Close()
		return
	}
	s, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, s) {
		c.Close()
		s.Close()
		return
	}
	var copiers sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// One direction ended: end the connection, as a real one would.
		dst.Close()
		src.Close()
	}
	copiers.Go(func() { pipe(s, c) })
	copiers.Go(func() { pipe(c, s) })
	copiers.Wait()
	p.untrack(c, s)
}

func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

// cut closes every proxied connection; new ones are accepted as before.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// close stops accepting, cuts every connection and waits for the proxy's
// goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
