package gateway

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/internal/ratelimit"
)

// Limits of the HTTP front, labels of duplex_limit_hits_total.
const (
	limitPendingConnections      = "pending_connections"        // MaxPendingConnections
	limitPendingConnectionsPerIP = "pending_connections_per_ip" // MaxPendingConnectionsPerIP
)

// HTTPServer returns an http.Server that serves Handler within the bounds
// of Limits: request headers of at most MaxHeaderBytes (431 over it),
// ReadTimeout on every request that is not a WebSocket upgrade, body
// included, IdleTimeout between kept-alive requests, and the caps on
// connections that have not upgraded (MaxPendingConnectionsPerIP and
// MaxPendingConnections), over which a new connection is closed at once.
// Serve it with Serve or ServeTLS; set its ErrorLog or TLSConfig as
// needed, but keep its ConnState, which does the counting.
//
// The deadlines do not reach WebSocket connections: net/http clears the
// connection's deadlines when the upgrade hijacks it, and from then on the
// gateway's own timeouts apply.
func (s *Server) HTTPServer() *http.Server {
	l := &s.cfg.Limits
	return &http.Server{
		Handler:        s.Handler(),
		MaxHeaderBytes: l.MaxHeaderBytes,
		// The headers of a slowloris get no more time than a whole
		// request.
		ReadHeaderTimeout: min(10*time.Second, l.ReadTimeout),
		ReadTimeout:       l.ReadTimeout,
		// A response nobody reads (a /metrics scrape from a stalled
		// client) would otherwise hold its goroutine and buffers.
		WriteTimeout: l.ReadTimeout + 15*time.Second,
		IdleTimeout:  l.IdleTimeout,
		ConnState:    s.pending.connState,
		// The connection a request came on, for the requests that stop
		// counting it as pending: HTTP/2 WebSockets (h2.go) and fallback
		// streams (fallback.go), as an upgrade does.
		ConnContext: withTCPConn,
	}
}

// pendingConns counts the connections of the HTTPServer that have not
// upgraded, per peer address and in total, and closes those over the caps
// as soon as they are accepted, before net/http reads a byte from them.
type pendingConns struct {
	s       *Server
	perIP   *ratelimit.PerKey
	max     int // <= 0: no cap
	total   atomic.Int64
	mu      sync.Mutex
	tracked map[net.Conn]string // conn → its peer's address ("" when not counted per IP)
}

func (p *pendingConns) init(s *Server) {
	p.s = s
	p.perIP = ratelimit.NewPerKey(s.cfg.Limits.MaxPendingConnectionsPerIP)
	p.max = s.cfg.Limits.MaxPendingConnections
	p.tracked = make(map[net.Conn]string)
	s.metrics.gaugeFunc("duplex_pending_connections",
		"HTTP connections that have not upgraded to WebSocket: requests in progress, kept-alive and silent connections.",
		func() float64 { return float64(p.total.Load()) })
}

// connState is the http.Server's ConnState hook.
func (p *pendingConns) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		if !p.admit(c) {
			c.Close()
		}
	case http.StateHijacked, http.StateClosed:
		p.release(c)
	}
}

func (p *pendingConns) admit(c net.Conn) bool {
	if p.max > 0 && p.total.Add(1) > int64(p.max) {
		p.total.Add(-1)
		p.s.metrics.limitHits.With(limitPendingConnections).Inc()
		return false
	} else if p.max <= 0 {
		p.total.Add(1)
	}
	key := ""
	if peer, ok := addrOf(c.RemoteAddr()); ok && !p.s.trustedProxy(peer) {
		key = peer.String()
		if !p.perIP.Acquire(key) {
			p.total.Add(-1)
			p.s.metrics.limitHits.With(limitPendingConnectionsPerIP).Inc()
			return false
		}
	}
	p.mu.Lock()
	p.tracked[c] = key
	p.mu.Unlock()
	return true
}

// release forgets c once: on the upgrade (the session counts it from
// then on) or when it closes without one.
func (p *pendingConns) release(c net.Conn) {
	p.mu.Lock()
	key, ok := p.tracked[c]
	delete(p.tracked, c)
	p.mu.Unlock()
	if !ok {
		return // refused at StateNew, or released at the upgrade
	}
	p.total.Add(-1)
	if key != "" {
		p.perIP.Release(key)
	}
}

// addrOf returns the IP address of a TCP peer.
func addrOf(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// trustedProxy reports whether ip is in Limits.TrustedProxies.
func (s *Server) trustedProxy(ip netip.Addr) bool {
	for _, p := range s.cfg.Limits.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP returns the address per-IP limits count r against: the TCP
// peer's, or, when the peer is a trusted proxy, the one ClientIPHeader
// names. Of a list such as X-Forwarded-For's, the rightmost address that
// is not a trusted proxy is taken: each proxy appends the address it got
// the request from, so everything to the left of that was written by the
// client and may be forged.
func (s *Server) clientIP(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	ip := peer.Addr().Unmap()
	h := s.cfg.Limits.ClientIPHeader
	if h == "" || !s.trustedProxy(ip) {
		return ip.String()
	}
	values := r.Header.Values(h)
	for i := len(values) - 1; i >= 0; i-- {
		items := strings.Split(values[i], ",")
		for j := len(items) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(items[j]))
			if err != nil {
				// A hop that is not an address cannot be trusted, nor
				// anything left of it: the last good one stands.
				return ip.String()
			}
			ip = hop.Unmap()
			if !s.trustedProxy(ip) {
				return ip.String()
			}
		}
	}
	// Proxies all the way: the leftmost of them is the client as far
	// as anyone can tell.
	return ip.String()
}

// loopbackClient reports whether r comes from this machine: its TCP peer
// is a loopback address, and no trusted proxy forwarded it for another.
func (s *Server) loopbackClient(r *http.Request) bool {
	ip, err := netip.ParseAddr(s.clientIP(r))
	return err == nil && ip.IsLoopback()
}

// loopbackHost reports whether the Host of r names this machine:
// "localhost" or a loopback address, with any port. A page of another
// site whose name was rebound to 127.0.0.1 still sends its own name.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// serveMetrics serves /metrics to a holder of MetricsToken, or, without
// one configured, to loopback clients only: the figures say how loaded the
// server is and where it hurts, which helps an attacker aim.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if tok := s.cfg.MetricsToken; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics need the bearer token", http.StatusUnauthorized)
			return
		}
	} else if !s.loopbackClient(r) {
		s.log.Debug("metrics refused to a remote client", slog.String("remote", r.RemoteAddr))
		http.Error(w, "metrics are served to loopback clients only (set a metrics token)", http.StatusForbidden)
		return
	}
	s.metrics.handler.ServeHTTP(w, r)
}

// authHeader returns what a session keeps of its upgrade request's header
// until connect: only what Hooks.Authenticate may need (Cookie and
// Authorization), and nothing without the hook. Keeping the whole header
// let every silent connection hold up to MaxHeaderBytes for the connect
// timeout.
func authHeader(h http.Header, hook bool) http.Header {
	if !hook {
		return nil
	}
	out := make(http.Header, 2)
	for _, k := range []string{"Cookie", "Authorization"} {
		for _, v := range h.Values(k) {
			// A copy, so as not to pin a larger buffer v may be part of.
			out[k] = append(out[k], strings.Clone(v))
		}
	}
	return out
}
