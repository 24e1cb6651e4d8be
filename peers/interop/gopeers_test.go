package interop

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The Go peers, gorilla and coder, run in this process: as clients they run
// the same plans as the peers outside Go, through goClient; as servers they
// serve the paths of js/ws_server.mjs through goPeerServer.

// goClient is a Go peer's client connection, adapted to the steps of a
// plan. A goroutine reads the connection into inbox, which answers pings
// and reads pongs as the peer's API requires, and closes inbox when
// reading ends, after setting closeCode and closeReason to the close the
// peer received (-1 for none).
type goClient struct {
	protocol, extensions string
	send                 func(ctx context.Context, kind string, b []byte, fragments int) error
	ping                 func(ctx context.Context) error
	startClose           func(code int, reason string) error // sends the close frame (coder's waits for the answer too)
	closeNow             func()

	inbox       chan inboxMessage
	stop        chan struct{} // closed to make the reading goroutine give up delivering
	readDone    chan struct{}
	closeCode   int
	closeReason string
	// closeAnswered: startClose saw the peer answer, though the reading
	// goroutine may not have seen the answer's code (coder).
	closeAnswered bool
}

type inboxMessage struct {
	kind string
	data []byte
}

func newGoClient() *goClient {
	return &goClient{inbox: make(chan inboxMessage), stop: make(chan struct{}), readDone: make(chan struct{}), closeCode: -1}
}

// readLoop runs read until it fails, delivering the messages, and records
// the close it failed with; close reports a close error's code and reason.
func (g *goClient) readLoop(read func() (string, []byte, error), closeOf func(error) (int, string, bool)) {
	defer close(g.readDone)
	defer close(g.inbox)
	for {
		kind, b, err := read()
		if err != nil {
			if code, reason, ok := closeOf(err); ok {
				g.closeCode, g.closeReason = code, reason
			}
			return
		}
		select {
		case g.inbox <- inboxMessage{kind, b}:
		case <-g.stop:
			return
		}
	}
}

// runGoSession runs a session with a Go peer's client.
func runGoSession(ctx context.Context, s session, dial func(ctx context.Context, s session) (*goClient, error)) (r sessionResult) {
	start := time.Now()
	r = sessionResult{Name: s.Name}
	defer func() { r.Ms = time.Since(start).Milliseconds() }()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(s.Steps)+1)*stepTimeout)
	defer cancel()
	g, err := dial(ctx, s)
	if err != nil {
		r.Error = "dial: " + err.Error()
		return r
	}
	defer func() {
		g.closeNow()
		close(g.stop)
		<-g.readDone
	}()
	r.Protocol, r.Extensions = g.protocol, g.extensions
	for _, st := range s.Steps {
		sr, err := g.runStep(ctx, st)
		if err != nil {
			r.Error = st.name() + ": " + err.Error()
			return r
		}
		r.Steps = append(r.Steps, sr)
	}
	return r
}

func (g *goClient) next(ctx context.Context) (inboxMessage, error) {
	select {
	case m, ok := <-g.inbox:
		if !ok {
			return m, errors.New("the connection ended while waiting for a message")
		}
		return m, nil
	case <-ctx.Done():
		return inboxMessage{}, ctx.Err()
	}
}

func (g *goClient) waitClosed(ctx context.Context) (stepResult, error) {
	select {
	case <-g.readDone:
	case <-ctx.Done():
		return stepResult{}, ctx.Err()
	}
	code, reason := g.closeCode, g.closeReason
	if code == -1 && g.closeAnswered {
		return stepResult{Answered: true}, nil
	}
	return stepResult{Code: &code, Reason: &reason}, nil
}

func (g *goClient) runStep(ctx context.Context, st step) (stepResult, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	r := stepResult{Op: st.Op}
	switch st.Op {
	case "echo":
		b := payload(st.Kind, st.Size)
		if err := g.send(ctx, st.Kind, b, st.Fragments); err != nil {
			return r, err
		}
		m, err := g.next(ctx)
		if err != nil {
			return r, err
		}
		r.Sent, r.Got = payloadHash(st.Kind, st.Size), receivedOf(m.kind, m.data)
	case "receive":
		m, err := g.next(ctx)
		if err != nil {
			return r, err
		}
		r.Got = receivedOf(m.kind, m.data)
	case "ping":
		if err := g.ping(ctx); err != nil {
			return r, err
		}
		r.OK = true
	case "close", "awaitClose":
		if st.Op == "close" {
			if err := g.startClose(st.Code, st.Reason); err != nil {
				return r, err
			}
		}
		cr, err := g.waitClosed(ctx)
		if err != nil {
			return r, err
		}
		cr.Op = st.Op
		return cr, nil
	default:
		return r, errors.New("unknown step " + st.Op)
	}
	return r, nil
}

// testGoClient runs a Go peer's client against our server.
func testGoClient(t *testing.T, srv *ourServer, peer string, caps clientCaps, dial func(ctx context.Context, s session) (*goClient, error)) {
	p := planFor(srv, peer, caps)
	results := make(map[string]sessionResult)
	for _, s := range p.Sessions {
		results[s.Name] = runGoSession(t.Context(), s, dial)
	}
	checkPlan(t, srv, p, results)
}

// goPeerServer runs a Go peer's server handler three times, as
// peerServer describes, and ends its connections when the test ends.
type goPeerServer struct {
	mu       sync.Mutex
	closing  bool
	conns    map[int]func() // each open connection's close
	nextID   int
	handlers sync.WaitGroup
}

// startGoPeerServer starts the peer's handler, made for plain or deflate.
// The handler calls serve to register its connection's close and reports
// the closes it sees to closes.
func startGoPeerServer(t *testing.T, certs *testCerts, noContextOnly bool,
	newHandler func(deflate bool, gs *goPeerServer, closes *mailbox[closeEvent]) http.Handler) *peerServer {
	gs := &goPeerServer{conns: make(map[int]func())}
	ps := &peerServer{closes: &mailbox[closeEvent]{}, certs: certs, noContextOnly: noContextOnly}
	plain := httptest.NewServer(newHandler(false, gs, ps.closes))
	deflate := httptest.NewServer(newHandler(true, gs, ps.closes))
	secure := httptest.NewUnstartedServer(newHandler(false, gs, ps.closes))
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{certs.cert}}
	secure.StartTLS()
	ps.plain, ps.deflate, ps.tls = "ws"+plain.URL[len("http"):], "ws"+deflate.URL[len("http"):], "wss"+secure.URL[len("https"):]
	t.Cleanup(func() {
		gs.mu.Lock()
		gs.closing = true
		for _, closeConn := range gs.conns {
			closeConn()
		}
		gs.mu.Unlock()
		gs.handlers.Wait()
		plain.Close()
		deflate.Close()
		secure.Close()
	})
	return ps
}

// enter registers a handler; it returns false once the server is closing.
func (gs *goPeerServer) enter() bool {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.closing {
		return false
	}
	gs.handlers.Add(1)
	return true
}

func (gs *goPeerServer) leave() { gs.handlers.Done() }

// track registers a connection's close, to be called if the test ends
// first, until the returned untrack. A connection made as the test ends is
// closed at once.
func (gs *goPeerServer) track(closeConn func()) (untrack func()) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.closing {
		closeConn()
		return func() {}
	}
	id := gs.nextID
	gs.nextID++
	gs.conns[id] = closeConn
	return func() {
		gs.mu.Lock()
		delete(gs.conns, id)
		gs.mu.Unlock()
	}
}
