package abuse

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// targets runs f against duplex serve (with cfg) and duplex echo (with
// echoArgs), each as a subtest.
func targets(t *testing.T, cfg config, echoArgs []string, f func(t *testing.T, g *target)) {
	t.Run("serve", func(t *testing.T) { f(t, startServe(t, cfg)) })
	t.Run("echo", func(t *testing.T) { f(t, startEcho(t, echoArgs...)) })
}

// flood keeps conns connections flooding for d: each writes chunk again
// and again after prefix until the server ends it, and a new one takes its
// place, as an attacker who is closed reconnects, so that the healthy
// client's p99 covers the whole attack rather than the milliseconds one
// connection lasts. Every round may flood for d, however little of d is
// left when it starts: one given only what was left stopped writing before
// the server's limit caught it, and was never closed. It counts how each
// ended: want is the close code the server must send.
func flood(ctx context.Context, t *testing.T, g *target, conns int, d time.Duration, prefix, chunk []byte, want string) string {
	seen := new(codes)
	var written int64
	rounds := 0
	for end := time.Now().Add(d); rounds == 0 || time.Now().Before(end) && ctx.Err() == nil; rounds++ {
		s, sent := floodConns(ctx, g, conns, d, prefix, chunk, false)
		seen.merge(s)
		for _, n := range sent {
			written += n
		}
	}
	total := seen.total()
	if got := seen.get(want); got != total {
		t.Errorf("flood: connections ended %s, want all %d closed with %s", seen, total, want)
	}
	return fmt.Sprintf("%d conns in %d rounds of %d, %d MiB sent: %s", total, rounds, conns, written>>20, seen)
}

// floodConns opens conns connections and, on each, writes prefix, then
// chunk again and again for up to d: until the server closes the
// connection, and, unless pastClose, until its close frame arrives. It
// returns how each connection ended (a close code, "open", "none" or a
// failed handshake) and the bytes written on each.
func floodConns(ctx context.Context, g *target, conns int, d time.Duration, prefix, chunk []byte, pastClose bool) (*codes, []int64) {
	seen := new(codes)
	sent := make([]int64, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, status, err := dialWS(ctx, g, attackerIP, "", 0)
			if err != nil || status != 101 {
				seen.add(fmt.Sprintf("handshake %d %v", status, err))
				return
			}
			defer c.Close()
			ended := make(chan string, 1)
			go func() { ended <- c.awaitClose(d + 5*time.Second) }()
			c.Write(prefix)
			for deadline := time.Now().Add(d); time.Now().Before(deadline) && ctx.Err() == nil; {
				c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.Write(chunk)
				sent[i] += int64(n)
				if err != nil && !isTimeout(err) {
					break // the server closed the connection
				}
				if !pastClose {
					select {
					case how := <-ended:
						ended <- how
						deadline = time.Time{}
					default:
					}
				}
			}
			seen.add(<-ended)
		})
	}
	wg.Wait()
	return seen, sent
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	te, ok := err.(timeout)
	return ok && te.Timeout()
}

// TestFrameFlood: endless empty continuation frames (the issue measured
// 24 M frames/s from 4 connections taking a core, with the command rate
// never applying). The server must cap fragments per message and rate
// frames per connection: close with 1008. Waits for H's fix of defect 7.
func TestFrameFlood(t *testing.T) {
	needSuite(t)
	var chunk []byte
	for len(chunk) < 64<<10 {
		chunk = appendFrame(chunk, false, false, opContinuation, 0, nil)
	}
	prefix := appendFrame(nil, false, false, opText, 0, nil)
	targets(t, baseConfig(), nil, func(t *testing.T, g *target) {
		g.run(t, "frame flood/"+g.kind, attack{run: func(ctx context.Context, t *testing.T) string {
			return flood(ctx, t, g, 4, time.Duration(size(2, 10))*time.Second, prefix, chunk, "1008")
		}})
	})
}

// TestPingFlood: ping frames as fast as the connection takes them.
// Control frames count against the frame rate too: close with 1008. The
// server answers the pings its frame burst lets through a buffer of pongs
// per write, and after the 1008 reads at most 256 KiB more of the flood:
// before, each ping cost a write, and the drain after the close frame read
// the flood at the byte rate for the whole close timeout, which held the
// healthy client's p99 at 27 ms (serve, 2.5 ms before the attack).
func TestPingFlood(t *testing.T) {
	needSuite(t)
	var chunk []byte
	for len(chunk) < 64<<10 {
		chunk = appendFrame(chunk, true, false, opPing, 125, bytes.Repeat([]byte{'p'}, 125))
	}
	targets(t, baseConfig(), nil, func(t *testing.T, g *target) {
		g.run(t, "ping flood/"+g.kind, attack{run: func(ctx context.Context, t *testing.T) string {
			return flood(ctx, t, g, 4, time.Duration(size(2, 10))*time.Second, nil, chunk, "1008")
		}})
	})
}

