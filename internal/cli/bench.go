package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/duplexws/duplex/internal/h2client"
	"github.com/duplexws/duplex/websocket"
)

// Bounds of duplex bench.
const (
	maxBenchConnections = 100_000
	maxBenchDuration    = 24 * time.Hour
	maxBenchLocalAddrs  = 254
	benchDrainTimeout   = 2 * time.Second // for the echoes of the last messages
	benchCloseTimeout   = 2 * time.Second // for each closing handshake
	benchMaxInFlight    = 1024            // messages awaiting their echo, per connection
	benchStampSize      = 16              // bytes of a message that carry its sequence number
)

// benchConfig is what duplex bench runs.
type benchConfig struct {
	dialer      *dialer
	connections int
	connectRate float64 // connections opened per second; 0 opens all at once
	size        int
	text        bool
	messageRate float64 // messages per second per connection; 0 sends each on the echo of the last
	messages    int     // per connection; 0 for no limit
	duration    time.Duration
	localAddrs  int // source addresses 127.0.0.1 to 127.0.0.localAddrs; 0 lets the system choose
	http2Conns  int // with --http2, WebSockets per TCP connection (bench_h2.go)

	sub *subscribeConfig // --mode subscribe; nil in echo mode
}

// bench is one run of duplex bench. Its counters are updated by the
// connections' goroutines as they go and read by the progress line.
type bench struct {
	cfg     *benchConfig
	start   time.Time // when the bench began: newBench
	payload []byte    // the message every connection sends, but for its stamp

	started, opened, failed, open, peakOpen atomic.Int64
	sent, received                          atomic.Int64 // messages
	bytesSent, bytesReceived                atomic.Int64
	latency                                 histogram

	errMu  sync.Mutex
	errors map[string]*benchErrorCount

	sub *subscribeRun // --mode subscribe; nil in echo mode
	h2  *benchH2      // --http2; nil without
}

type benchErrorCount struct {
	count   int64
	example string
}

func newBench(cfg *benchConfig) *bench {
	b := &bench{cfg: cfg, start: time.Now(), errors: make(map[string]*benchErrorCount)}
	if cfg.dialer.http2 != http2Off {
		b.h2 = &benchH2{streamsPerConn: cfg.http2Conns, transports: map[int]*h2client.Transport{}}
	}
	if cfg.sub != nil {
		b.sub = newSubscribeRun(cfg.sub, cfg.sub.channelCount(cfg.connections), cfg.size)
		return b
	}
	b.payload = make([]byte, cfg.size)
	if cfg.text {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		for i := range b.payload {
			b.payload[i] = letters[i%len(letters)]
		}
	} else {
		rand.NewChaCha8([32]byte{'d', 'u', 'p', 'l', 'e', 'x'}).Read(b.payload)
	}
	return b
}

// run, called once right after newBench, opens the connections, ramped at
// the connect rate, and has each send messages until its count is done,
// the duration has passed or ctx ends. Then it waits up to
// benchDrainTimeout for the echoes still awaited and closes every
// connection. It returns when all of that is over, with how long the
// measurement lasted.
func (b *bench) run(ctx context.Context) time.Duration {
	sendCtx, stopSending := context.WithTimeout(ctx, b.cfg.duration)
	defer stopSending()
	// ioCtx bounds the echoes awaited once sending stops.
	ioCtx, stopIO := context.WithCancel(ctx)
	defer stopIO()
	drain := context.AfterFunc(sendCtx, func() {
		t := time.AfterFunc(benchDrainTimeout, stopIO)
		context.AfterFunc(ioCtx, func() { t.Stop() })
	})
	defer drain()

	var wg sync.WaitGroup
	b.ramp(sendCtx, func(i int) {
		wg.Go(func() { b.connection(sendCtx, ioCtx, i) })
	})
	wg.Wait()
	end := time.Now()
	if deadline, ok := sendCtx.Deadline(); ok && end.After(deadline) {
		end = deadline // the drain is not part of the measurement
	}
	return end.Sub(b.start)
}

