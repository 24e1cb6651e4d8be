package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

const queuedBytesGauge = "duplex_outbound_queue_bytes"

// heapInUse is the heap's live bytes after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestDropOldestHoldsOnlyItsBound: subscribers that never read, in a
// drop_oldest namespace, hold no more than max_queue_bytes each however
// much is published while their writes are stuck (it was every
// publication since the write got stuck: 327 MB for two subscribers of
// 20 KB publications).
func TestDropOldestHoldsOnlyItsBound(t *testing.T) {
	const limit = 256 << 10
	ts := newServer(t, func(cfg *Config) {
		cfg.Namespaces = append(cfg.Namespaces, Namespace{Name: "drop", Anonymous: true, HistorySize: 10, SlowConsumer: SlowDropOldest})
		cfg.Limits.MaxQueueBytes = limit
		cfg.Limits.WriteTimeout = time.Minute
	})
	base := ts.http.URL
	var subs []*rawConn
	for range 2 {
		r, _ := slowSubscriber(t, ts, "drop:x")
		subs = append(subs, r)
	}
	before := heapInUse()
	const n, size = 4000, 20 << 10 // 80 MB, far beyond what the sockets buffer
	var maxHeld float64
	for i := 1; i <= n; i++ {
		if _, err := ts.Publish(context.Background(), "drop:x", payload(i, size)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			maxHeld = max(maxHeld, metricValue(t, base, queuedBytesGauge, ""))
		}
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB with 2 stuck subscribers; %s at most %.0f KiB", grown>>10, queuedBytesGauge, maxHeld/1024)
	if maxHeld > 2*limit {
		t.Errorf("%s = %.0f, over 2 × %d", queuedBytesGauge, maxHeld, limit)
	}
	// The queues, the batches being written and the encoders' buffers:
	// a few times the bound, never the 80 MB published.
	if grown > 8<<20 {
		t.Errorf("heap grew %d MiB while subscribers were stuck; the bound is %d KiB each", grown>>20, limit>>10)
	}
	if v := metricValue(t, base, dropsTotal, `policy="drop_oldest"`); v < n {
		t.Errorf("drops{drop_oldest} = %v, want most of the 2 × %d publications", v, n)
	}
	if v := metricValue(t, base, disconnects, `reason="slow_consumer"`); v != 0 {
		t.Errorf("slow_consumer disconnects %v in a drop_oldest namespace", v)
	}

	// Reading at last, each gets publications in order, with gap pushes,
	// up to the last one.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, r := range subs {
		next := uint64(1)
		for next <= n {
			m, err := r.readLine(ctx)
			if err != nil {
				t.Fatalf("reading at offset %d: %v", next, err)
			}
			switch m.str("push") {
			case "gap":
				if uint64(m.num("from")) != next {
					t.Fatalf("gap %v, want one from %d", m, next)
				}
				next = uint64(m.num("to")) + 1
			case "pub":
				if off := uint64(m.num("offset")); off != next {
					t.Fatalf("publication %d, want %d", off, next)
				}
				next++
			}
		}
	}
	waitMetric(t, base, queuedBytesGauge, "", func(v float64) bool { return v == 0 })
}

// TestDropOldestNoRescan: each publication queued behind lines no policy
// may drop costs the same however long the queue has grown; it used to
// rescan the queue, dropped lines included, from its start.
func TestDropOldestNoRescan(t *testing.T) {
	ts := newServer(t, func(cfg *Config) { cfg.Limits.MaxQueueBytes = 1 << 20 })
	sess := newSession(ts.Server, nil, duplexProtocol{}, "192.0.2.1", nil)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.out.writing = true // as if its writer were stuck: none starts
	for range 5000 {
		sess.enqueueLocked([]byte(`{"push":"join","channel":"drop:x"}`), nil)
	}
	line := []byte(strings.Repeat("x", 1024))
	start := time.Now()
	const n = 200000
	for i := 1; i <= n; i++ {
		sess.enqueueLocked(line, &outPub{channel: "drop:x", policy: SlowDropOldest,
			pos: broker.Position{Offset: uint64(i), Epoch: "e"}})
		if i%1000 == 0 && time.Since(start) > 20*time.Second {
			t.Fatalf("%d publications took %v: the queue is rescanned for each", i, time.Since(start))
		}
	}
	t.Logf("%d publications behind 5,000 pushes in %v; %d slots", n, time.Since(start), cap(sess.out.items))
	// Some 1,000 publications and the pushes wait; dropped ones do not
	// keep their slots.
	if c := cap(sess.out.items); c > 32<<10 {
		t.Errorf("the queue has %d slots for about 6,000 waiting lines", c)
	}
	if v := metricValue(t, ts.http.URL, dropsTotal, `policy="drop_oldest"`); v < n-1100 {
		t.Errorf("drops{drop_oldest} = %v of %d", v, n)
	}
	sess.closing = true // nothing to release: its server's metrics go with it
}

