package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// The node keeps, per channel with subscribers here, the position its
// subscribers have had everything up to, and makes every publication
// reach them once and in offset order whatever the broker did: one that
// skips offsets (deliveries lost while the link to the broker was down)
// is preceded by the missing ones, read from history, and a duplicate is
// dropped. What history no longer holds becomes a gap push, so nothing is
// lost silently. When the link comes back the node catches up every
// channel the same way, without waiting for the next publication.
//
// A history read that fails says nothing of what history holds, so it
// never becomes a gap: the catch-up tries again with backoff for as long
// as the broker counts as reachable and the channel has subscribers here
// (the publications it misses may be the channel's last, so no later one
// would reveal the hole), and while the broker is known unreachable holds
// the hole until the link is back (a networked broker resumes deliveries,
// which reveal the hole, a moment before it has proved the link and
// reports it back) or the next publication tries again.

// catchUpTimeout bounds one history read made to fill a hole, from when
// it may start (see maxCatchUpReads).
const catchUpTimeout = 3 * time.Second

// A failed catch-up read is tried again after catchUpBackoff, doubling up
// to catchUpMaxBackoff.
const (
	catchUpBackoff    = 50 * time.Millisecond
	catchUpMaxBackoff = 2 * time.Second
)

// errStopping is a catch-up read's error once the server stops.
var errStopping = errors.New("gateway: stopping")

// maxCatchUpReads bounds the catch-up reads of a node in flight at once.
// When the link comes back every channel with subscribers catches up: at
// 15,000 channels a node, all their reads at once queued behind each other
// at the broker until each timed out, on a loaded machine again and again.
const maxCatchUpReads = 16

// HandlePublication implements broker.Handler. It never waits for the
// broker: a hole is filled by a catch-up of the channel in a goroutine of
// its own, and publications that arrive meanwhile are left to it.
func (h brokerHandler) HandlePublication(pub *broker.Publication) {
	s := h.s
	ns, err := s.namespace(pub.Channel)
	if err != nil {
		return
	}
	ch := s.hub.get(pub.Channel)
	if ch == nil {
		return
	}
	ch.arriving.Add(1)
	defer ch.arriving.Add(-1)
	if pub.Position.Offset == 0 {
		// Without history there are no positions to keep in order.
		s.fanOut(ns, pub, ch.arriving.Load() > 1)
		return
	}
	ch.deliver.Lock()
	defer ch.deliver.Unlock()
	pos := pub.Position
	if ch.catching || ch.held {
		// The catch-up reads it from history, in order.
		if newer(pos, ch.want) {
			ch.want = pos
		}
		if ch.held && !s.brokerDown.Load() {
			// The reads failed while the broker answered otherwise: try
			// again, now that it delivers.
			s.startCatchUpLocked(ns, ch, ch.want)
		}
		return
	}
	switch {
	case !ch.known:
		// No subscriber has read a position yet: it reads one after this.
	case ch.last.Epoch != "" && pos.Epoch == ch.last.Epoch:
		if pos.Offset <= ch.last.Offset {
			s.metrics.duplicates.Inc()
			return
		}
		if pos.Offset > ch.last.Offset+1 {
			s.startCatchUpLocked(ns, ch, pos)
			return
		}
	case ch.reset || ch.last.Epoch != "" || pos.Offset > 1:
		// A new epoch, or the first stream of the channel not from its
		// start.
		s.startCatchUpLocked(ns, ch, pos)
		return
	}
	s.fanOut(ns, pub, ch.arriving.Load() > 1)
	ch.last, ch.known, ch.delivered, ch.reset = pos, true, true, false
}

// newer reports whether a is past b in a stream: later in the same epoch,
// or of another epoch (the stream moved on).
func newer(a, b broker.Position) bool {
	if a.Epoch == b.Epoch {
		return a.Offset > b.Offset
	}
	return a.Epoch != ""
}

