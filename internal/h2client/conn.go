package h2client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// What this client asks of the server (RFC 9113 section 6.5.2) and grants
// it. A WebSocket stream may carry messages of many MiB; a window of
// 4 MiB per stream keeps a large message from waiting on WINDOW_UPDATE
// round trips, and the connection's window is large enough never to be
// the bound (x/net's client uses the same figures).
const (
	streamWindow   = 4 << 20
	connWindow     = 1 << 30
	maxReadFrame   = 1 << 20 // SETTINGS_MAX_FRAME_SIZE we accept
	maxHeaderList  = 1 << 20
	settingsWait   = 10 * time.Second // for the server's first SETTINGS, when ctx has no deadline
	initialWindow  = 65535            // RFC 9113 section 6.9.2
	defaultMaxSend = 16384            // the peer's SETTINGS_MAX_FRAME_SIZE until it says
)

// clientConn is one HTTP/2 connection and its streams. Lock order: wmu
// before mu, never the other way.
type clientConn struct {
	t   *Transport
	key string // its pool in t
	nc  net.Conn

	// Writing: one frame at a time, flushed at once.
	wmu  sync.Mutex
	bw   *bufio.Writer
	fr   *http2.Framer // writes under wmu; reads only in readLoop
	henc *hpack.Encoder
	hbuf headerBuffer

	mu         sync.Mutex
	streams    map[uint32]*stream // open streams
	reserved   int                // streams promised by reserve, not yet open
	nextID     uint32
	maxStreams uint32 // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	sendInit   int64  // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxSend    uint32 // the server's SETTINGS_MAX_FRAME_SIZE
	sendWindow int64  // the connection's send window
	recvUsed   int64  // bytes received on the connection's window, not yet given back
	recvUnack  int64  // bytes consumed whose WINDOW_UPDATE is owed
	goAway     bool   // no new streams: GOAWAY came, or the connection failed
	err        error  // why the connection ended; nil while it runs

	readDone chan struct{}
}

// dial opens a connection to addr and reads the server's first SETTINGS:
// it returns only a connection that takes extended CONNECT.
func (t *Transport) dial(ctx context.Context, scheme, addr string) (*clientConn, error) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var tlsState *tls.ConnectionState
	if scheme == "https" {
		cfg := t.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		// http/1.1 is offered too, so that a server without HTTP/2 says
		// so by choosing it rather than failing the handshake.
		cfg.NextProtos = []string{"h2", "http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		st := tc.ConnectionState()
		if st.NegotiatedProtocol != "h2" {
			tc.Close()
			return nil, fmt.Errorf("%s chose %q: %w", addr, st.NegotiatedProtocol, ErrNoHTTP2)
		}
		tlsState, nc = &st, tc
	}
	cc := &clientConn{
		t:          t,
		nc:         nc,
		bw:         bufio.NewWriterSize(nc, 32<<10),
		streams:    map[uint32]*stream{},
		nextID:     1,
		maxStreams: math.MaxUint32, // RFC 9113 section 6.5.2: no limit until it says
		sendInit:   initialWindow,
		maxSend:    defaultMaxSend,
		sendWindow: initialWindow,
		readDone:   make(chan struct{}),
	}
	cc.fr = http2.NewFramer(cc.bw, bufio.NewReaderSize(nc, 16<<10))
	cc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cc.fr.MaxHeaderListSize = maxHeaderList
	cc.fr.SetMaxReadFrameSize(maxReadFrame)
	cc.henc = hpack.NewEncoder(&cc.hbuf)

	settings, err := cc.handshake(ctx)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("HTTP/2 with %s: %w", addr, err)
	}
	if tr := t.Trace; tr != nil && tr.ConnReady != nil {
		tr.ConnReady(nc, tlsState, settings)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		cc.readLoop()
	}()
	return cc, nil
}

