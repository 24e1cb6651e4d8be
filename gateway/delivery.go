package gateway

import (
	"context"
	"encoding/json"
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

// catchUpTimeout bounds one history read made to fill a hole.
const catchUpTimeout = 3 * time.Second

// HandlePublication implements broker.Handler.
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
	if pub.Position.Offset == 0 {
		// Without history there are no positions to keep in order.
		s.fanOut(ns, pub)
		return
	}
	ch.deliver.Lock()
	defer ch.deliver.Unlock()
	pos := pub.Position
	switch {
	case !ch.known:
		// No subscriber has read a position yet: it reads one after this.
	case ch.last.Epoch != "" && pos.Epoch == ch.last.Epoch:
		if pos.Offset <= ch.last.Offset {
			s.metrics.duplicates.Inc()
			return
		}
		if pos.Offset > ch.last.Offset+1 {
			s.catchUpLocked(ns, ch, pos)
		}
	default:
		// A new epoch, or the first stream of the channel.
		if ch.reset || ch.last.Epoch != "" || pos.Offset > 1 {
			s.catchUpLocked(ns, ch, pos)
		}
	}
	s.fanOut(ns, pub)
	ch.last, ch.known, ch.delivered, ch.reset = pos, true, true, false
}

// fanOut queues pub for the channel's subscribers here.
func (s *Server) fanOut(ns *Namespace, pub *broker.Publication) {
	out := &outPub{
		line:    appendPublication(nil, pub),
		channel: pub.Channel,
		pos:     pub.Position,
		policy:  ns.SlowConsumer,
	}
	s.hub.each(pub.Channel, func(sess *session) { sess.deliverPub(out) })
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
	if ch.delivered {
		return
	}
	if !ch.known || (pos.Epoch == ch.last.Epoch && pos.Offset < ch.last.Offset) {
		ch.last, ch.known = pos, true
	}
}

// catchUpLocked delivers what the stream holds after ch.last and before
// next (or up to the stream's end when next is zero), with a gap push for
// what it no longer holds; when the stream is of another epoch than
// ch.last, a reset push comes first. ch.deliver is held.
func (s *Server) catchUpLocked(ns *Namespace, ch *hubChannel, next broker.Position) {
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	from := ch.last
	var h broker.HistoryResult
	var err error
	if from.Epoch != "" && (next.Epoch == "" || next.Epoch == from.Epoch) {
		h, err = s.broker.History(ctx, ch.name, broker.HistoryOptions{Since: &from, Limit: -1})
	}
	if err == nil && (from.Epoch == "" || h.Position.Epoch != from.Epoch) {
		h, err = s.broker.History(ctx, ch.name, broker.HistoryOptions{Limit: -1})
	}
	epoch, end := h.Position.Epoch, h.Position.Offset
	if next.Offset != 0 {
		epoch, end = next.Epoch, next.Offset-1
	}
	if err != nil || h.Position.Epoch != epoch {
		// Unreadable now, or the stream moved on again: what is missing
		// is not known to be recoverable.
		if err != nil {
			s.log.Warn("history read to fill a hole failed", "channel", ch.name, "err", err)
		}
		h.Publications = nil
	}
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
		for _, p := range h.Publications {
			if p.Position.Offset <= end {
				held = p.Position.Offset
				break
			}
		}
		s.pushGap(ch, encodeReset(ch.name, epoch, held-1))
		first = held
		ch.reset = false
	}
	for _, p := range h.Publications {
		off := p.Position.Offset
		if off < first {
			continue
		}
		if off > end {
			break
		}
		if off > first {
			s.pushGap(ch, encodeGap(ch.name, epoch, first, off-1))
		}
		s.fanOut(ns, p)
		s.metrics.recovered.Inc()
		first = off + 1
	}
	if first <= end {
		s.pushGap(ch, encodeGap(ch.name, epoch, first, end))
	}
	ch.last, ch.known = broker.Position{Offset: end, Epoch: epoch}, true
	if end > 0 || from.Epoch != "" {
		ch.delivered = true
	}
}

// pushGap queues a gap or reset push for the channel's subscribers here.
func (s *Server) pushGap(ch *hubChannel, line []byte) {
	s.metrics.gaps.Inc()
	s.hub.each(ch.name, func(sess *session) { sess.deliverLine(ch.name, line) })
}

// encodeReset is the gap push that says a stream started again under a
// new epoch: what followed the client's position in the old one may be
// lost, and offsets 1 to to of the new one are (to is 0 when nothing of it
// is missing).
func encodeReset(channel, epoch string, to uint64) []byte {
	b, _ := json.Marshal(struct {
		Push    string `json:"push"`
		Channel string `json:"channel"`
		Epoch   string `json:"epoch"`
		From    uint64 `json:"from"`
		To      uint64 `json:"to"`
		Reset   bool   `json:"reset"`
	}{"gap", channel, epoch, 1, to, true})
	return b
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
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.catchUpAll()
	}()
}

// catchUpAll catches up every channel with subscribers here, after the
// link to the broker came back.
func (s *Server) catchUpAll() {
	s.catchingUp.Lock()
	defer s.catchingUp.Unlock()
	for _, ch := range s.hub.list() {
		select {
		case <-s.stop:
			return
		default:
		}
		ns, err := s.namespace(ch.name)
		if err != nil || ns.HistorySize == 0 {
			continue
		}
		ch.deliver.Lock()
		if ch.known {
			s.catchUpLocked(ns, ch, broker.Position{})
		}
		ch.deliver.Unlock()
	}
}

// brokerReady reports whether the broker is reachable, as far as it said.
func (s *Server) brokerReady() bool { return !s.brokerDown.Load() }
