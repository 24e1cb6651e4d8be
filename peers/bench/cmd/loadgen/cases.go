package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
	"github.com/duplexws/duplex/websocket"
)

// measurement is one repetition's metrics, by name.
type measurement map[string]float64

// Metric names.
const (
	metricMessagesPerSec   = "messages_per_s"
	metricDeliveriesPerSec = "deliveries_per_s"
	metricP50              = "p50_us"
	metricP99              = "p99_us"
	metricRSSPerConn       = "rss_per_conn_bytes"
	metricHeapPerConn      = "heap_per_conn_bytes"
	metricStackPerConn     = "stack_per_conn_bytes"
	metricOtherPerConn     = "runtime_other_per_conn_bytes"
	metricGoroutinesPer    = "goroutines_per_conn"
	metricMessages         = "messages"             // echoed, or published, in the window
	metricDeliveries       = "deliveries"           // broadcast deliveries in the window
	metricServerCPU        = "server_cpu_us_per_op" // per echoed message, or per delivery
)

// dialWorkers is how many handshakes are in flight at once.
const dialWorkers = 64

// bg is the context of every client read and write: a stalled case ends by
// its watchdog closing the connections, which costs the client nothing per
// call.
var bg = context.Background()

// runEcho has every connection write a message of size bytes and wait for
// its echo, in a loop, for dur after a warm-up of dur/10.
// A probe, when not nil, is started and stopped with the measured window.
func runEcho(ctx context.Context, s *server, conns, size int, dur time.Duration, pr probe) (measurement, error) {
	setup := func(c *websocket.Conn, _ *http.Response) error {
		c.SetReadLimit(int64(size))
		return nil
	}
	cs, err := dialAll(ctx, conns, dialWorkers, "ws://"+s.addr+"/echo", dialOptions(0, false), setup)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)

	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{}).Read(payload)
	warmup := dur / 10
	measureFrom := time.Now().Add(warmup)
	end := measureFrom.Add(dur)
	watchdog := time.AfterFunc(warmup+dur+30*time.Second, func() { closeAll(cs) })
	defer watchdog.Stop()
	cpuStart := make(chan time.Duration, 1)
	time.AfterFunc(warmup, func() {
		if pr != nil {
			pr.start()
		}
		t, _ := s.cpuTime()
		cpuStart <- t
	})

	var (
		h        histogram
		count    atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for _, c := range cs {
		wg.Go(func() {
			buf := make([]byte, size)
			for {
				start := time.Now()
				if start.After(end) || ctx.Err() != nil {
					return
				}
				if err := echoOnce(c, payload, buf); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if start.After(measureFrom) {
					h.record(time.Since(start))
					count.Add(1)
				}
			}
		})
	}
	wg.Wait()
	started := <-cpuStart
	if pr != nil {
		pr.stop()
	}
	if firstErr != nil {
		return nil, fmt.Errorf("echo: %w", firstErr)
	}
	cpu, err := s.cpuTime()
	if err != nil {
		return nil, err
	}
	n := count.Load()
	if n == 0 {
		return nil, errors.New("echo: no round trip completed")
	}
	return measurement{
		metricMessagesPerSec: float64(n) / dur.Seconds(),
		metricP50:            micros(h.quantile(0.50)),
		metricP99:            micros(h.quantile(0.99)),
		metricServerCPU:      micros(cpu-started) / float64(n),
		metricMessages:       float64(n),
	}, nil
}

