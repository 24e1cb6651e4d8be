package conformance

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
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

// runWireCases runs cases × roles × transports × delivery modes, each run
// against a new connection (h2_test.go: the frame rules are the same over
// HTTP/2).
func runWireCases(t *testing.T, cases []wireCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range c.roles.list() {
				t.Run(r.String(), func(t *testing.T) {
					for _, tr := range transports {
						tr.subtest(t, func(t *testing.T) {
							for _, d := range deliveries {
								t.Run(d.String(), func(t *testing.T) {
									c.run(connectOver(t, tr, r, d, c.defaultLimit))
								})
							}
						})
					}
				})
			}
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
}

// endpoint is the library's end of a connection: a Conn that echoes every
// message (Read, then Write of the same type) until an error.
type endpoint struct {
	conn        *websocket.Conn
	writerChunk int
	prepared    bool
	done        chan struct{}
	err         error // why the echo loop ended; set before done is closed
}

// newEndpoint wraps a Conn fresh from the handshake; echo runs it.
func newEndpoint(c *websocket.Conn, cfg endpointConfig) *endpoint {
	if !cfg.defaultLimit {
		c.SetReadLimit(generalReadLimit)
	}
	return &endpoint{conn: c, writerChunk: cfg.writerChunk, prepared: cfg.prepared, done: make(chan struct{})}
}

// echo runs the echo loop and ends the Conn.
func (e *endpoint) echo() {
	defer close(e.done)
	ctx := context.Background()
	for {
		typ, msg, err := e.conn.Read(ctx)
		if err == nil {
			err = e.write(ctx, typ, msg)
		}
		if err != nil {
			e.err = err
			e.conn.CloseNow()
			return
		}
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
func connect(t *testing.T, r role, d delivery, defaultLimit bool) *rawPeer {
	t.Helper()
	if r == roleServer {
		srv := startServer(t, defaultLimit)
		p := srv.dial(t, d)
		p.handshake()
		p.ep = srv.endpoint(t)
		return p
	}
	cl := startClient(t, "/", defaultLimit, nil)
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

func startServer(t *testing.T, defaultLimit bool) *server {
	t.Helper()
	return startServerConfig(t, endpointConfig{defaultLimit: defaultLimit})
}

func startServerConfig(t *testing.T, cfg endpointConfig) *server {
	t.Helper()
	s := &server{endpoints: make(chan *endpoint, 1), acceptErrs: make(chan error, 1)}
	s.srv = httptest.NewServer(s.handler(cfg))
	t.Cleanup(s.srv.Close)
	return s
}

// handler accepts with cfg and echoes, handing the endpoint over to the
// test; on either transport it returns when the echo loop has ended.
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
		ep.echo()
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
		ep.echo()
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
