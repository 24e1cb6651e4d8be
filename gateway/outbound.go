package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// outPub is a publication encoded once and shared by all its subscribers.
type outPub struct {
	line    []byte
	channel string
	pos     broker.Position
	policy  SlowConsumerPolicy

	once     sync.Once
	prepared *websocket.PreparedMessage
}

// message returns the publication as a message prepared for many
// connections: a subscriber whose queue holds only it writes the frame
// encoded for all.
func (p *outPub) message() *websocket.PreparedMessage {
	p.once.Do(func() {
		p.prepared, _ = websocket.NewPreparedMessage(websocket.MessageText, p.line)
	})
	return p.prepared
}

// outItem is one line queued for a connection.
type outItem struct {
	line []byte  // nil once dropped
	pub  *outPub // for publications
}

// outbound is a session's queue, guarded by session.mu. Bytes count only
// what waits; the batch being written is the writer's.
type outbound struct {
	items   []outItem
	bytes   int
	latest  map[string]int // channel → index in items, for SlowLatest
	gaps    map[string]*gapRange
	writing bool // a writer goroutine runs
}

type gapRange struct {
	epoch    string
	from, to uint64
}

// maxBatch caps the bytes joined into one WebSocket message.
const maxBatch = 64 << 10

// enqueueLocked queues a line, applying the slow-consumer policies when the
// queue is full, and starts a writer when none runs. sess.mu is held.
func (sess *session) enqueueLocked(line []byte, pub *outPub) {
	if sess.closing {
		return
	}
	q := &sess.out
	srv := sess.srv
	if pub != nil && pub.policy == SlowLatest {
		if i, ok := q.latest[pub.channel]; ok {
			// The client has not received the previous value yet: it gets
			// only the latest.
			q.bytes += len(line) - len(q.items[i].line)
			q.items[i] = outItem{line: line, pub: pub}
			srv.metrics.drops.With(string(SlowLatest)).Inc()
			return
		}
	}
	if max := srv.cfg.Limits.MaxQueueBytes; max > 0 && q.bytes+len(line) > max && !sess.makeRoomLocked(len(line)) {
		sess.mu.Unlock()
		sess.close(CloseSlowConsumer, "slow consumer", reasonSlowConsumer)
		sess.mu.Lock()
		return
	}
	q.items = append(q.items, outItem{line: line, pub: pub})
	q.bytes += len(line)
	srv.metrics.queued.Inc()
	if pub != nil && pub.policy == SlowLatest {
		if q.latest == nil {
			q.latest = make(map[string]int)
		}
		q.latest[pub.channel] = len(q.items) - 1
	}
	if !q.writing {
		q.writing = true
		srv.wg.Add(1)
		sess.writer.Add(1)
		go sess.writeLoop()
	}
}

// makeRoomLocked drops the oldest queued publications of channels whose
// policy allows it until need more bytes fit, recording gaps; it reports
// whether they fit.
func (sess *session) makeRoomLocked(need int) bool {
	q := &sess.out
	limit := sess.srv.cfg.Limits.MaxQueueBytes
	for i := range q.items {
		if q.bytes+need <= limit {
			break
		}
		it := &q.items[i]
		if it.line == nil || it.pub == nil || it.pub.policy == SlowDisconnect {
			continue
		}
		p := it.pub
		q.bytes -= len(it.line)
		it.line = nil
		sess.srv.metrics.drops.With(string(p.policy)).Inc()
		sess.srv.metrics.queued.Dec()
		if idx, ok := q.latest[p.channel]; ok && idx == i {
			delete(q.latest, p.channel)
		}
		if p.pos.Epoch == "" {
			continue
		}
		if q.gaps == nil {
			q.gaps = make(map[string]*gapRange)
		}
		g := q.gaps[p.channel]
		switch {
		case g == nil || g.epoch != p.pos.Epoch:
			q.gaps[p.channel] = &gapRange{epoch: p.pos.Epoch, from: p.pos.Offset, to: p.pos.Offset}
		default:
			g.from = min(g.from, p.pos.Offset)
			g.to = max(g.to, p.pos.Offset)
		}
	}
	return q.bytes+need <= limit
}