// fanOut delivers pub to the channel's subscribers here: written at once
// to those that can take it, queued for the others (session.tryWriteLocked).
// When more says that another publication of the channel follows at once,
// it is queued for all of them instead, so that each subscriber's writer
// joins the publications into one write, as it did before the inline
// path: under a stream of publications to a large channel, a write per
// publication and subscriber cost a third of the deliveries per CPU-second
// (make bench-gateway). A large channel is split over the processors.
func (s *Server) fanOut(ns *Namespace, pub *broker.Publication, more bool) {
	out := newOutPub(pub, ns.SlowConsumer)
	out.queue = more
	s.hub.eachSplit(pub.Channel, func(sess *session) { sess.deliverPub(out) })
}

// noteRead records the position a subscriber read when it subscribed:
// until the first publication is delivered here, the node holds its
// subscribers to the lowest such position, and recovers from there.
func (s *Server) noteRead(channel string, pos broker.Position) {
	ch := s.hub.get(channel)
	if ch == nil {
		return
	}
	ch.deliver.Lock()
	defer ch.deliver.Unlock()
	if ch.delivered || ch.catching || ch.held {
		return
	}
	if !ch.known || (pos.Epoch == ch.last.Epoch && pos.Offset < ch.last.Offset) {
		ch.last, ch.known = pos, true
	}
}

// maxIdleCatchUpReads bounds the history reads of one catch-up that bring
// nothing new: publications that keep arriving while it reads are read
// again for as long as each read makes progress, but what reads that find
// nothing more still miss is reported as a gap.
const maxIdleCatchUpReads = 3

// startCatchUpLocked starts catching the channel up to want (zero: to the
// stream's end, whatever it is). ch.deliver is held.
func (s *Server) startCatchUpLocked(ns *Namespace, ch *hubChannel, want broker.Position) {
	ch.catching, ch.held, ch.want = true, false, want
	s.wg.Add(1)
	go s.catchUp(ns, ch)
}

// catchUp delivers what the stream holds after ch.last, until ch.want is
// delivered or reported missing; a read that fails is tried again, or the
// hole held (holdLocked), never reported missing.
func (s *Server) catchUp(ns *Namespace, ch *hubChannel) {
	defer s.wg.Done()
	backoff := catchUpBackoff
	for idle := 0; ; {
		ch.deliver.Lock()
		from := ch.last
		ch.deliver.Unlock()
		h, err := s.readAfter(ch.name, from)
		ch.deliver.Lock()
		if err != nil {
			if s.holdLocked(ch, err, false) {
				ch.deliver.Unlock()
				return
			}
			ch.deliver.Unlock()
			s.log.Debug("history read to fill a hole failed; trying again", "channel", ch.name, "err", err, "after", backoff)
			if !s.sleep(backoff) {
				ch.deliver.Lock()
				s.holdLocked(ch, err, true)
				ch.deliver.Unlock()
				return
			}
			backoff = min(2*backoff, catchUpMaxBackoff)
			continue
		}
		backoff = catchUpBackoff
		s.deliverAfterLocked(ns, ch, h)
		if newer(ch.last, from) {
			idle = 0
		} else {
			idle++
		}
		if idle < maxIdleCatchUpReads && newer(ch.want, ch.last) {
			ch.deliver.Unlock()
			continue
		}
		if w := ch.want; newer(w, ch.last) {
			// Not to be had now: say what is missing, and go on from it.
			if w.Epoch == ch.last.Epoch {
				s.pushGap(ch, gapNotice(ch.name, w.Epoch, ch.last.Offset+1, w.Offset))
			} else {
				s.pushGap(ch, resetNotice(ch.name, w.Epoch, w.Offset))
			}
			ch.last, ch.known, ch.delivered = w, true, true
		}
		ch.catching, ch.want = false, broker.Position{}
		ch.deliver.Unlock()
		return
	}
}

// holdLocked decides, after a failed history read, whether the catch-up
// ends holding the hole: when the broker is known unreachable (its
// coming back catches the channel up), when the channel has no
// subscribers here any more, or when giveUp says so (the server stops). What is missing stays missing until a read succeeds; no gap is
// pushed for it. ch.deliver is held.
func (s *Server) holdLocked(ch *hubChannel, err error, giveUp bool) bool {
	down := s.brokerDown.Load()
	gone := s.hub.get(ch.name) != ch
	if !down && !gone && !giveUp {
		return false
	}
	ch.catching, ch.held = false, true
	if !gone {
		s.log.Warn("history read to fill a hole failed; holding it until the broker answers",
			"channel", ch.name, "missing_after", ch.last.Offset, "broker_down", down, "err", err)
	}
	return true
}