// connection is the life of connection i: dial, send and check echoes, close.
func (b *bench) connection(sendCtx, ioCtx context.Context, i int) {
	c := b.dial(ioCtx, i)
	if c == nil {
		return
	}
	defer b.open.Add(-1)
	c.SetReadLimit(max(int64(b.cfg.size), websocket.DefaultReadLimit))

	var ended *phaseError
	if b.cfg.messageRate > 0 {
		ended = b.sendAtRate(sendCtx, ioCtx, c)
	} else {
		ended = b.sendOnEcho(sendCtx, ioCtx, c)
	}
	if ended != nil {
		if ioCtx.Err() == nil { // else the drain ran out, or the bench was interrupted
			b.countError(ended)
		}
		c.CloseNow()
		return
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil && ioCtx.Err() == nil {
		b.countError(&phaseError{"close", err})
	}
}

// dial opens connection i and counts it as open; the caller counts it
// closed with b.open.Add(-1). It returns nil when the dial fails, counted
// as a failure unless ctx ended (then the bench is over, not the server).
func (b *bench) dial(ctx context.Context, i int) *websocket.Conn {
	var c *websocket.Conn
	var err error
	if b.h2 != nil {
		c, err = b.dialH2(ctx, i)
	} else {
		opts, dialURL := b.cfg.dialer.options(b.netDial(i), nil)
		opts.CloseTimeout = benchCloseTimeout
		c, _, err = b.cfg.dialer.dial(ctx, opts, dialURL)
	}
	if err != nil {
		if ctx.Err() == nil {
			b.failed.Add(1)
			b.countError(&phaseError{"dial", err})
		}
		return nil
	}
	b.opened.Add(1)
	storeMax(&b.peakOpen, b.open.Add(1))
	return c
}

// sendOnEcho sends each message when the echo of the one before has come.
// It returns a *phaseError when the connection failed.
func (b *bench) sendOnEcho(sendCtx, ioCtx context.Context, c *websocket.Conn) *phaseError {
	msg := bytes.Clone(b.payload)
	for seq := uint64(0); b.cfg.messages == 0 || seq < uint64(b.cfg.messages); seq++ {
		if sendCtx.Err() != nil {
			return nil
		}
		stamp(msg, seq)
		sentAt := time.Now()
		if err := b.write(ioCtx, c, msg); err != nil {
			return err
		}
		if err := b.readEcho(ioCtx, c, seq, sentAt); err != nil {
			return err
		}
	}
	return nil
}

// inFlight is a message awaiting its echo.
type inFlight struct {
	seq    uint64
	sentAt time.Time
}

// sendAtRate sends at the message rate, whether echoes have come or not,
// up to benchMaxInFlight unanswered messages, while a second goroutine
// reads the echoes.
func (b *bench) sendAtRate(sendCtx, ioCtx context.Context, c *websocket.Conn) *phaseError {
	sendCtx, stopSending := context.WithCancel(sendCtx) // the reader stops the sender when it fails
	defer stopSending()
	pending := make(chan inFlight, benchMaxInFlight)
	readErr := make(chan *phaseError, 1)
	go func() { readErr <- b.readEchoes(ioCtx, c, pending, stopSending) }()

	interval := time.Duration(float64(time.Second) / b.cfg.messageRate)
	// Spread the connections over the interval, rather than all sending
	// at once.
	next := time.Now().Add(time.Duration(rand.Int64N(int64(interval) + 1)))
	msg := bytes.Clone(b.payload)
	var writeErr *phaseError
	for seq := uint64(0); b.cfg.messages == 0 || seq < uint64(b.cfg.messages); seq++ {
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-sendCtx.Done():
			t.Stop()
		}
		if sendCtx.Err() != nil {
			break
		}
		next = next.Add(interval)
		stamp(msg, seq)
		f := inFlight{seq: seq, sentAt: time.Now()}
		select {
		case pending <- f:
		case <-sendCtx.Done():
		}
		if sendCtx.Err() != nil {
			break
		}
		if writeErr = b.write(ioCtx, c, msg); writeErr != nil {
			break
		}
	}
	close(pending)
	if writeErr != nil {
		c.CloseNow() // ends the reader, whose error follows from this one
		<-readErr
		return writeErr
	}
	return <-readErr
}

// readEchoes reads the echo of each message in pending. When reading
// fails, it stops the sender and lets it finish.
func (b *bench) readEchoes(ioCtx context.Context, c *websocket.Conn, pending chan inFlight, stopSending func()) *phaseError {
	for f := range pending {
		if err := b.readEcho(ioCtx, c, f.seq, f.sentAt); err != nil {
			stopSending()
			for range pending {
			}
			return err
		}
	}
	return nil
}

func (b *bench) write(ioCtx context.Context, c *websocket.Conn, msg []byte) *phaseError {
	typ := websocket.MessageBinary
	if b.cfg.text {
		typ = websocket.MessageText
	}
	if err := c.Write(ioCtx, typ, msg); err != nil {
		return &phaseError{"write", err}
	}
	b.sent.Add(1)
	b.bytesSent.Add(int64(len(msg)))
	return nil
}

