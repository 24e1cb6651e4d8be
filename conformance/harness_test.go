package conformance

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// role is the role the library plays in a run; the raw peer plays the other.
type role int

const (
	roleServer role = iota // our server; the raw peer is a client and masks
	roleClient             // our client; the raw peer is a server and does not mask
)

func (r role) String() string {
	if r == roleServer {
		return "server"
	}
	return "client"
}

// roles says which roles a case runs in.
type roles int

const (
	bothRoles roles = iota
	serverOnly
	clientOnly
)

func (rs roles) list() []role {
	switch rs {
	case serverOnly:
		return []role{roleServer}
	case clientOnly:
		return []role{roleClient}
	}
	return []role{roleServer, roleClient}
}

// generalReadLimit is the read limit of the endpoint under test in every
// case but those about the default limit: large enough for section 1.
const generalReadLimit = 16 << 20

// serverSubprotocols is what our server speaks, in its order of preference.
var serverSubprotocols = []string{"b", "a"}

// wireCase is one case of the table. run drives the raw peer; it runs once
// per role the case applies to and per delivery mode.
type wireCase struct {
	name         string // "section.number description", like Autobahn's
	roles        roles
	defaultLimit bool // the endpoint keeps websocket.DefaultReadLimit
	run          func(p *rawPeer)
}

// runWireCases runs cases × roles × serving modes × transports × delivery
// modes, each run against a new connection (h2_test.go: the frame rules are
// the same over HTTP/2).
func runWireCases(t *testing.T, cases []wireCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachRun(t, c.roles, func(t *testing.T, r role, m serveMode, tr transport, d delivery) {
				c.run(connectOver(t, tr, r, d, endpointConfig{defaultLimit: c.defaultLimit, mode: m}))
			})
		})
	}
}

// forEachRun calls run once per role of rs, serving mode of the role,
// transport and delivery mode, each in a subtest named
// role/[mode/][h2/]delivery: only our server has several modes.
func forEachRun(t *testing.T, rs roles, run func(t *testing.T, r role, m serveMode, tr transport, d delivery)) {
	t.Helper()
	for _, r := range rs.list() {
		t.Run(r.String(), func(t *testing.T) {
			forEachMode(t, r.modes(), func(t *testing.T, m serveMode) {
				for _, tr := range transports {
					tr.subtest(t, func(t *testing.T) {
						for _, d := range m.deliveries(tr) {
							t.Run(d.String(), func(t *testing.T) { run(t, r, m, tr, d) })
						}
					})
				}
			})
		})
	}
}

// deliveries are the delivery modes m runs in over tr. An HTTP/2 stream
// cannot wait in an epoll set, so Await and Serve read it as Read does,
// in a goroutine: the delivery modes, which test how reading copes with
// frames cut anywhere, would run the same code three times over (the
// heaviest runs of the suite, one-byte DATA frames under -race). Those
// modes run over HTTP/2 with whole delivery only, which still covers how
// they start, echo and end on a stream.
func (m serveMode) deliveries(tr transport) []delivery {
	if tr == overHTTP2 && m != modeRead {
		return []delivery{deliverWhole}
	}
	return deliveries
}

// serveMode is how the library's endpoint reads: our server runs every
// server-role case in each of the library's three ways to serve a
// connection (issue 14), our client reads with Read.
type serveMode int

const (
	modeRead  serveMode = iota // a goroutine loops Read and Write
	modeAwait                  // Conn.Await without a goroutine, then Read and Write in its callback's
	modeServe                  // Conn.Serve: onMessage writes the echo
)

var serveModes = []serveMode{modeRead, modeAwait, modeServe}

func (m serveMode) String() string {
	switch m {
	case modeAwait:
		return "await"
	case modeServe:
		return "serve"
	}
	return "read"
}

// modes are the serving modes a run in role r goes through.
func (r role) modes() []serveMode {
	if r == roleServer {
		return serveModes
	}
	return []serveMode{modeRead}
}

// forEachMode runs f once per mode of modes, in a subtest named by the
// mode when there are several. Those subtests run in parallel: each has a
// server of its own, and most of a run is waiting, so the three modes cost
// about the wall time of one.
func forEachMode(t *testing.T, modes []serveMode, f func(t *testing.T, m serveMode)) {
	t.Helper()
	if len(modes) == 1 {
		f(t, modes[0])
		return
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			f(t, m)
		})
	}
}

// endpointConfig sets up the library's end of a run. The zero value is what
// every section but the compression cases uses.
type endpointConfig struct {
	defaultLimit bool                         // keep websocket.DefaultReadLimit
	compression  websocket.CompressionOptions // permessage-deflate; the zero value disables it
	writeBuffer  int                          // the Conn's WriteBufferSize; 0: the default
	writerChunk  int                          // > 0: echo through a Writer, in writes of this many bytes
	prepared     bool                         // echo with NewPreparedMessage and WritePrepared
	mode         serveMode                    // how the endpoint reads; the zero value: Read
}

