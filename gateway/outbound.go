package gateway

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// outItem is one line queued for a connection; a dropped one is a hole,
// the zero outItem, which holds nothing.
type outItem struct {
	line []byte
	pub  *outPub // for publications
}

// droppable reports whether a slow-consumer policy may drop the item.
func (it *outItem) droppable() bool {
	return it.line != nil && it.pub != nil && it.pub.policy != SlowDisconnect
}

// outbound is a session's queue, guarded by session.mu.
//
// Limits.MaxQueueBytes bounds everything it holds for the client: the
// lines waiting and the batch being written. The writer takes at most
// maxBatch bytes at a time, so what waits stays where the slow-consumer
// policy can drop it; a dropped line leaves a hole that holds nothing,
// and holes are squeezed out as the slice fills. Finding the oldest line
// to drop resumes where the last search stopped, so a publication costs
// the same however long the queue.
type outbound struct {
	items    []outItem  // items[head:] wait, oldest first
	box      *[]outItem // from itemsPool while items is not nil
	head     int
	scan     int // items[head:scan] hold nothing a policy may drop
	holes    int // holes in items[head:]
	queued   int // bytes of the lines waiting
	inflight int // bytes of the batch being written

	latest map[string]int // channel → index in items of its waiting publication, for SlowLatest
	gaps   map[string]*gapRange

	writing    bool          // a writer goroutine runs
	closeAfter *closeRequest // the writer closes with it once the queue is written

	room        *sync.Cond // on session.mu: the reading chain waits for room
	roomWaiters int
}

type gapRange struct {
	epoch    string
	from, to uint64
}

type closeRequest struct {
	code   websocket.StatusCode
	reason string
}

// held is what the queue holds, in bytes.
func (q *outbound) held() int { return q.queued + q.inflight }

// maxBatch caps the bytes joined into one WebSocket message, and taken
// from the queue at a time.
const maxBatch = 64 << 10

// replyBudget is how many bytes of publications a history or subscribe
// reply may carry (always at least one publication): a quarter of the
// queue, so that a reply the server chose to make never makes its client
// a slow consumer. 0: no cap, as the queue has none.
func (s *Server) replyBudget() int {
	if max := s.cfg.Limits.MaxQueueBytes; max > 0 {
		return max / 4
	}
	return 0
}

// fitPublications reports how many of pubs, oldest first, a reply has
// room for (at least one, when there are any), and the bytes they take as
// a JSON array. The reply is then encoded once, in a buffer of its size
// (encodeReplyWithPublications): the pages of a large history otherwise
// cost several times their size in garbage, whose collection delayed
// every other client.
func (s *Server) fitPublications(pubs []*broker.Publication) (n, size int) {
	budget := s.replyBudget()
	size = 2 // []
	for _, p := range pubs {
		add := publicationLen(p)
		if n > 0 {
			add++ // ,
		}
		if budget > 0 && n > 0 && size-2+add > budget {
			s.metrics.limitHits.With(limitReplySize).Inc()
			break
		}
		size += add
		n++
	}
	return n, size
}

// publicationLen is the length of what appendPublication appends for p.
func publicationLen(p *broker.Publication) int {
	n := len(`{"push":"pub","channel":"`) + len(p.Channel) + len(`"`)
	if p.Position.Epoch != "" {
		n += len(`,"offset":`) + decimalLen(p.Position.Offset) + len(`,"epoch":"`) + len(p.Position.Epoch) + len(`"`)
	}
	n += len(`,"data":`) + len(p.Data)
	if p.Info != nil {
		info, _ := json.Marshal(p.Info)
		n += len(`,"info":`) + len(info)
	}
	return n + len(`}`)
}

func decimalLen(v uint64) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// appendPublications appends pubs as a JSON array.
func appendPublications(b []byte, pubs []*broker.Publication) []byte {
	b = append(b, '[')
	for i, p := range pubs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPublication(b, p)
	}
	return append(b, ']')
}