// bomb is a permessage-deflate message (RFC 7692 section 7.2.1: the
// deflate stream without its final empty block's 4 bytes) of n zero
// bytes.
func bomb(n int) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	zeros := make([]byte, 64<<10)
	for left := n; left > 0; left -= len(zeros) {
		w.Write(zeros[:min(left, len(zeros))])
	}
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// TestDecompressionBomb: small compressed messages that inflate far past
// the read limit (64 KiB for serve, 1 MiB as echo is started here) close
// with 1009, and inflating them costs no more than the limit. This held
// before the issue.
func TestDecompressionBomb(t *testing.T) {
	needSuite(t)
	cfg := baseConfig()
	cfg["compression"] = "context"
	conns := size(20, 200)
	payload := bomb(64 << 20) // 64 MiB of zeros in about 64 KiB
	msg := appendFrame(nil, true, true, opText, len(payload), payload)
	targets(t, cfg, []string{"--compress", "context", "--read-limit", "1048576"}, func(t *testing.T, g *target) {
		g.run(t, "decompression bomb/"+g.kind, attack{run: func(ctx context.Context, t *testing.T) string {
			var seen codes
			var wg sync.WaitGroup
			sem := make(chan struct{}, 20)
			for range conns {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, status, err := dialWS(ctx, g, attackerIP, "Sec-WebSocket-Extensions: permessage-deflate\r\n", 0)
					if err != nil || status != 101 {
						seen.add(fmt.Sprintf("handshake %d %v", status, err))
						return
					}
					defer c.Close()
					c.Write(msg)
					seen.add(c.awaitClose(10 * time.Second))
				}()
			}
			wg.Wait()
			if seen.get("1009") != conns {
				t.Errorf("bombs: connections ended %s, want all %d closed with 1009", &seen, conns)
			}
			return fmt.Sprintf("%d bombs of 64 MiB in %d KiB: %s", conns, len(payload)>>10, &seen)
		}})
	})
}

// TestPartialMessage: a frame header announcing 64 KiB followed by one
// byte cost 68 KB per connection, as the read buffer was sized from the
// header. Buffers must grow as bytes arrive. Waits for H's fix of defect 6.
func TestPartialMessage(t *testing.T) {
	needSuite(t)
	conns := size(500, 1000)
	const announced = 64<<10 - 1
	head := appendFrame(nil, true, false, opText, announced, []byte{'{'})
	targets(t, baseConfig(), nil, func(t *testing.T, g *target) {
		g.run(t, "partial message/"+g.kind, attack{
			// An upgraded connection costs some 10 KiB of RSS: well under
			// 24 KiB each, far under the 68 KB a buffer sized from the
			// header costs.
			rssDuring:  uint64(conns)*24<<10 + 8*mib,
			heapDuring: uint64(conns)*16<<10 + 4*mib,
			run: func(ctx context.Context, t *testing.T) string {
				var seen codes
				var mu sync.Mutex
				var open []*rawConn
				var wg sync.WaitGroup
				sem := make(chan struct{}, 64)
				for range conns {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						c, status, err := dialWS(ctx, g, attackerIP, "", 0)
						if err != nil || status != 101 {
							seen.add(fmt.Sprintf("handshake %d %v", status, err))
							return
						}
						c.Write(head)
						mu.Lock()
						open = append(open, c)
						mu.Unlock()
					}()
				}
				wg.Wait()
				time.Sleep(2 * time.Second) // the server holds them all now
				for _, c := range open {
					c.Close()
				}
				if len(open) != conns {
					t.Errorf("only %d of %d connections upgraded: %s", len(open), conns, &seen)
				}
				return fmt.Sprintf("%d conns held a 64 KiB frame begun", len(open))
			}})
	})
}

// TestSendAfterClose: a client that is closed (a frame of a reserved
// opcode: 1002) and keeps sending as fast as it can, ignoring the close
// frame. The server drains what arrives after its close frame for the
// close timeout (5 s) so that the client can read it; that drain read at
// line rate, past the byte rate, 1.2 GB in 2 s in the websocket package's
// test. Now it keeps to the byte rate (1 MiB/s here): each connection may
// send at most the burst and 5 s of the rate, with the socket buffers of
// both ends besides.
func TestSendAfterClose(t *testing.T) {
	needSuite(t)
	const rate = 1 << 20
	cfg := baseConfig()
	cfg.limits()["byte_rate"] = rate
	cfg.limits()["byte_burst"] = 2 * rate
	conns := size(2, 8)
	bad := appendFrame(nil, true, false, 0x3, 0, nil)
	junk := bytes.Repeat([]byte{0xee}, 64<<10)
	// 2 MiB of burst, 5 s at the rate, and up to about 10 MiB of socket
	// buffers: 64 MiB leaves room; at line rate it is gigabytes.
	const bound = 64 << 20
	targets(t, cfg, []string{"--byte-rate", "1048576", "--byte-burst", "2097152"}, func(t *testing.T, g *target) {
		g.run(t, "send after close/"+g.kind, attack{run: func(ctx context.Context, t *testing.T) string {
			seen, sent := floodConns(ctx, g, conns, 10*time.Second, bad, junk, true)
			if got := seen.get("1002"); got != conns {
				t.Errorf("connections ended %s, want all %d closed with 1002", seen, conns)
			}
			most := slices.Max(sent)
			if most > bound {
				t.Errorf("a client sent %d MiB after its close, over %d MiB: the drain does not keep to the byte rate", most>>20, bound>>20)
			}
			return fmt.Sprintf("%d conns, at most %d MiB sent after the close: %s", conns, most>>20, seen)
		}})
	})
}