// endpoint is the library's end of a connection: a Conn that echoes every
// message (Read, then Write of the same type; or the same from Await's
// callback or Serve's onMessage) until an error.
type endpoint struct {
	conn        *websocket.Conn
	writerChunk int
	prepared    bool
	mode        serveMode
	done        chan struct{}
	endOnce     sync.Once
	err         error // why the echo ended; set before done is closed
}

// newEndpoint wraps a Conn fresh from the handshake; run runs it.
func newEndpoint(c *websocket.Conn, cfg endpointConfig) *endpoint {
	if !cfg.defaultLimit {
		c.SetReadLimit(generalReadLimit)
	}
	return &endpoint{conn: c, writerChunk: cfg.writerChunk, prepared: cfg.prepared, mode: cfg.mode, done: make(chan struct{})}
}

// run echoes in e's mode: in modeRead it returns when the echo has ended,
// in the others once the library has taken over (e.done says when it
// ends).
func (e *endpoint) run() {
	switch e.mode {
	case modeAwait:
		e.await()
	case modeServe:
		e.serve()
	default:
		for e.echoOne() {
		}
	}
}

// end records why the echo ended, ends the Conn and closes done; only the
// first call counts.
func (e *endpoint) end(err error) {
	e.endOnce.Do(func() {
		e.err = err
		e.conn.CloseNow()
		close(e.done)
	})
}

// echoOne reads a message and writes its echo, and reports whether both
// succeeded; when not, it ends e.
func (e *endpoint) echoOne() bool {
	ctx := context.Background()
	typ, msg, err := e.conn.Read(ctx)
	if err == nil {
		err = e.write(ctx, typ, msg)
	}
	if err != nil {
		e.end(err)
		return false
	}
	return true
}

// await echoes the messages that have begun to arrive, then leaves the
// wait for the next to Await, whose callback continues here.
func (e *endpoint) await() {
	for {
		ready, err := e.conn.Await(e.awaitCallback)
		if err != nil {
			e.end(err)
			return
		}
		if !ready || !e.echoOne() {
			return
		}
	}
}

func (e *endpoint) awaitCallback() {
	if e.echoOne() {
		e.await()
	}
}

// serve echoes from Serve's onMessage. A failed echo ends the Conn, and
// its error is the endpoint's rather than the read error onEnd reports.
func (e *endpoint) serve() {
	ctx := context.Background()
	var writeErr error // onMessage's, read by onEnd, which comes after every onMessage
	err := e.conn.Serve(func(typ websocket.MessageType, p []byte) {
		if writeErr != nil {
			return
		}
		if writeErr = e.write(ctx, typ, p); writeErr != nil {
			e.conn.CloseNow()
		}
	}, func(err error) {
		if writeErr != nil {
			err = writeErr
		}
		e.end(err)
	})
	if err != nil {
		e.end(err)
	}
}

// write sends an echo: with Write, as a prepared message, or through a
// Writer in writes of writerChunk bytes, which sends the message in frames
// of the write buffer.
func (e *endpoint) write(ctx context.Context, typ websocket.MessageType, msg []byte) error {
	switch {
	case e.prepared:
		pm, err := websocket.NewPreparedMessage(typ, msg)
		if err != nil {
			return err
		}
		return e.conn.WritePrepared(ctx, pm)
	case e.writerChunk <= 0:
		return e.conn.Write(ctx, typ, msg)
	}
	w, err := e.conn.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(msg) > 0 {
		n := min(len(msg), e.writerChunk)
		if _, err := w.Write(msg[:n]); err != nil {
			w.Close()
			return err
		}
		msg = msg[n:]
	}
	return w.Close()
}

// wait returns the echo loop's error once it has ended.
func (e *endpoint) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-e.done:
		return e.err
	case <-time.After(2 * ioTimeout):
		t.Fatal("the library's endpoint did not end its connection")
		return nil
	}
}

// connect opens a connection between a raw peer and the library in role r
// and completes the opening handshake.
func connect(t *testing.T, r role, d delivery, cfg endpointConfig) *rawPeer {
	t.Helper()
	if r == roleServer {
		srv := startServerConfig(t, cfg)
		p := srv.dial(t, d)
		p.handshake()
		p.ep = srv.endpoint(t)
		return p
	}
	cl := startClient(t, "/", cfg.defaultLimit, nil)
	p := cl.accept(t, d)
	p.serverHandshake(acceptResponse(p.hs, nil))
	res := cl.result(t)
	if res.err != nil {
		t.Fatalf("Dial: %v", res.err)
	}
	p.ep = res.ep
	return p
}

// server is our server under test: an httptest server whose handler accepts
// and echoes.
type server struct {
	srv        *httptest.Server
	endpoints  chan *endpoint
	acceptErrs chan error
}