// enqueueLocked queues a publication or push, applying the slow-consumer
// policies when the queue is full, and starts a writer when none runs.
// sess.mu is held.
func (sess *session) enqueueLocked(line []byte, pub *outPub) {
	if sess.closing {
		return
	}
	q := &sess.out
	srv := sess.srv
	limit := srv.cfg.Limits.MaxQueueBytes
	if pub != nil && pub.policy == SlowLatest {
		if i, ok := q.latest[pub.channel]; ok {
			// The client has not received the previous value yet: it gets
			// only the latest.
			srv.metrics.drops.With(string(SlowLatest)).Inc()
			old := len(q.items[i].line)
			if grow := len(line) - old; limit <= 0 || grow <= 0 || q.held()+grow <= limit {
				q.items[i] = outItem{line: line, pub: pub}
				sess.addQueuedLocked(len(line) - old)
				return
			}
			// Larger, and the queue is full: it goes to the back like
			// any other.
			delete(q.latest, pub.channel)
			sess.holeLocked(i)
		}
	}
	if limit > 0 && q.held()+len(line) > limit && !sess.makeRoomLocked(len(line)) {
		if pub != nil && pub.policy != SlowDisconnect {
			// Nothing older may go, so this one does.
			sess.recordDropLocked(pub)
			return
		}
		// The reason is the session's before the connection is aborted:
		// aborting a fallback stream fails its writer's write at once,
		// which must not make the end a network or client one.
		if !sess.startClosingLocked(reasonSlowConsumer) {
			return
		}
		sess.mu.Unlock()
		sess.abortOnClose()
		sess.goCloseTransport(CloseSlowConsumer, "slow consumer")
		sess.mu.Lock()
		return
	}
	sess.appendLocked(line, pub)
}

// enqueueReplyLocked queues the reply to a command, or a push that is part
// of one. No slow-consumer policy applies: the server chose to send it.
// What bounds replies is that the client's next command waits while the
// queue is over half full (awaitRoom). sess.mu is held.
func (sess *session) enqueueReplyLocked(line []byte) {
	if sess.closing {
		return
	}
	sess.appendLocked(line, nil)
}

func (sess *session) appendLocked(line []byte, pub *outPub) {
	q := &sess.out
	srv := sess.srv
	if pub != nil && !pub.queue && !q.writing && q.head == len(q.items) && len(q.gaps) == 0 && sess.tryWriteLocked(pub, len(line)) {
		return
	}
	if len(q.items) == cap(q.items) && q.head+q.holes > 0 && 2*(q.head+q.holes) >= len(q.items) {
		q.compact()
	}
	if q.items == nil {
		q.take()
	}
	q.items = append(q.items, outItem{line: line, pub: pub})
	sess.addQueuedLocked(len(line))
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
		srv.writerStarts.Add(1)
		go sess.writeLoop()
	}
}

// tryWriteLocked writes a publication at once, without waiting, when the
// transport can (tryWriter): the caller has checked that nothing waits in
// the queue and no writer runs, so nothing is overtaken. It reports
// whether the publication is dealt with: written, or its write failed,
// which ends the session as a failed write of the writer does. Otherwise
// the caller queues it and starts the writer, as for every publication
// before this path existed; a fan-out to many idle subscribers so starts
// a goroutine only for those whose socket is full (issue 14: a goroutine
// per delivery left its stack in the RSS long after a broadcast).
//
// Its counts are the writer's: one message and its bytes out, nothing
// queued. It needs no stuck-write watch (sess.writeStarted), as it never
// waits; a frame the socket took in part is finished by the connection,
// and the session's next write waits for it under the watch. sess.mu is
// held.
func (sess *session) tryWriteLocked(pub *outPub, size int) bool {
	tw, ok := sess.tr.(tryWriter)
	if !ok {
		return false
	}
	sent, err := tw.tryWriteShared(pub.lineFor(sess.proto))
	if err != nil {
		sess.closing = true
		sess.out.closeAfter = nil
		sess.discardLocked()
		return true
	}
	if sent {
		sess.srv.metrics.messagesOut.Inc()
		sess.srv.metrics.bytesOut.Add(float64(size))
	}
	return sent
}

// compact squeezes the holes and the written items out of the queue.
func (q *outbound) compact() {
	n, scan, from := 0, -1, max(q.scan, q.head)
	for i := q.head; i < len(q.items); i++ {
		if i == from {
			scan = n
		}
		if q.items[i].line != nil {
			q.items[n] = q.items[i]
			n++
		}
	}
	if scan < 0 {
		scan = n
	}
	clear(q.items[n:])
	q.items = q.items[:n]
	q.head, q.holes, q.scan = 0, 0, scan
	if q.latest == nil {
		return
	}
	clear(q.latest)
	for i := range q.items {
		if p := q.items[i].pub; p != nil && p.policy == SlowLatest {
			q.latest[p.channel] = i
		}
	}
}

func (sess *session) addQueuedLocked(n int) {
	sess.out.queued += n
	sess.srv.metrics.queuedBytes.Add(float64(n))
}

// holeLocked drops the waiting item i, which the caller has taken out of
// q.latest.
func (sess *session) holeLocked(i int) {
	q := &sess.out
	sess.addQueuedLocked(-len(q.items[i].line))
	q.items[i] = outItem{}
	q.holes++
	sess.srv.metrics.queued.Dec()
}