// bigHistory publishes n publications of size bytes to channel.
func bigHistory(t *testing.T, ts *testServer, channel string, n, size int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if _, err := ts.Publish(context.Background(), channel, payload(i, size)); err != nil {
			t.Fatal(err)
		}
	}
}

func bigHistoryServer(t *testing.T) *testServer {
	return newServer(t, func(cfg *Config) {
		cfg.Namespaces = append(cfg.Namespaces, Namespace{Name: "big", Anonymous: true, HistorySize: 100})
		cfg.Limits.MaxQueueBytes = 256 << 10 // replies of 64 KiB
	})
}

// TestLargeHistoryIsPaged: a history reply larger than the queue (100
// publications of 20 KB, 256 KiB queue) closed the client with 4002,
// which tells it to reconnect and ask again. It is cut to the reply
// budget instead, says so, and the client pages through with since.
func TestLargeHistoryIsPaged(t *testing.T) {
	ts := bigHistoryServer(t)
	bigHistory(t, ts, "big:h", 100, 20<<10)
	c, _ := connected(t, ts.url, "")
	var next uint64 = 1
	var since msg
	pages := 0
	for next <= 100 {
		fields := msg{"channel": "big:h"}
		if since != nil {
			fields["since"] = since
		}
		res := c.okOpen("history", fields)
		pages++
		pubs, _ := res["publications"].([]any)
		if len(pubs) == 0 {
			t.Fatalf("page %d: no publications at offset %d: %v", pages, next, res["truncated"])
		}
		b, _ := json.Marshal(pubs)
		if len(pubs) > 1 && len(b) > 64<<10 {
			t.Fatalf("page %d holds %d bytes, over the 64 KiB budget", pages, len(b))
		}
		for _, p := range pubs {
			if off := uint64(msg(p.(map[string]any)).num("offset")); off != next {
				t.Fatalf("page %d: offset %d, want %d", pages, off, next)
			}
			next++
		}
		if truncated := res["truncated"] == true; truncated != (next <= 100) {
			t.Fatalf("page %d ends before %d: truncated %v", pages, next, res["truncated"])
		}
		since = msg{"offset": next - 1, "epoch": res.str("epoch")}
	}
	if pages < 30 {
		t.Fatalf("2 MB of history in %d pages of at most 64 KiB", pages)
	}
	if v := metricValue(t, ts.http.URL, disconnects, `reason="slow_consumer"`); v != 0 {
		t.Fatalf("slow_consumer disconnects %v", v)
	}
}