func startServerConfig(t *testing.T, cfg endpointConfig) *server {
	t.Helper()
	s := &server{endpoints: make(chan *endpoint, 1), acceptErrs: make(chan error, 1)}
	s.srv = httptest.NewServer(s.handler(cfg))
	t.Cleanup(s.srv.Close)
	return s
}

// handler accepts with cfg and echoes, handing the endpoint over to the
// test. Over HTTP/2 it returns when the echo has ended, as the stream ends
// with it; over HTTP/1.1 Accept has taken the connection, so in the modes
// that need no goroutine the handler returns at once.
func (s *server) handler(cfg endpointConfig) http.Handler {
	opts := &websocket.AcceptOptions{
		Subprotocols:    serverSubprotocols,
		Compression:     cfg.compression,
		WriteBufferSize: cfg.writeBuffer,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			select {
			case s.acceptErrs <- err:
			default: // a later request on the same connection: the first error is the one checked
			}
			return
		}
		ep := newEndpoint(c, cfg)
		s.endpoints <- ep
		ep.run()
		if r.ProtoMajor >= 2 {
			<-ep.done
		}
	})
}

func (s *server) addr() string { return s.srv.Listener.Addr().String() }

// dial opens a raw TCP connection to the server, closed when the test ends,
// after which the test waits for the server's endpoint, if any, to end.
func (s *server) dial(t *testing.T, d delivery) *rawPeer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	p := newRawPeer(t, roleServer, d, conn)
	t.Cleanup(func() {
		conn.Close()
		if p.ep != nil {
			p.ep.wait(t)
		}
	})
	return p
}

// endpoint returns the endpoint the handler made for the connection.
func (s *server) endpoint(t *testing.T) *endpoint {
	t.Helper()
	select {
	case ep := <-s.endpoints:
		return ep
	case err := <-s.acceptErrs:
		t.Fatalf("Accept: %v", err)
	case <-time.After(ioTimeout):
		t.Fatal("the handler did not accept the connection")
	}
	return nil
}

// client is our client under test: Dial from a goroutine to a raw server.
type client struct {
	ln      *net.TCPListener
	results chan dialResult
}

type dialResult struct {
	resp *http.Response
	err  error
	ep   *endpoint // nil when Dial failed
}

// startClient listens and dials path on the listener with opts (nil: the
// defaults), echoing on the Conn it gets.
func startClient(t *testing.T, path string, defaultLimit bool, opts *websocket.DialOptions) *client {
	t.Helper()
	return startClientConfig(t, path, endpointConfig{defaultLimit: defaultLimit}, opts)
}

// startClientConfig is startClient with cfg, whose compression and write
// buffer replace those of opts.
func startClientConfig(t *testing.T, path string, cfg endpointConfig, opts *websocket.DialOptions) *client {
	t.Helper()
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	o.Compression, o.WriteBufferSize = cfg.compression, cfg.writeBuffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{ln: ln.(*net.TCPListener), results: make(chan dialResult, 1)}
	dialAndEcho(t, cl, "ws://"+ln.Addr().String()+path, &o, cfg, ln.Close)
	return cl
}

// dialAndEcho has our client dial url with opts in a goroutine, reports
// the outcome in cl.results, and echoes on the Conn it got. When the test
// ends it calls stop (which must end the connection), then waits for the
// goroutine.
func dialAndEcho(t *testing.T, cl *client, url string, opts *websocket.DialOptions, cfg endpointConfig, stop func() error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*ioTimeout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, resp, err := websocket.Dial(ctx, url, opts)
		if err != nil {
			cl.results <- dialResult{resp: resp, err: err}
			return
		}
		ep := newEndpoint(c, cfg)
		cl.results <- dialResult{resp: resp, ep: ep}
		ep.run()
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(3 * ioTimeout):
			t.Error("Dial or the echo loop of the client did not end")
		}
		cancel()
	})
}

// accept takes the client's connection and reads its opening handshake,
// checking it against section 4.1.
func (cl *client) accept(t *testing.T, d delivery) *rawPeer {
	t.Helper()
	cl.ln.SetDeadline(time.Now().Add(ioTimeout))
	conn, err := cl.ln.Accept()
	if err != nil {
		t.Fatalf("accepting the client's connection: %v", err)
	}
	p := newRawPeer(t, roleClient, d, conn)
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	req, err := http.ReadRequest(p.br)
	if err != nil {
		t.Fatalf("reading the client's handshake: %v", err)
	}
	checkClientRequest(t, req)
	p.hs = req
	return p
}

// result waits for Dial to return.
func (cl *client) result(t *testing.T) dialResult {
	t.Helper()
	select {
	case res := <-cl.results:
		return res // startClient's cleanup waits for the echo loop
	case <-time.After(2 * ioTimeout):
		t.Fatal("Dial did not return")
	}
	return dialResult{}
}