// writeLoop writes what is queued, in batches, until the queue is empty.
func (sess *session) writeLoop() {
	srv := sess.srv
	defer srv.wg.Done()
	defer sess.writer.Done()
	var spare []outItem
	buf := make([]byte, 0, 512)
	for {
		sess.mu.Lock()
		q := &sess.out
		batch, gaps := q.items, q.gaps
		if (len(batch) == 0 && len(gaps) == 0) || sess.closing {
			q.writing = false
			srv.metrics.queued.Add(-float64(queuedLines(batch)))
			q.items, q.gaps, q.bytes = nil, nil, 0
			clear(q.latest)
			sess.mu.Unlock()
			return
		}
		q.items, q.gaps, q.bytes = spare[:0], nil, 0
		clear(q.latest)
		sess.mu.Unlock()
		srv.metrics.queued.Add(-float64(queuedLines(batch)))

		var err error
		if len(batch) == 1 && batch[0].pub != nil && len(gaps) == 0 {
			err = sess.write(nil, batch[0].pub.message(), len(batch[0].line), 1)
		} else {
			buf, err = sess.writeBatch(buf[:0], batch, gaps)
		}
		clear(batch)
		spare = batch
		if cap(buf) > maxBatch*2 {
			buf = make([]byte, 0, 512)
		}
		if err != nil {
			sess.mu.Lock()
			sess.closing = true
			q.writing = false
			srv.metrics.queued.Add(-float64(queuedLines(q.items)))
			q.items, q.gaps, q.bytes = nil, nil, 0
			sess.mu.Unlock()
			return
		}
	}
}

// queuedLines counts the items not dropped, which the queue gauge counts.
func queuedLines(items []outItem) int {
	n := 0
	for i := range items {
		if items[i].line != nil {
			n++
		}
	}
	return n
}

// writeBatch joins the batch's lines with newlines into messages of up to
// maxBatch bytes, putting each gap notice before the next publication of
// its channel.
func (sess *session) writeBatch(buf []byte, batch []outItem, gaps map[string]*gapRange) ([]byte, error) {
	lines := 0
	add := func(line []byte) error {
		if len(buf) > 0 && len(buf)+1+len(line) > maxBatch {
			if err := sess.write(buf, nil, len(buf), lines); err != nil {
				return err
			}
			buf, lines = buf[:0], 0
		}
		if len(buf) > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, line...)
		lines++
		return nil
	}
	for _, it := range batch {
		if it.line == nil {
			continue
		}
		if it.pub != nil {
			if g := gaps[it.pub.channel]; g != nil {
				if err := add(encodeGap(it.pub.channel, g.epoch, g.from, g.to)); err != nil {
					return buf, err
				}
				delete(gaps, it.pub.channel)
			}
		}
		if err := add(it.line); err != nil {
			return buf, err
		}
	}
	for channel, g := range gaps {
		if err := add(encodeGap(channel, g.epoch, g.from, g.to)); err != nil {
			return buf, err
		}
	}
	if len(buf) == 0 {
		return buf, nil
	}
	return buf, sess.write(buf, nil, len(buf), lines)
}

// write writes one message, msg or else pm, of size bytes holding lines
// protocol lines, under the janitor's watch for a stuck write.
func (sess *session) write(msg []byte, pm *websocket.PreparedMessage, size, lines int) error {
	sess.writeStarted.Store(time.Now().UnixNano())
	var err error
	if pm != nil {
		err = sess.conn.WritePrepared(context.Background(), pm)
	} else {
		err = sess.conn.Write(context.Background(), websocket.MessageText, msg)
	}
	sess.writeStarted.Store(0)
	if err == nil {
		sess.srv.metrics.messagesOut.Add(uint64(lines))
		sess.srv.metrics.bytesOut.Add(uint64(size))
	}
	return err
}