// handshake sends the client preface and SETTINGS (RFC 9113 section 3.4)
// and reads the server's SETTINGS, which must come first.
func (cc *clientConn) handshake(ctx context.Context) ([]http2.Setting, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(settingsWait)
	}
	cc.nc.SetDeadline(deadline)
	defer cc.nc.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { cc.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	cc.wmu.Lock()
	cc.bw.WriteString(http2.ClientPreface)
	cc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
	)
	cc.fr.WriteWindowUpdate(0, connWindow-initialWindow)
	err := cc.bw.Flush()
	cc.wmu.Unlock()
	if err != nil {
		return nil, err
	}

	f, err := cc.fr.ReadFrame()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("reading the server's SETTINGS: %w", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		return nil, fmt.Errorf("the server's first frame is %v, not SETTINGS (RFC 9113 section 3.4)", f.Header().Type)
	}
	var settings []http2.Setting
	connect := false
	sf.ForeachSetting(func(s http2.Setting) error {
		settings = append(settings, s)
		if s.ID == http2.SettingEnableConnectProtocol && s.Val == 1 {
			connect = true
		}
		return nil
	})
	if err := cc.applySettings(sf); err != nil {
		return nil, err
	}
	if !connect {
		cc.writeFrame(func() error { return cc.fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
		return settings, ErrNoExtendedConnect
	}
	if err := cc.writeFrame(cc.fr.WriteSettingsAck); err != nil {
		return nil, err
	}
	return settings, nil
}

// applySettings takes the server's settings (RFC 9113 section 6.5.2).
func (cc *clientConn) applySettings(sf *http2.SettingsFrame) error {
	err := sf.ForeachSetting(func(s http2.Setting) error {
		switch {
		case s.ID == http2.SettingInitialWindowSize && s.Val > math.MaxInt32,
			s.ID == http2.SettingMaxFrameSize && (s.Val < 16384 || s.Val > 1<<24-1):
			return fmt.Errorf("the server sent an invalid setting, %v (RFC 9113 section 6.5.2)", s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if v, ok := sf.Value(http2.SettingHeaderTableSize); ok {
		cc.wmu.Lock()
		cc.henc.SetMaxDynamicTableSizeLimit(v)
		cc.wmu.Unlock()
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return sf.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.maxStreams = s.Val
		case http2.SettingMaxFrameSize:
			cc.maxSend = s.Val
		case http2.SettingInitialWindowSize:
			// Section 6.9.2: the change applies to every open stream.
			delta := int64(s.Val) - cc.sendInit
			cc.sendInit = int64(s.Val)
			for _, st := range cc.streams {
				st.sendWindow += delta
				st.cond.Broadcast()
			}
		}
		return nil
	})
}

// reserve promises room for one more stream, if there is room under limit
// (0: the server's limit alone) and the connection takes new streams.
func (cc *clientConn) reserve(limit int) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.goAway {
		return false
	}
	room := int64(cc.maxStreams)
	if limit > 0 && int64(limit) < room {
		room = int64(limit)
	}
	if limit == 0 && cc.reserved == 0 && len(cc.streams) == 0 {
		room = max(room, 1)
	}
	if int64(len(cc.streams)+cc.reserved) >= room {
		return false
	}
	cc.reserved++
	return true
}

// writeFrame writes one frame with write and flushes it.
func (cc *clientConn) writeFrame(write func() error) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if err := write(); err != nil {
		return err
	}
	return cc.bw.Flush()
}

// readLoop reads the server's frames until the connection fails, and
// hands each to its stream.
func (cc *clientConn) readLoop() {
	defer close(cc.readDone)
	for {
		f, err := cc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				// A malformed frame that concerns one stream only.
				cc.resetStream(se.StreamID, se.Code, fmt.Errorf("HTTP/2 stream %d: %v", se.StreamID, se))
				continue
			}
			cc.fail(connError(err))
			return
		}
		if err := cc.handle(f); err != nil {
			cc.fail(err)
			return
		}
	}
}

// connError says why reading the connection failed.
func connError(err error) error {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return fmt.Errorf("the HTTP/2 connection failed: the server broke the protocol (%v)", http2.ErrCode(ce))
	}
	if errors.Is(err, io.EOF) {
		return errors.New("the HTTP/2 connection was closed by the server")
	}
	return fmt.Errorf("the HTTP/2 connection was lost: %w", err)
}

// handle acts on one frame. An error fails the connection.
func (cc *clientConn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := cc.applySettings(f); err != nil {
			return err
		}
		return cc.writeFrame(cc.fr.WriteSettingsAck)
	case *http2.MetaHeadersFrame:
		cc.gotHeaders(f)
	case *http2.DataFrame:
		return cc.gotData(f)
	case *http2.RSTStreamFrame:
		if tr := cc.t.Trace; tr != nil && tr.StreamReset != nil {
			tr.StreamReset(f.StreamID, f.ErrCode, true)
		}
		cc.endStream(f.StreamID, &StreamResetError{StreamID: f.StreamID, Code: f.ErrCode})
	case *http2.WindowUpdateFrame:
		cc.mu.Lock()
		if f.StreamID == 0 {
			cc.sendWindow += int64(f.Increment)
			if cc.sendWindow > math.MaxInt32 {
				cc.mu.Unlock()
				return errors.New("the server overflowed the HTTP/2 connection's flow-control window")
			}
			for _, st := range cc.streams {
				st.cond.Broadcast()
			}
		} else if st := cc.streams[f.StreamID]; st != nil {
			st.sendWindow += int64(f.Increment)
			st.cond.Broadcast()
		}
		cc.mu.Unlock()
	case *http2.PingFrame:
		if !f.IsAck() {
			return cc.writeFrame(func() error { return cc.fr.WritePing(true, f.Data) })
		}
	case *http2.GoAwayFrame:
		if tr := cc.t.Trace; tr != nil && tr.GoAway != nil {
			tr.GoAway(f.LastStreamID, f.ErrCode, f.DebugData())
		}
		cc.t.forget(cc)
		cc.mu.Lock()
		cc.goAway = true
		var gone []*stream
		for id, st := range cc.streams {
			if id > f.LastStreamID {
				gone = append(gone, st)
			}
		}
		idle := len(cc.streams) == len(gone) && cc.reserved == 0
		cc.mu.Unlock()
		for _, st := range gone {
			cc.endStream(st.id, fmt.Errorf("the server sent GOAWAY (%v) before taking HTTP/2 stream %d", f.ErrCode, st.id))
		}
		if idle {
			return fmt.Errorf("the server sent GOAWAY (%v) and no stream is left", f.ErrCode)
		}
	case *http2.PushPromiseFrame:
		return errors.New("the server sent PUSH_PROMISE, which this client disabled (RFC 9113 section 8.4)")
	}
	return nil
}

// fail ends the connection and every stream on it with err.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err, cc.goAway = err, true
	streams := cc.streams
	cc.streams = map[uint32]*stream{}
	for _, st := range streams {
		st.finish(err)
	}
	cc.mu.Unlock()
	cc.t.forget(cc)
	cc.nc.Close()
}

// headerBuffer collects one header block from the hpack encoder.
type headerBuffer struct{ b []byte }

func (h *headerBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}