// makeRoomLocked drops the oldest waiting publications of channels whose
// policy allows it until need more bytes fit, recording gaps; it reports
// whether they fit.
func (sess *session) makeRoomLocked(need int) bool {
	q := &sess.out
	limit := sess.srv.cfg.Limits.MaxQueueBytes
	q.scan = max(q.scan, q.head)
	for q.held()+need > limit && q.scan < len(q.items) {
		i := q.scan
		q.scan++
		it := &q.items[i]
		if !it.droppable() {
			continue
		}
		p := it.pub
		if j, ok := q.latest[p.channel]; ok && j == i {
			delete(q.latest, p.channel)
		}
		sess.holeLocked(i)
		sess.recordDropLocked(p)
	}
	return q.held()+need <= limit
}

// recordDropLocked counts a dropped publication and adds it to its
// channel's gap, which the writer pushes before the channel's next
// publication.
func (sess *session) recordDropLocked(p *outPub) {
	q := &sess.out
	sess.srv.metrics.drops.With(string(p.policy)).Inc()
	if p.pos.Epoch == "" {
		return
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

// takeBatchLocked moves up to maxBatch bytes of waiting items (at least
// one) into batch, and the gaps with them; what it took counts as being
// written.
func (sess *session) takeBatchLocked(batch []outItem) ([]outItem, map[string]*gapRange, int) {
	q := &sess.out
	size := 0
	for q.head < len(q.items) {
		it := q.items[q.head]
		if size > 0 && size+len(it.line) > maxBatch {
			break
		}
		q.items[q.head] = outItem{}
		if it.line == nil {
			q.holes--
		} else if p := it.pub; p != nil && p.policy == SlowLatest {
			if j, ok := q.latest[p.channel]; ok && j == q.head {
				delete(q.latest, p.channel)
			}
		}
		q.head++
		if it.line != nil {
			batch = append(batch, it)
			size += len(it.line)
		}
	}
	if q.head == len(q.items) {
		q.items, q.head, q.scan = q.items[:0], 0, 0
	}
	sess.srv.metrics.queued.Add(-float64(len(batch)))
	q.queued -= size
	q.inflight += size
	gaps := q.gaps
	q.gaps = nil
	return batch, gaps, size
}

// discardLocked empties the queue of a session that is closing.
func (sess *session) discardLocked() {
	q := &sess.out
	sess.srv.metrics.queued.Add(-float64(len(q.items) - q.head - q.holes))
	sess.srv.metrics.queuedBytes.Add(-float64(q.held()))
	q.release()
	q.head, q.scan, q.holes = 0, 0, 0
	q.queued, q.inflight = 0, 0
	q.gaps = nil
	clear(q.latest)
	q.writing = false
	sess.signalRoomLocked()
}

// signalRoomLocked wakes the reading chain if it waits for room.
func (sess *session) signalRoomLocked() {
	if q := &sess.out; q.roomWaiters > 0 {
		q.room.Broadcast()
	}
}

// awaitRoom makes the client's next command wait while the queue is more
// than half full and being written: a client that sends commands without
// reading their replies is not read either (its commands wait in its
// socket), rather than being closed or growing the queue. A write stuck
// for the write timeout ends the wait, as the janitor closes the
// connection. It reports whether the session goes on.
func (sess *session) awaitRoom() bool {
	limit := sess.srv.cfg.Limits.MaxQueueBytes
	sess.mu.Lock()
	defer sess.mu.Unlock()
	q := &sess.out
	for limit > 0 && !sess.closing && q.writing && q.held() > limit/2 {
		if q.room == nil {
			q.room = sync.NewCond(&sess.mu)
		}
		q.roomWaiters++
		q.room.Wait()
		q.roomWaiters--
	}
	return !sess.closing
}

// closeFlushed closes the connection with code and reason, once, after
// writing what is queued: the replies to the commands accepted before the
// one that made the server close. Nothing is queued after it. A write
// stuck for the write timeout cuts the connection as always.
func (sess *session) closeFlushed(code websocket.StatusCode, reason, metricReason string) {
	sess.mu.Lock()
	if !sess.startClosingLocked(metricReason) {
		sess.mu.Unlock()
		return
	}
	if sess.out.writing {
		sess.out.closeAfter = &closeRequest{code, reason}
		sess.mu.Unlock()
		return
	}
	sess.mu.Unlock()
	sess.srv.wg.Add(1)
	go func() {
		defer sess.srv.wg.Done()
		sess.closeTransport(code, reason)
	}()
}

// writeLoop writes what is queued, in batches, until the queue is empty.
func (sess *session) writeLoop() {
	srv := sess.srv
	defer srv.wg.Done()
	defer sess.writer.Done()
	scratch := writerScratch.Get().(*writeScratch)
	batch, buf := scratch.batch, scratch.buf
	defer func() {
		clear(batch[:cap(batch)])
		scratch.batch, scratch.buf = batch[:0], buf[:0]
		writerScratch.Put(scratch)
	}()
	for {
		sess.mu.Lock()
		q := &sess.out
		if sess.closing && q.closeAfter == nil {
			sess.discardLocked()
			sess.mu.Unlock()
			return
		}
		var gaps map[string]*gapRange
		var size int
		batch, gaps, size = sess.takeBatchLocked(batch[:0])
		if len(batch) == 0 && len(gaps) == 0 {
			q.writing = false
			req := q.closeAfter
			q.closeAfter = nil
			q.release() // an idle session holds no queue
			q.latest = nil
			sess.signalRoomLocked()
			sess.mu.Unlock()
			if req != nil {
				sess.closeTransport(req.code, req.reason)
			}
			return
		}
		sess.mu.Unlock()

		var err error
		switch {
		case len(batch) == 1 && len(gaps) == 0 && batch[0].pub != nil:
			err = sess.write(nil, batch[0].pub.lineFor(sess.proto), len(batch[0].line), 1)
		case len(batch) == 1 && len(gaps) == 0:
			// A reply alone, as large replies are: written as it is,
			// rather than copied into buf, which would then be too large
			// to keep.
			err = sess.write(batch[0].line, nil, len(batch[0].line), 1)
		default:
			buf, err = sess.writeBatch(buf[:0], batch, gaps)
		}
		clear(batch)
		if cap(buf) > maxBatch*2 {
			buf = make([]byte, 0, 512)
		}

		sess.mu.Lock()
		q.inflight -= size
		srv.metrics.queuedBytes.Add(-float64(size))
		if err != nil {
			sess.closing = true
			q.closeAfter = nil
			sess.discardLocked()
			sess.mu.Unlock()
			return
		}
		sess.signalRoomLocked()
		sess.mu.Unlock()
	}
}

// A session's queue and its writer's batch and buffer exist only while it
// has something to send (an idle session holds none: memory per
// connection). A busy session takes them from these pools rather than
// growing them anew each time, which under a flood of short sessions was
// most of the gateway's allocation, and so of its GC pauses.
var (
	itemsPool     = sync.Pool{New: func() any { items := make([]outItem, 0, 16); return &items }}
	writerScratch = sync.Pool{New: func() any { return &writeScratch{buf: make([]byte, 0, 512)} }}
)

// maxPooledItems bounds the queues kept in itemsPool: a queue that grew
// past it for one burst is left to the collector.
const maxPooledItems = 1024

// writeScratch is what a session's writer reuses from one batch to the next.
type writeScratch struct {
	batch []outItem
	buf   []byte
}

// take gives the queue a slice from itemsPool.
func (q *outbound) take() {
	q.box = itemsPool.Get().(*[]outItem)
	q.items = (*q.box)[:0]
}

// release gives the queue's slice back to itemsPool, cleared, unless it
// grew too large to keep, and leaves the queue without one.
func (q *outbound) release() {
	if q.box != nil && cap(q.items) <= maxPooledItems {
		clear(q.items[:cap(q.items)])
		*q.box = q.items[:0]
		itemsPool.Put(q.box)
	}
	q.items, q.box = nil, nil
}

// writeBatch writes the batch's lines: joined with newlines into messages
// of up to maxBatch bytes when the protocol allows it, each alone
// otherwise. Each gap notice goes before the next publication of its
// channel, the others after the batch (the publications they precede wait
// behind it).
func (sess *session) writeBatch(buf []byte, batch []outItem, gaps map[string]*gapRange) ([]byte, error) {
	lines := 0
	join := sess.proto.joinsLines()
	add := func(line []byte) error {
		if line == nil {
			return nil // the protocol has no such push
		}
		if !join {
			return sess.write(line, nil, len(line), 1)
		}
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
	gapLine := func(channel string, g *gapRange) []byte {
		return sess.proto.encodeNotice(gapNotice(channel, g.epoch, g.from, g.to))
	}
	for _, it := range batch {
		if it.pub != nil {
			if g := gaps[it.pub.channel]; g != nil {
				if err := add(gapLine(it.pub.channel, g)); err != nil {
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
		if err := add(gapLine(channel, g)); err != nil {
			return buf, err
		}
	}
	if len(buf) == 0 {
		return buf, nil
	}
	return buf, sess.write(buf, nil, len(buf), lines)
}

// write writes one message, msg or else the shared line, of size bytes
// holding lines protocol lines, under the janitor's watch for a stuck
// write.
func (sess *session) write(msg []byte, shared *sharedLine, size, lines int) error {
	sess.writeStarted.Store(time.Now().UnixNano())
	var err error
	if shared != nil {
		err = sess.tr.writeShared(shared)
	} else {
		err = sess.tr.write(msg)
	}
	sess.writeStarted.Store(0)
	if err == nil {
		sess.srv.metrics.messagesOut.Add(float64(lines))
		sess.srv.metrics.bytesOut.Add(float64(size))
	}
	return err
}