// echoOnce writes payload and reads its echo into buf, which has its size.
func echoOnce(c *websocket.Conn, payload, buf []byte) error {
	if err := c.Write(bg, websocket.MessageBinary, payload); err != nil {
		return err
	}
	_, r, err := c.Reader(bg)
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	if n, err := r.Read(buf[:1]); n != 0 || err != io.EOF {
		return errShortEcho
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// runMemory opens conns connections to path and measures what the server
// holds for each once they are all open: the difference from the server's
// baseline, both sampled after a garbage collection. With compress, every
// connection agrees on permessage-deflate with context takeover both ways
// and echoes compressedBytes of similar JSON messages first, enough to fill
// the windows of both directions; the note then says what was agreed.
func runMemory(ctx context.Context, s *server, conns int, path string, compress bool) (m measurement, note string, err error) {
	base, err := s.stats(true)
	if err != nil {
		return nil, "", err
	}
	var setup func(*websocket.Conn, *http.Response) error
	var agreed sync.Once
	if compress {
		setup = func(c *websocket.Conn, resp *http.Response) error {
			agreed.Do(func() { note = resp.Header.Get("Sec-WebSocket-Extensions") })
			return exchangeCompressed(c, resp)
		}
	}
	cs, err := dialAll(ctx, conns, dialWorkers, "ws://"+s.addr+path, dialOptions(256, compress), setup)
	if err != nil {
		return nil, "", err
	}
	defer closeAll(cs)

	// Wait for the server to have taken over every connection, and for its
	// goroutine count to hold still (most run one per connection; Duplex's
	// Await runs none).
	last := -1
	_, err = s.waitStats(ctx, 30*time.Second, func(st benchsrv.Stats) bool {
		settled := st.Upgraded >= base.Upgraded+int64(conns) && st.Goroutines == last
		last = st.Goroutines
		return settled
	})
	if err != nil {
		return nil, "", err
	}
	st, err := s.stats(true)
	if err != nil {
		return nil, "", err
	}
	n := float64(conns)
	return measurement{
		metricRSSPerConn:    float64(st.RSS-base.RSS) / n,
		metricHeapPerConn:   (float64(st.HeapInuse) - float64(base.HeapInuse)) / n,
		metricStackPerConn:  (float64(st.StackInuse) - float64(base.StackInuse)) / n,
		metricOtherPerConn:  (float64(st.OtherSys) - float64(base.OtherSys)) / n,
		metricGoroutinesPer: float64(st.Goroutines-base.Goroutines) / n,
	}, note, nil
}

// compressedBytes is how much each connection of the compression case
// sends, and gets back, before it idles: more than the largest window
// (32 KiB), so that every window and history is full, as on a long-lived
// connection.
const compressedBytes = 40 << 10

// exchangeCompressed checks that the server agreed on context takeover in
// both directions and echoes compressedBytes of JSON messages of about
// 4 KiB that resemble each other, as a real event stream's do.
func exchangeCompressed(c *websocket.Conn, resp *http.Response) error {
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !strings.Contains(ext, "permessage-deflate") || strings.Contains(ext, "no_context_takeover") {
		return fmt.Errorf("server did not agree on context takeover (Sec-WebSocket-Extensions: %q)", ext)
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
	for sent := 0; sent < compressedBytes; {
		msg := jsonEvent(rng, 4<<10)
		if err := c.Write(bg, websocket.MessageText, msg); err != nil {
			return err
		}
		_, got, err := c.Read(bg)
		if err != nil {
			return err
		}
		if len(got) != len(msg) {
			return errShortEcho
		}
		sent += len(msg)
	}
	return nil
}

var words = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu")

// jsonEvent returns a chat-like JSON event of about size bytes.
func jsonEvent(rng *rand.Rand, size int) []byte {
	var b strings.Builder
	b.WriteString(`{"type":"publication","channel":"chat:lobby","events":[`)
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"offset":%d,"user":"user-%d","text":"%s %s %s"}`,
			rng.IntN(1e6), rng.IntN(1e4), words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))])
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// broadcastSlots is how many broadcasts delivery counts are kept for; the
// window of broadcasts in flight must be smaller.
const broadcastSlots = 1024

// broadcastSize is the size of a broadcast message: a sequence number, the
// time of publishing, and padding.
const broadcastSize = 64

// runBroadcast connects subs subscribers and a publisher, then publishes
// 64-byte messages for dur after a warm-up of dur/10, keeping up to window
// broadcasts in flight: a broadcast is done when every subscriber has it.
// A probe, when not nil, is started and stopped with the measured window.
func runBroadcast(ctx context.Context, s *server, subs int, dur time.Duration, window int, pr probe) (measurement, error) {
	if window < 1 || window >= broadcastSlots {
		return nil, fmt.Errorf("broadcast window must be in [1, %d)", broadcastSlots)
	}
	url := "ws://" + s.addr + "/broadcast"
	cs, err := dialAll(ctx, subs, dialWorkers, url, dialOptions(256, false), nil)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	pub, _, err := websocket.Dial(ctx, url+"?publish", dialOptions(0, false))
	if err != nil {
		return nil, err
	}
	defer pub.CloseNow()
	if _, err := s.waitStats(ctx, 30*time.Second, func(st benchsrv.Stats) bool { return st.Subscribers >= int64(subs) }); err != nil {
		return nil, err
	}

	var (
		epoch      = time.Now()
		h          histogram
		measured   atomic.Int64
		firstSeq   atomic.Uint64 // the first broadcast measured
		delivered  [broadcastSlots]atomic.Int64
		complete   = make(chan uint64, broadcastSlots)
		wg         sync.WaitGroup
		subscriber = func(c *websocket.Conn) {
			buf := make([]byte, broadcastSize)
			for {
				_, r, err := c.Reader(bg)
				if err != nil {
					return // closed at the end
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					return
				}
				seq := binary.LittleEndian.Uint64(buf)
				sent := time.Duration(binary.LittleEndian.Uint64(buf[8:]))
				if seq >= firstSeq.Load() {
					h.record(time.Since(epoch) - sent)
					measured.Add(1)
				}
				if delivered[seq%broadcastSlots].Add(1) == int64(subs) {
					complete <- seq
				}
			}
		}
	)
	firstSeq.Store(math.MaxUint64)
	for _, c := range cs {
		wg.Go(func() { subscriber(c) })
	}
	defer func() {
		closeAll(cs)
		wg.Wait()
	}()

	msg := make([]byte, broadcastSize)
	measureFrom := time.Now().Add(dur / 10)
	end := measureFrom.Add(dur)
	var (
		seq, inflight uint64
		measureStart  time.Time
		cpuStart      time.Duration
	)
	for {
		for inflight < uint64(window) && time.Now().Before(end) {
			now := time.Now()
			if measureStart.IsZero() && now.After(measureFrom) {
				if pr != nil {
					pr.start()
					now = time.Now()
				}
				measureStart = now
				firstSeq.Store(seq)
				if cpuStart, err = s.cpuTime(); err != nil {
					return nil, err
				}
			}
			delivered[seq%broadcastSlots].Store(0)
			binary.LittleEndian.PutUint64(msg, seq)
			binary.LittleEndian.PutUint64(msg[8:], uint64(now.Sub(epoch)))
			if err := pub.Write(bg, websocket.MessageBinary, msg); err != nil {
				return nil, fmt.Errorf("publishing: %w", err)
			}
			seq++
			inflight++
		}
		if inflight == 0 {
			break
		}
		select {
		case <-complete:
			inflight--
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("broadcast %d: not every subscriber received it within 30s", seq-inflight)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if pr != nil && !measureStart.IsZero() {
		pr.stop()
	}
	if measureStart.IsZero() {
		return nil, errors.New("broadcast: no message published after the warm-up")
	}
	elapsed := time.Since(measureStart)
	cpu, err := s.cpuTime()
	if err != nil {
		return nil, err
	}
	deliveries := measured.Load()
	return measurement{
		metricDeliveriesPerSec: float64(deliveries) / elapsed.Seconds(),
		metricP50:              micros(h.quantile(0.50)),
		metricP99:              micros(h.quantile(0.99)),
		metricMessages:         float64(seq - firstSeq.Load()),
		metricDeliveries:       float64(deliveries),
		metricServerCPU:        micros(cpu-cpuStart) / float64(deliveries),
	}, nil
}
