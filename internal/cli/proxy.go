package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"

	"github.com/duplexws/duplex/internal/httptoken"
)

// proxyHandshakeTimeout bounds dialing the server and its handshake answer.
const proxyHandshakeTimeout = 10 * time.Second

// proxy is duplex proxy: an HTTP server whose WebSocket upgrades it relays
// frame by frame to the server of its target, and whose other requests it
// passes on with a reverse proxy.
type proxy struct {
	cfg         *proxyConfig
	upstreamTLS *tls.Config // for a wss:// target; nil for the defaults
	printer     *framePrinter
	rec         *recorder // nil without --record
	logger      *slog.Logger

	nextConn atomic.Int64 // numbers WebSocket connections from 1
	showMu   sync.Mutex   // orders the lines printed and recorded, and their times

	mu      sync.Mutex
	relays  map[*relay]struct{} // guarded by mu
	closing bool                // guarded by mu: serve is ending
	wg      sync.WaitGroup      // one per relay
}

// serve accepts on ln (with TLS when tlsCfg is not nil) until ctx ends,
// then closes every relayed connection with 1001 and returns nil.
func (p *proxy) serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	if tlsCfg != nil {
		tlsCfg.NextProtos = []string{"http/1.1"} // a hijacked HTTP/2 stream cannot carry RFC 6455
		ln = tls.NewListener(ln, tlsCfg)
	}
	p.relays = map[*relay]struct{}{}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: proxyHandshakeTimeout,
		ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		served <- err
	}
	p.mu.Lock()
	p.closing = true
	for r := range p.relays {
		r.injectClose(websocket.StatusGoingAway, "proxy shutting down", "(shutting down)")
	}
	p.mu.Unlock()
	srv.Close()
	p.wg.Wait()
	if serr := <-served; err == nil && !errors.Is(serr, http.ErrServerClosed) {
		err = serr
	}
	return err
}

// ServeHTTP relays a WebSocket upgrade, or passes any other request on.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isWebSocketUpgrade(r.Header) {
		p.forwardHTTP(w, r)
		return
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		http.Error(w, "duplex proxy is shutting down", http.StatusServiceUnavailable)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()

	n := p.nextConn.Add(1)
	out := p.upstreamRequest(r)
	ctx, cancel := context.WithTimeout(r.Context(), proxyHandshakeTimeout)
	server, serverR, resp, err := p.handshake(ctx, out)
	cancel()
	if err != nil {
		p.logger.Warn("cannot reach the server", "conn", n, "to", p.cfg.target.String(), "err", err)
		p.event(n, fmt.Sprintf("cannot reach %s: %v", p.cfg.target, err))
		http.Error(w, "duplex proxy: cannot reach the server: "+err.Error(), http.StatusBadGateway)
		return
	}
	p.showMu.Lock()
	now := time.Now()
	p.printer.handshake(now, n, r.RemoteAddr, out, resp)
	if p.rec != nil {
		p.rec.handshake(now, n, r.RemoteAddr, out, resp)
	}
	p.showMu.Unlock()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer server.Close()
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, io.LimitReader(resp.Body, p.cfg.readLimit))
		return
	}
	client, clientRW, err := http.NewResponseController(w).Hijack()
	if err != nil {
		server.Close()
		p.logger.Warn("cannot take over the client's connection", "conn", n, "err", err)
		return
	}
	var head strings.Builder
	fmt.Fprintf(&head, "HTTP/1.1 %s\r\n", resp.Status)
	h := resp.Header.Clone()
	removeHopByHop(h)
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Write(&head)
	head.WriteString("\r\n")
	client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, head.String()); err != nil {
		client.Close()
		server.Close()
		p.logger.Warn("cannot answer the client", "conn", n, "err", err)
		return
	}
	rl := newRelay(p, n, client, clientRW.Reader, server, serverR, negotiatedDeflate(resp.Header))
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		rl.injectClose(1001, "proxy shutting down", "--")
	} else {
		p.relays[rl] = struct{}{}
		p.mu.Unlock()
	}
	rl.run()
	p.mu.Lock()
	delete(p.relays, rl)
	p.mu.Unlock()
}

// upstreamRequest returns the client's upgrade request as it goes to the
// server: to the target's host, without hop-by-hop headers.
func (p *proxy) upstreamRequest(r *http.Request) *http.Request {
	uri := r.URL.RequestURI()
	if t := p.cfg.target; t.Path != "" && t.Path != "/" {
		uri = t.RequestURI()
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		u = &url.URL{Path: "/"}
	}
	h := r.Header.Clone()
	removeHopByHop(h)
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // Request.Write would send Go's own otherwise
	}
	host := p.cfg.target.Host
	if p.cfg.keepHost {
		host = r.Host
	}
	return &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       host,
		Header:     h,
	}
}

// handshake dials the server, sends it out and reads its answer. The
// returned reader holds what the server sent after its answer.
func (p *proxy) handshake(ctx context.Context, out *http.Request) (net.Conn, *bufio.Reader, *http.Response, error) {
	t := p.cfg.target
	host, port := t.Hostname(), t.Port()
	if port == "" {
		port = "80"
		if t.Scheme == "wss" {
			port = "443"
		}
	}
	conn, err := new(net.Dialer).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, nil, nil, err
	}
	if t.Scheme == "wss" {
		cfg := p.upstreamTLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	br := bufio.NewReader(conn)
	if err := out.Write(conn); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("reading the handshake answer: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return conn, br, resp, nil
}

// forwardHTTP passes a request that is not a WebSocket upgrade on to the
// server of the target and prints one line for it.
func (p *proxy) forwardHTTP(w http.ResponseWriter, r *http.Request) {
	target := *p.cfg.target
	target.Scheme = strings.Replace(target.Scheme, "ws", "http", 1)
	target.Path, target.RawPath, target.RawQuery = "", "", ""
	status := 0
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&target)
			if p.cfg.keepHost {
				pr.Out.Host = pr.In.Host
			}
		},
		Transport: &http.Transport{TLSClientConfig: p.upstreamTLS, Proxy: nil},
		ModifyResponse: func(resp *http.Response) error {
			status = resp.StatusCode
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status = http.StatusBadGateway
			p.logger.Warn("cannot pass a request on", "method", r.Method, "uri", r.URL.RequestURI(), "err", err)
			http.Error(w, "duplex proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
	if tr, ok := rp.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
	p.printer.httpLine(time.Now(), r.Method, r.URL.RequestURI(), status)
}

// isWebSocketUpgrade reports whether a request asks for a WebSocket upgrade
// (RFC 6455 section 4.1).
func isWebSocketUpgrade(h http.Header) bool {
	return httptoken.Has(h, "Connection", "upgrade") && httptoken.Has(h, "Upgrade", "websocket")
}

// hopByHop are the headers that concern one connection only (RFC 9110
// section 7.6.1), and the proxy headers of older clients.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes from h the hop-by-hop headers and those its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// copyHeader adds the end-to-end headers of src to dst.
func copyHeader(dst, src http.Header) {
	src = src.Clone()
	removeHopByHop(src)
	for name, values := range src {
		dst[name] = append(dst[name], values...)
	}
}
