package conformance

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/websocket"
	_ "github.com/duplexws/duplex/websocket/http2xconnect" // our server takes extended CONNECT in these tests
)

// The second transport: WebSocket over HTTP/2 (RFC 8441). The frame rules
// are RFC 6455's on either transport; what differs is the opening
// handshake (an extended CONNECT and its 200, section 4–5), where the
// frames go (the DATA of one stream) and the end of the connection:
// END_STREAM takes the place of TCP's FIN and RST_STREAM that of a reset
// (section 5.1). So every wire case runs over both: the raw peer's bytes
// go in DATA frames, one per write of its delivery mode (one-byte delivery
// is one-byte DATA frames), and what the library sends is read from the
// DATA of the stream. The raw side speaks HTTP/2 through x/net's Framer
// and hpack, and checks the handshake itself; our client dials through
// internal/h2client, the HTTP/2 client duplex uses.

// transport is how the raw peer and the library reach each other.
type transport int

const (
	overHTTP1 transport = iota // a TCP connection opened with RFC 6455's handshake
	overHTTP2                  // a stream of an HTTP/2 connection over TLS, opened with extended CONNECT
)

var transports = []transport{overHTTP1, overHTTP2}

// subtest wraps the subtests of a run over tr: HTTP/1.1 runs keep their
// names (case/role/mode), HTTP/2 runs are case/role/h2/mode.
func (tr transport) subtest(t *testing.T, f func(t *testing.T)) {
	if tr == overHTTP1 {
		f(t)
		return
	}
	t.Run("h2", f)
}

// connectOver opens a connection over tr, as connect does over HTTP/1.1.
func connectOver(t *testing.T, tr transport, r role, d delivery, cfg endpointConfig) *rawPeer {
	t.Helper()
	if tr == overHTTP1 {
		return connect(t, r, d, cfg)
	}
	return connectH2(t, r, d, cfg, h2Handshake{})
}

// h2Handshake is what the extended CONNECT negotiates beyond the
// defaults: the raw client's Sec-WebSocket-Extensions offers (our server),
// and the raw server's extension response (our client).
type h2Handshake struct {
	offer    []string
	response string
}

// connectH2 opens a WebSocket over HTTP/2 between a raw peer and the
// library in role r, configured by cfg.
func connectH2(t *testing.T, r role, d delivery, cfg endpointConfig, hs h2Handshake) *rawPeer {
	t.Helper()
	if r == roleServer {
		srv := startServerH2(t, cfg)
		sc := dialH2(t, srv, hs.offer)
		p := newRawPeer(t, r, d, sc)
		t.Cleanup(func() {
			sc.Close()
			if p.ep != nil {
				p.ep.wait(t)
			}
		})
		p.ep = srv.endpoint(t)
		p.h2resp = sc.resp
		return p
	}
	cl := startClientH2(t, cfg)
	sc := cl.acceptH2(t, hs.response)
	p := newRawPeer(t, r, d, sc)
	t.Cleanup(func() { sc.Close() })
	p.h2req = sc.req
	res := cl.result(t)
	if res.err != nil {
		t.Fatalf("Dial: %v", res.err)
	}
	p.ep = res.ep
	return p
}