// readEcho reads the echo of message seq and records its latency.
func (b *bench) readEcho(ioCtx context.Context, c *websocket.Conn, seq uint64, sentAt time.Time) *phaseError {
	_, got, err := c.Read(ioCtx)
	if err != nil {
		return &phaseError{"read", err}
	}
	b.latency.Record(time.Since(sentAt))
	b.received.Add(1)
	b.bytesReceived.Add(int64(len(got)))
	if !b.isEcho(got, seq) {
		return &phaseError{"echo", fmt.Errorf("message %d came back as %d bytes that differ from those sent", seq, len(got))}
	}
	return nil
}

// stamp writes seq into the first bytes of msg, in hex, which is valid in
// text messages too.
func stamp(msg []byte, seq uint64) {
	const digits = "0123456789abcdef"
	n := min(len(msg), benchStampSize)
	for i := n - 1; i >= 0; i-- {
		msg[i] = digits[seq&0xf]
		seq >>= 4
	}
}

// isEcho reports whether got is message seq.
func (b *bench) isEcho(got []byte, seq uint64) bool {
	if len(got) != len(b.payload) {
		return false
	}
	var want [benchStampSize]byte
	n := min(len(got), benchStampSize)
	copy(want[:n], b.payload[:n])
	stamp(want[:n], seq)
	return bytes.Equal(got[:n], want[:n]) && bytes.Equal(got[n:], b.payload[n:])
}

// netDial returns the dial function of connection i: from a source
// address of its own when --local-addrs asks for them.
func (b *bench) netDial(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	if b.cfg.localAddrs > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%b.cfg.localAddrs))}
	}
	return d.DialContext
}

// phaseError is a failure of a connection and what it was doing: "dial",
// "write", "read", "echo" (a wrong echo) or "close"; in --mode subscribe
// also "connect", "subscribe" and "publish" (an error reply or a failed
// API request), "gap" and "unsubscribe" (the gateway's pushes).
type phaseError struct {
	phase string
	err   error
}

func (e *phaseError) Error() string { return e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

// countError counts the failure of a connection under its kind: what the
// connection was doing and why it failed, in words that group alike
// failures.
func (b *bench) countError(err *phaseError) {
	kind := err.phase
	var ge *gwError
	switch {
	case err.phase == "echo", err.phase == "gap", err.phase == "unsubscribe":
	case errors.As(err.err, &ge):
		kind += ": " + ge.Error()
	default:
		kind += ": " + errorKind(err.err)
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	e := b.errors[kind]
	if e == nil {
		e = &benchErrorCount{example: err.Error()}
		b.errors[kind] = e
	}
	e.count++
}

// errorCount returns the number of errors counted.
func (b *bench) errorCount() int64 {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	var n int64
	for _, e := range b.errors {
		n += e.count
	}
	return n
}

// errorKind names the cause of err.
func errorKind(err error) string {
	var ce *websocket.CloseError
	var pe *websocket.ProtocolError
	var ae *apiCallError
	switch {
	case errors.As(err, &ae):
		return fmt.Sprintf("HTTP %d %s", ae.status, http.StatusText(ae.status))
	case errors.Is(err, errNotGateway):
		return "not a Duplex gateway"
	case errors.As(err, &ce):
		return "closed by the server with " + describeCode(ce.Code)
	case errors.As(err, &pe):
		return "protocol error, closed with " + describeCode(pe.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (try --local-addrs)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection lost without a close frame"
	case strings.Contains(err.Error(), "handshake refused: "):
		_, status, _ := strings.Cut(err.Error(), "handshake refused: ")
		return "handshake refused: " + status
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused" // the library's dial error keeps only the text
	case strings.Contains(err.Error(), "cannot assign requested address"):
		return "no free local port (try --local-addrs)"
	case strings.Contains(err.Error(), "too many open files"):
		return "too many open files"
	}
	return "other"
}

// storeMax makes a hold at least v.
func storeMax(a *atomic.Int64, v int64) {
	for m := a.Load(); v > m && !a.CompareAndSwap(m, v); m = a.Load() {
	}
}

// loopbackHost reports whether the URL's host is a loopback address, the
// only kind --local-addrs can reach from 127.0.0.x.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// ramp calls start for each connection to open, at the connect rate, until
// ctx ends, counting them as started.
func (b *bench) ramp(ctx context.Context, start func(i int)) {
	var interval time.Duration
	if b.cfg.connectRate > 0 {
		interval = time.Duration(float64(time.Second) / b.cfg.connectRate)
	}
	next := b.start
	for i := range b.cfg.connections {
		if interval > 0 && i > 0 {
			next = next.Add(interval)
			t := time.NewTimer(time.Until(next))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		b.started.Add(1)
		start(i)
	}
}