// sleep waits for d, and reports false if the server stops first.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// readAfter reads what the channel's stream holds after from, or all of it
// when from is of another epoch.
func (s *Server) readAfter(channel string, from broker.Position) (broker.HistoryResult, error) {
	select {
	case s.catchUpReads <- struct{}{}:
		defer func() { <-s.catchUpReads }()
	case <-s.stop:
		return broker.HistoryResult{}, errStopping
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	if from.Epoch != "" {
		h, err := s.broker.History(ctx, channel, broker.HistoryOptions{Since: &from, Limit: -1})
		if err != nil || h.Position.Epoch == from.Epoch {
			return h, err
		}
	}
	return s.broker.History(ctx, channel, broker.HistoryOptions{Limit: -1})
}

// deliverAfterLocked delivers what h holds after ch.last, with a gap push
// for what it no longer holds; when h is of another epoch than ch.last, a
// reset push comes first. ch.deliver is held.
func (s *Server) deliverAfterLocked(ns *Namespace, ch *hubChannel, h broker.HistoryResult) {
	from := ch.last
	epoch, end := h.Position.Epoch, h.Position.Offset
	if epoch == "" {
		// The stream is gone (the broker lost it): the next one starts
		// with a reset notice.
		if from.Epoch != "" {
			ch.reset = true
			ch.last = broker.Position{}
		}
		return
	}
	first := uint64(1)
	if epoch == from.Epoch {
		first = from.Offset + 1
	} else if ch.reset || from.Epoch != "" {
		// Everything of the old epoch after from may be lost: say so
		// before the first publication of the new one.
		held := end + 1
		if len(h.Publications) > 0 {
			held = h.Publications[0].Position.Offset
		}
		s.pushGap(ch, resetNotice(ch.name, epoch, held-1))
		first = held
		ch.reset = false
	}
	for i, p := range h.Publications {
		off := p.Position.Offset
		if off < first {
			continue
		}
		if off > end {
			break
		}
		if off > first {
			s.pushGap(ch, gapNotice(ch.name, epoch, first, off-1))
		}
		s.fanOut(ns, p, i < len(h.Publications)-1 || ch.arriving.Load() > 0)
		s.metrics.recovered.Inc()
		first = off + 1
	}
	if first <= end {
		s.pushGap(ch, gapNotice(ch.name, epoch, first, end))
	}
	ch.last, ch.known = broker.Position{Offset: end, Epoch: epoch}, true
	if end > 0 || from.Epoch != "" {
		ch.delivered = true
	}
}

// pushGap queues a gap or reset push for the channel's subscribers here.
func (s *Server) pushGap(ch *hubChannel, n *notice) {
	s.metrics.gaps.Inc()
	out := &outNotice{n: n}
	s.hub.each(ch.name, func(sess *session) { sess.deliverNotice(out) })
}

// HandleConnection implements broker.Handler.
func (h brokerHandler) HandleConnection(up bool) {
	s := h.s
	if !up {
		s.brokerDown.Store(true)
		s.log.Warn("broker unreachable: publishing and subscribing fail until it is back")
		return
	}
	s.brokerDown.Store(false)
	s.log.Info("broker reachable again: catching up the channels")
	s.catchUpAll()
}

// catchUpAll catches up every channel with history and subscribers here,
// after the link to the broker came back.
func (s *Server) catchUpAll() {
	for _, ch := range s.hub.list() {
		ns, err := s.namespace(ch.name)
		if err != nil || ns.HistorySize == 0 {
			continue
		}
		ch.deliver.Lock()
		if ch.known && !ch.catching {
			// A held hole is caught up to the newest position delivered
			// meanwhile; any other channel to the stream's end.
			want := broker.Position{}
			if ch.held {
				want = ch.want
			}
			s.startCatchUpLocked(ns, ch, want)
		}
		ch.deliver.Unlock()
	}
}

// brokerReady reports whether the broker is reachable, as far as it said.
func (s *Server) brokerReady() bool { return !s.brokerDown.Load() }