// startServerH2 is our server on net/http's HTTP/2 server over TLS, with
// extended CONNECT on (websocket/http2xconnect), accepting and echoing as
// startServerConfig's does.
func startServerH2(t *testing.T, cfg endpointConfig) *server {
	t.Helper()
	s := &server{endpoints: make(chan *endpoint, 1), acceptErrs: make(chan error, 1)}
	s.srv = httptest.NewUnstartedServer(s.handler(cfg))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// h2Stream is one stream of an HTTP/2 connection as the raw peer's
// net.Conn: Write sends a DATA frame, within the flow-control windows;
// Read returns the DATA the library sent, then io.EOF after its
// END_STREAM, or an error after its RST_STREAM. CloseWrite sends
// END_STREAM, Close resets the stream (unless both sides have ended it)
// and closes the connection. A goroutine reads the connection's frames,
// answers SETTINGS and PING, and gives back at once the window of the DATA
// it receives.
type h2Stream struct {
	nc  net.Conn
	fr  *http2.Framer
	bw  *bufio.Writer
	wmu sync.Mutex // guards fr's writes and bw
	id  uint32

	req  *http.Request  // the extended CONNECT, on the raw server's side
	resp *http.Response // the library's answer, on the raw client's side

	mu         sync.Mutex
	cond       *sync.Cond
	buf        []byte
	ended      bool  // END_STREAM from the library
	reset      error // RST_STREAM from the library, or the connection lost
	sentEnd    bool
	sendStream int64
	sendConn   int64
	sendInit   int64
	maxFrame   int
	readDL     time.Time
	writeDL    time.Time

	closeOnce sync.Once
	pumping   bool // start ran; set before any Close
	pumpDone  chan struct{}
}

func newH2Stream(nc net.Conn) *h2Stream {
	s := &h2Stream{nc: nc, bw: bufio.NewWriterSize(nc, 64<<10), sendConn: 65535, sendStream: 65535, sendInit: 65535, maxFrame: 16384, pumpDone: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.fr = http2.NewFramer(s.bw, bufio.NewReaderSize(nc, 64<<10))
	s.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	s.fr.SetMaxReadFrameSize(1 << 20)
	return s
}

// rawSettings are what the raw side of either role asks for: a stream
// window large enough that the library never waits on it in a case.
var rawSettings = []http2.Setting{
	{ID: http2.SettingInitialWindowSize, Val: 64 << 20},
	{ID: http2.SettingMaxFrameSize, Val: 1 << 20},
}

// writeFrames writes frames with write and flushes them.
func (s *h2Stream) writeFrames(write func() error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := write(); err != nil {
		return err
	}
	return s.bw.Flush()
}

// applySettings takes the library's SETTINGS.
func (s *h2Stream) applySettings(f *http2.SettingsFrame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.ForeachSetting(func(st http2.Setting) error {
		switch st.ID {
		case http2.SettingInitialWindowSize:
			s.sendStream += int64(st.Val) - s.sendInit
			s.sendInit = int64(st.Val)
		case http2.SettingMaxFrameSize:
			s.maxFrame = int(st.Val)
		}
		return nil
	})
	s.cond.Broadcast()
}

// handleControl acts on a frame that is not about the stream's content,
// before the pump runs as after. It reports whether it took the frame.
func (s *h2Stream) handleControl(f http2.Frame) (bool, error) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			s.applySettings(f)
			return true, s.writeFrames(s.fr.WriteSettingsAck)
		}
		return true, nil
	case *http2.PingFrame:
		if !f.IsAck() {
			return true, s.writeFrames(func() error { return s.fr.WritePing(true, f.Data) })
		}
		return true, nil
	case *http2.WindowUpdateFrame:
		s.mu.Lock()
		if f.StreamID == 0 {
			s.sendConn += int64(f.Increment)
		} else if f.StreamID == s.id {
			s.sendStream += int64(f.Increment)
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		return true, nil
	case *http2.GoAwayFrame, *http2.PriorityFrame:
		return true, nil
	}
	return false, nil
}

// start starts the pump, which Close then waits for.
func (s *h2Stream) start() {
	s.pumping = true
	go s.pump()
}