// TestLargeRecoveryIsCut: a subscribe that recovers more than the reply
// budget gets the oldest publications that fit, an offset that is the last
// of them, and a gap push for the rest, before any live publication.
func TestLargeRecoveryIsCut(t *testing.T) {
	ts := bigHistoryServer(t)
	c, _ := connected(t, ts.url, "")
	res := c.okOpen("subscribe", msg{"channel": "big:r"})
	epoch := res.str("epoch")
	c.okOpen("unsubscribe", msg{"channel": "big:r"})
	bigHistory(t, ts, "big:r", 100, 20<<10)
	if epoch == "" {
		epoch = c.okOpen("history", msg{"channel": "big:r", "limit": 0}).str("epoch")
	}
	res = c.okOpen("subscribe", msg{"channel": "big:r", "since": msg{"offset": 0, "epoch": epoch}})
	pubs, _ := res["publications"].([]any)
	if res["recovered"] != true || len(pubs) == 0 || len(pubs) >= 100 {
		t.Fatalf("recovered %v with %d publications, want true with part of the 100", res["recovered"], len(pubs))
	}
	k := uint64(len(pubs))
	if uint64(res.num("offset")) != k {
		t.Fatalf("offset %v, want %d, the last publication of the reply", res["offset"], k)
	}
	gap := c.next()
	if gap.str("push") != "gap" || uint64(gap.num("from")) != k+1 || gap.num("to") != 100 || gap.str("epoch") != epoch {
		t.Fatalf("push %v after the reply, want a gap from %d to 100", gap, k+1)
	}
	if _, err := ts.Publish(context.Background(), "big:r", json.RawMessage(`"live"`)); err != nil {
		t.Fatal(err)
	}
	if m := c.next(); m.str("push") != "pub" || m.num("offset") != 101 {
		t.Fatalf("push %v, want the live publication 101", m)
	}
	if v := metricValue(t, ts.http.URL, limitHits, `limit="reply_size"`); v == 0 {
		t.Fatalf("limit_hits{reply_size} = 0 after a cut reply")
	}
}

// TestRepliesToANonReader: a client that sends commands with large
// replies and reads none of them is read no further while its queue is
// over half full, rather than closed (4002) or let grow; once it reads,
// every reply comes.
func TestRepliesToANonReader(t *testing.T) {
	ts := bigHistoryServer(t)
	bigHistory(t, ts, "big:n", 100, 20<<10)
	r := dialRaw(t, ts.url)
	r.call(1, "connect", nil)
	const calls = 150 // 150 × 60 KB
	var b strings.Builder
	for i := range calls {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, `{"id":%d,"method":"history","channel":"big:n","limit":3}`, i+2)
	}
	before := heapInUse()
	r.write(b.String())
	time.Sleep(500 * time.Millisecond)
	held := metricValue(t, ts.http.URL, queuedBytesGauge, "")
	grown := int64(heapInUse()) - int64(before)
	t.Logf("not reading: %.0f KiB queued, heap grew %d KiB", held/1024, grown>>10)
	if held > 256<<10 {
		t.Errorf("%s = %.0f, over the 256 KiB bound", queuedBytesGauge, held)
	}
	if grown > 4<<20 {
		t.Errorf("heap grew %d MiB for a client that does not read its replies", grown>>20)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for id := 2; id < calls+2; id++ {
		m, err := r.readLine(ctx)
		if err != nil {
			t.Fatalf("reply %d: %v", id, err)
		}
		if int(m.num("id")) != id || len(m.obj("result")["publications"].([]any)) != 3 {
			t.Fatalf("line %.200v, want the reply to %d with 3 publications", m, id)
		}
	}
	if v := metricValue(t, ts.http.URL, disconnects, `reason="slow_consumer"`); v != 0 {
		t.Fatalf("slow_consumer disconnects %v", v)
	}
}

// TestRateLimitFlushesReplies: the commands of a message accepted before
// the one over the rate get their replies before the 4005 close; they
// were dropped.
func TestRateLimitFlushesReplies(t *testing.T) {
	const burst = 40
	ts := newServer(t, func(cfg *Config) {
		cfg.Limits.MessageRate = 0.5
		cfg.Limits.MessageBurst = burst
	})
	c := dialClient(t, ts.url, nil)
	var b strings.Builder
	b.WriteString(`{"id":1,"method":"connect"}`)
	for id := 2; id <= burst+10; id++ {
		fmt.Fprintf(&b, "\n"+`{"id":%d,"method":"ping"}`, id)
	}
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= burst; id++ {
		var m msg
		select {
		case m = <-c.lines:
		case <-c.done:
			// The replies and the close can arrive together: what was
			// read before the end is still in lines.
			select {
			case m = <-c.lines:
			default:
				t.Fatalf("closed (%v) after %d of the %d replies", c.err, id-1, burst)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no reply %d", id)
		}
		if int(m.num("id")) != id || m["error"] != nil {
			t.Fatalf("line %v, want the reply to %d", m, id)
		}
	}
	expectClose(t, c, CloseTooManyRequests, "")
}