// pump reads frames until the connection ends.
func (s *h2Stream) pump() {
	defer close(s.pumpDone)
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.fail(fmt.Errorf("the HTTP/2 connection ended: %w", err))
			return
		}
		if took, err := s.handleControl(f); took {
			if err != nil {
				s.fail(err)
				return
			}
			continue
		}
		if f.Header().StreamID != s.id {
			continue
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			data := f.Data()
			s.mu.Lock()
			if s.ended || s.reset != nil {
				s.mu.Unlock()
				s.fail(fmt.Errorf("the library sent DATA after ending the stream"))
				return
			}
			s.buf = append(s.buf, data...)
			s.ended = f.StreamEnded()
			s.cond.Broadcast()
			s.mu.Unlock()
			if n := f.Length; n > 0 {
				s.writeFrames(func() error {
					s.fr.WriteWindowUpdate(0, n)
					if !f.StreamEnded() {
						return s.fr.WriteWindowUpdate(s.id, n)
					}
					return nil
				})
			}
		case *http2.MetaHeadersFrame:
			s.mu.Lock()
			if f.StreamEnded() {
				s.ended = true // trailers end the stream
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		case *http2.RSTStreamFrame:
			s.mu.Lock()
			// RST_STREAM NO_ERROR after END_STREAM only asks this side to
			// stop sending (RFC 9113 section 8.1): the library's side
			// ended cleanly.
			if !(s.ended && f.ErrCode == http2.ErrCodeNo) && s.reset == nil {
				s.reset = fmt.Errorf("the library reset the HTTP/2 stream (%v)", f.ErrCode)
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}
}

func (s *h2Stream) fail(err error) {
	s.mu.Lock()
	if s.reset == nil {
		s.reset = err
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// wait waits on cond until the deadline, which wakes it; it reports false
// once the deadline has passed.
func (s *h2Stream) wait(deadline time.Time) bool {
	if !deadline.IsZero() {
		if time.Until(deadline) <= 0 {
			return false
		}
		t := time.AfterFunc(time.Until(deadline), func() {
			s.mu.Lock()
			s.cond.Broadcast()
			s.mu.Unlock()
		})
		defer t.Stop()
	}
	s.cond.Wait()
	return deadline.IsZero() || time.Until(deadline) > 0
}

func (s *h2Stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) == 0 && !s.ended && s.reset == nil {
		if !s.wait(s.readDL) {
			return 0, os.ErrDeadlineExceeded
		}
	}
	if len(s.buf) > 0 {
		n := copy(p, s.buf)
		s.buf = s.buf[n:]
		return n, nil
	}
	if s.reset != nil && !s.ended {
		return 0, s.reset
	}
	return 0, io.EOF
}

// Write sends p as one DATA frame, or several where the windows or the
// frame size demand it. Once the library has ended its side (a server that
// failed the connection returns from its handler, which ends the stream at
// once: it has no half-close to linger on), what the raw peer still sends
// is dropped, as a TCP socket takes writes its peer will never read.
func (s *h2Stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return written + len(p), nil
		}
		for s.reset == nil && !s.sentEnd && (s.sendStream <= 0 || s.sendConn <= 0) {
			if !s.wait(s.writeDL) {
				s.mu.Unlock()
				return written, os.ErrDeadlineExceeded
			}
		}
		if s.reset != nil || s.sentEnd {
			err := s.reset
			if err == nil {
				err = errors.New("write after END_STREAM")
			}
			s.mu.Unlock()
			return written, err
		}
		n := int(min(int64(len(p)), s.sendStream, s.sendConn, int64(s.maxFrame)))
		s.sendStream -= int64(n)
		s.sendConn -= int64(n)
		s.mu.Unlock()
		if err := s.writeFrames(func() error { return s.fr.WriteData(s.id, false, p[:n]) }); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// CloseWrite ends the raw peer's side of the stream with END_STREAM, as
// TCP's FIN ends a side of a connection.
func (s *h2Stream) CloseWrite() error {
	s.mu.Lock()
	s.sentEnd = true
	s.mu.Unlock()
	return s.writeFrames(func() error { return s.fr.WriteData(s.id, true, nil) })
}

// Close resets the stream unless both sides ended it, closes the
// connection and waits for the pump.
func (s *h2Stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		open := !(s.sentEnd && s.ended)
		s.mu.Unlock()
		if open {
			s.nc.SetWriteDeadline(time.Now().Add(time.Second))
			s.writeFrames(func() error { return s.fr.WriteRSTStream(s.id, http2.ErrCodeCancel) })
		}
		s.nc.Close()
		if s.pumping {
			<-s.pumpDone
		}
	})
	return nil
}

func (s *h2Stream) LocalAddr() net.Addr  { return s.nc.LocalAddr() }
func (s *h2Stream) RemoteAddr() net.Addr { return s.nc.RemoteAddr() }

func (s *h2Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *h2Stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDL = t
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

func (s *h2Stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDL = t
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

// readUntilHeaders reads frames, taking those handleControl takes, until
// a header block on stream id comes, or fails the test.
func (s *h2Stream) readUntilHeaders(t *testing.T, id uint32) *http2.MetaHeadersFrame {
	t.Helper()
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the HTTP/2 handshake: %v", err)
		}
		if took, err := s.handleControl(f); took {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id || id == 0 {
				return f
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("the library reset stream %d (%v) in the handshake", f.StreamID, f.ErrCode)
		}
	}
}

// encodeFields encodes a header block.
func encodeFields(fields ...hpack.HeaderField) []byte {
	var b strings.Builder
	enc := hpack.NewEncoder(&b)
	for _, f := range fields {
		enc.WriteField(f)
	}
	return []byte(b.String())
}

// dialH2 opens, as the raw client, an HTTP/2 connection to our server, and
// stream 1 on it with an extended CONNECT (RFC 8441 section 4) offering
// the extensions of offer. It checks that the server advertised
// SETTINGS_ENABLE_CONNECT_PROTOCOL (section 3) and answered 200.
func dialH2(t *testing.T, srv *server, offer []string) *h2Stream {
	t.Helper()
	fields := extendedConnect(srv.addr())
	for _, o := range offer {
		fields = append(fields, hpack.HeaderField{Name: "sec-websocket-extensions", Value: o})
	}
	s, h := requestH2(t, srv, fields)
	if st := h.PseudoValue("status"); st != "200" || h.StreamEnded() {
		s.Close()
		t.Fatalf("the extended CONNECT got :status %s (END_STREAM %v), want 200 and an open stream", st, h.StreamEnded())
	}
	s.resp.StatusCode = 200
	s.start()
	return s
}

// extendedConnect is the header block of a valid extended CONNECT to /.
func extendedConnect(authority string) []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "CONNECT"},
		{Name: ":protocol", Value: "websocket"},
		{Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: authority},
		{Name: ":path", Value: "/"},
		{Name: "sec-websocket-version", Value: "13"},
	}
}

// requestH2 opens an HTTP/2 connection to our server as the raw client,
// sends fields as the HEADERS of stream 1 and returns the stream, not yet
// pumped, with the response's header block (also in s.resp.Header).
func requestH2(t *testing.T, srv *server, fields []hpack.HeaderField) (*h2Stream, *http2.MetaHeadersFrame) {
	t.Helper()
	cfg := srv.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	d := &net.Dialer{Timeout: ioTimeout}
	nc, err := tls.DialWithDialer(d, "tcp", srv.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := nc.ConnectionState().NegotiatedProtocol; p != "h2" {
		nc.Close()
		t.Fatalf("ALPN chose %q, not h2", p)
	}
	nc.NetConn().(*net.TCPConn).SetNoDelay(true)
	nc.SetDeadline(time.Now().Add(ioTimeout))
	s := newH2Stream(nc)
	s.id = 1
	s.bw.WriteString(http2.ClientPreface)
	err = s.writeFrames(func() error {
		s.fr.WriteSettings(rawSettings...)
		return s.fr.WriteWindowUpdate(0, math.MaxInt32-65535)
	})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	first, err := s.fr.ReadFrame()
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	sf, ok := first.(*http2.SettingsFrame)
	if !ok {
		nc.Close()
		t.Fatalf("the server's first frame is %v, not SETTINGS", first.Header().Type)
	}
	if v, ok := sf.Value(http2.SettingEnableConnectProtocol); !ok || v != 1 {
		nc.Close()
		t.Fatal("the server did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
	}
	s.handleControl(sf)
	block := encodeFields(fields...)
	if err := s.writeFrames(func() error {
		return s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
	}); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	h := s.readUntilHeaders(t, 1)
	s.resp = &http.Response{Header: http.Header{}, Proto: "HTTP/2.0", ProtoMajor: 2}
	for _, f := range h.RegularFields() {
		s.resp.Header.Add(f.Name, f.Value)
	}
	nc.SetDeadline(time.Time{})
	return s, h
}

// clientH2 is our client under test over HTTP/2: Dial through
// internal/h2client from a goroutine to the raw server's listener.
type clientH2 struct {
	*client
	ln  net.Listener
	tls *tls.Config
}

// startClientH2 listens (TLS, h2) and has our client dial it with cfg,
// offering subprotocols.
func startClientH2(t *testing.T, cfg endpointConfig, subprotocols ...string) *clientH2 {
	t.Helper()
	certSrv := httptest.NewUnstartedServer(nil)
	certSrv.EnableHTTP2 = true
	certSrv.StartTLS() // for a certificate and a client configuration that trusts it
	serverCfg := &tls.Config{Certificates: certSrv.TLS.Certificates, NextProtos: []string{"h2"}}
	clientCfg := certSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	certSrv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &clientH2{client: &client{results: make(chan dialResult, 1)}, ln: ln, tls: serverCfg}
	tr := &h2client.Transport{TLSConfig: clientCfg}
	opts := &websocket.DialOptions{
		HTTP2Transport: tr, Compression: cfg.compression, WriteBufferSize: cfg.writeBuffer, Subprotocols: subprotocols,
	}
	dialAndEcho(t, cl.client, "wss://"+ln.Addr().String()+"/", opts, cfg, func() error {
		ln.Close()
		return tr.Close()
	})
	return cl
}

// acceptH2 takes our client's connection as the raw server: it checks the
// preface, advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, reads the extended
// CONNECT and checks it against RFC 8441 section 4–5, and answers 200 with
// a Sec-WebSocket-Extensions field for each of extResponse ("": none).
func (cl *clientH2) acceptH2(t *testing.T, extResponse ...string) *h2Stream {
	t.Helper()
	s := cl.acceptConnect(t)
	fields := []hpack.HeaderField{{Name: ":status", Value: "200"}}
	for _, ext := range extResponse {
		if ext != "" {
			fields = append(fields, hpack.HeaderField{Name: "sec-websocket-extensions", Value: ext})
		}
	}
	s.respond(t, fields, nil)
	s.start()
	return s
}

// respond sends the raw server's response HEADERS, and when body is not
// nil, body as DATA with END_STREAM.
func (s *h2Stream) respond(t *testing.T, fields []hpack.HeaderField, body []byte) {
	t.Helper()
	block := encodeFields(fields...)
	err := s.writeFrames(func() error {
		if err := s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: block, EndHeaders: true}); err != nil {
			return err
		}
		if body != nil {
			s.sentEnd = true
			return s.fr.WriteData(s.id, true, body)
		}
		return nil
	})
	if err != nil {
		s.nc.Close()
		t.Fatal(err)
	}
}

// acceptConnect takes our client's connection as the raw server and reads
// its extended CONNECT, checked against RFC 8441 section 4–5, leaving the
// response to the caller.
func (cl *clientH2) acceptConnect(t *testing.T) *h2Stream {
	t.Helper()
	cl.ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout))
	raw, err := cl.ln.Accept()
	if err != nil {
		t.Fatalf("accepting the client's connection: %v", err)
	}
	raw.(*net.TCPConn).SetNoDelay(true)
	nc := tls.Server(raw, cl.tls)
	nc.SetDeadline(time.Now().Add(ioTimeout))
	fail := func(format string, args ...any) {
		t.Helper()
		nc.Close()
		t.Fatalf(format, args...)
	}
	if err := nc.Handshake(); err != nil {
		fail("TLS handshake: %v", err)
	}
	if p := nc.ConnectionState().NegotiatedProtocol; p != "h2" {
		fail("ALPN chose %q, not h2", p)
	}
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
		fail("client preface %q, %v", preface, err)
	}
	s := newH2Stream(nc)
	if err := s.writeFrames(func() error {
		s.fr.WriteSettings(append([]http2.Setting{{ID: http2.SettingEnableConnectProtocol, Val: 1}}, rawSettings...)...)
		return s.fr.WriteWindowUpdate(0, math.MaxInt32-65535)
	}); err != nil {
		fail("%v", err)
	}
	h := s.readUntilHeaders(t, 0)
	s.id = h.StreamID
	req := &http.Request{Header: http.Header{}}
	for _, f := range h.RegularFields() {
		req.Header.Add(f.Name, f.Value)
	}
	want := map[string]string{":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/", ":authority": cl.ln.Addr().String()}
	for name, v := range want {
		if got := h.PseudoValue(name[1:]); got != v {
			fail("the extended CONNECT has %s %q, want %q", name, got, v)
		}
	}
	switch {
	case h.StreamEnded():
		fail("the extended CONNECT carries END_STREAM: the stream must stay open (RFC 8441 section 4)")
	case req.Header.Get("Sec-Websocket-Version") != "13":
		fail("Sec-WebSocket-Version %q, want 13", req.Header.Get("Sec-Websocket-Version"))
	case req.Header.Get("Sec-Websocket-Key") != "" || req.Header.Get("Upgrade") != "" || req.Header.Get("Connection") != "":
		fail("the extended CONNECT carries Sec-WebSocket-Key, Upgrade or Connection, which RFC 8441 section 5 leaves out: %v", req.Header)
	}
	s.req = req
	nc.SetDeadline(time.Time{})
	return s
}
