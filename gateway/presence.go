package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Join and leave events are not pushed as they come: pushed one by one,
// a storm of N clients joining one channel costs N² pushes. The node
// collects them per channel and flushes them every PresenceInterval, a
// join and a leave of one client within the interval cancelling out
// (subscribe/unsubscribe churn then costs nothing), and above the
// namespace's PresenceCountAbove members it pushes the channel's counts
// instead, at most once per interval.

// presenceBatch is a channel's join and leave events of the current
// interval, and what the node knows of its size.
type presenceBatch struct {
	mu      sync.Mutex
	pending map[string]pendingPresence // by client id: its last event
	order   []string                   // client ids in arrival order
	// stats is the channel's size as the broker counted it at statsAt,
	// moved by the events since; sent is the last count pushed.
	stats   broker.PresenceStats
	statsAt time.Time
	sent    broker.PresenceStats
	counted bool // sent is set
	// users is the channel's users as last read at usersAt, in namespaces
	// with per-user events (pushMemberEvents); nil until read.
	users   map[string]*broker.ClientInfo
	usersAt time.Time
}

type pendingPresence struct {
	join bool
	info *broker.ClientInfo
}

// presenceStatsAge is how long a channel's counted size is trusted,
// moved by its events, before the broker counts it again.
const presenceStatsAge = 2 * time.Second

// HandleJoin implements broker.Handler.
func (h brokerHandler) HandleJoin(channel string, info *broker.ClientInfo) {
	h.s.presenceEvent(channel, info, true)
}

// HandleLeave implements broker.Handler.
func (h brokerHandler) HandleLeave(channel string, info *broker.ClientInfo) {
	h.s.presenceEvent(channel, info, false)
}

func (s *Server) presenceEvent(channel string, info *broker.ClientInfo, join bool) {
	ch := s.hub.get(channel)
	if ch == nil || info == nil {
		return
	}
	b := &ch.presence
	b.mu.Lock()
	if join {
		b.stats.Clients++
	} else if b.stats.Clients > 0 {
		b.stats.Clients--
	}
	if prev, ok := b.pending[info.Client]; ok && prev.join != join {
		// A join and a leave within one interval: no change to push.
		delete(b.pending, info.Client)
	} else {
		if b.pending == nil {
			b.pending = make(map[string]pendingPresence)
		}
		if !ok {
			b.order = append(b.order, info.Client)
		}
		b.pending[info.Client] = pendingPresence{join: join, info: info}
	}
	b.mu.Unlock()
	s.presenceDirty.mark(ch)
}

// dirtySet is the channels with presence events not yet flushed.
type dirtySet struct {
	mu  sync.Mutex
	set map[*hubChannel]struct{}
}

func (d *dirtySet) mark(ch *hubChannel) {
	d.mu.Lock()
	if d.set == nil {
		d.set = make(map[*hubChannel]struct{})
	}
	d.set[ch] = struct{}{}
	d.mu.Unlock()
}

func (d *dirtySet) take() map[*hubChannel]struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.set
	d.set = nil
	return set
}

// presenceLoop flushes the presence events every PresenceInterval and
// refreshes this node's presence entries at the broker every third of
// PresenceTTL, so that the members of a node that died expire.
func (s *Server) presenceLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PresenceInterval)
	defer t.Stop()
	lastRefresh := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			for ch := range s.presenceDirty.take() {
				s.flushPresence(ch, now)
			}
			if now.Sub(lastRefresh) >= s.cfg.PresenceTTL/3 {
				lastRefresh = now
				s.refreshPresence()
			}
		}
	}
}

// flushPresence pushes a channel's events of the interval, or its counts.
func (s *Server) flushPresence(ch *hubChannel, now time.Time) {
	ns, err := s.namespace(ch.name)
	if err != nil {
		return
	}
	b := &ch.presence
	b.mu.Lock()
	events := make([]pendingPresence, 0, len(b.pending))
	for _, id := range b.order {
		if e, ok := b.pending[id]; ok {
			events = append(events, e)
		}
	}
	b.pending, b.order = nil, nil
	stale := now.Sub(b.statsAt) > presenceStatsAge
	b.mu.Unlock()

	countOnly := ns.PresenceCountAbove > 0
	if countOnly && stale {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.broker.PresenceStats(ctx, ch.name)
		cancel()
		b.mu.Lock()
		if err == nil {
			b.stats, b.statsAt = st, now
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	stats := b.stats
	countOnly = countOnly && stats.Clients > ns.PresenceCountAbove
	sendCount := countOnly && (!b.counted || b.sent != stats)
	if sendCount {
		b.sent, b.counted = stats, true
	}
	b.mu.Unlock()

	if countOnly {
		if sendCount {
			out := &outNotice{n: &notice{kind: noticePresenceCount, channel: ch.name, stats: stats}}
			s.metrics.presencePush.With("count").Inc()
			s.hub.each(ch.name, func(sess *session) { sess.deliverNotice(out) })
		}
		return
	}
	if ns.perUserEvents && len(events) > 0 {
		s.pushMemberEvents(ch)
	}
	for _, e := range events {
		kind, label := noticeLeave, "leave"
		if e.join {
			kind, label = noticeJoin, "join"
		}
		out := &outNotice{n: &notice{kind: kind, channel: ch.name, info: e.info}}
		s.metrics.presencePush.With(label).Inc()
		s.hub.each(ch.name, func(sess *session) {
			if sess.id != e.info.Client {
				sess.deliverNotice(out)
			}
		})
	}
}

// pushMemberEvents pushes, after join or leave events, that a user's first
// connection joined the channel's presence or its last left it, whichever
// node its connections are on: it compares the broker's member list now
// with the one it read last (or the one the first subscriber here got),
// so each change is told once however the events and the reads interleave.
// A subscriber whose own member list was read after this one has the
// change in it already, and is not told (session.deliverNotice). When the
// list cannot be read the comparison waits for the next events.
func (s *Server) pushMemberEvents(ch *hubChannel) {
	at := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	list, err := s.broker.Presence(ctx, ch.name)
	cancel()
	if err != nil {
		s.log.Warn("presence read for member events failed", "channel", ch.name, "err", err)
		return
	}
	now := usersOf(list)
	b := &ch.presence
	b.mu.Lock()
	before := b.users
	if at.Before(b.usersAt) {
		// The first subscriber here read a newer list meanwhile: it is
		// the one to compare the next with.
		b.mu.Unlock()
		return
	}
	if before == nil {
		before = now // nobody here was told a list: nothing to tell
	}
	b.users, b.usersAt = now, at
	b.mu.Unlock()
	var changes []*notice
	for user, info := range now {
		if _, ok := before[user]; !ok {
			changes = append(changes, &notice{kind: noticeMemberAdded, channel: ch.name, user: user, info: info, at: at})
		}
	}
	for user, info := range before {
		if _, ok := now[user]; !ok {
			changes = append(changes, &notice{kind: noticeMemberRemoved, channel: ch.name, user: user, info: info, at: at})
		}
	}
	for _, n := range changes {
		out := &outNotice{n: n}
		s.hub.each(ch.name, func(sess *session) { sess.deliverNotice(out) })
	}
}

// usersOf is the users of a member list, each with the info of one of its
// connections.
func usersOf(members map[string]*broker.ClientInfo) map[string]*broker.ClientInfo {
	users := make(map[string]*broker.ClientInfo, len(members))
	for _, m := range members {
		users[m.User] = m
	}
	return users
}

// noteMembers records the member list the first subscriber here got, read
// at at: the list the member events are told against from then on. Later
// subscribers' lists do not replace it, as the subscribers before them were
// not told what changed in between.
func (s *Server) noteMembers(channel string, members map[string]*broker.ClientInfo, at time.Time) {
	ch := s.hub.get(channel)
	if ch == nil {
		return
	}
	b := &ch.presence
	b.mu.Lock()
	if b.users == nil {
		b.users, b.usersAt = usersOf(members), at
	}
	b.mu.Unlock()
}

func encodePresenceCount(channel string, st broker.PresenceStats) []byte {
	b, _ := json.Marshal(struct {
		Push    string `json:"push"`
		Channel string `json:"channel"`
		Clients int    `json:"clients"`
		Users   int    `json:"users"`
	}{"presence_count", channel, st.Clients, st.Users})
	return b
}

// presenceEntry is one entry this node keeps at the broker.
type presenceEntry struct {
	channel string
	info    *broker.ClientInfo
}

// refreshPresence adds this node's presence entries again, with
// PresenceTTL, a few at a time.
func (s *Server) refreshPresence() {
	var entries []presenceEntry
	s.sessions.each(func(sess *session) {
		sess.mu.Lock()
		for channel, sub := range sess.subs {
			if info := sub.presenceInfo(sess); sub.ns.Presence && !sub.buffering && info != nil {
				entries = append(entries, presenceEntry{channel, info})
			}
		}
		if sess.userEntry != nil {
			entries = append(entries, *sess.userEntry)
		}
		sess.mu.Unlock()
	})
	entries = append(entries, s.pusherOccupancyEntries()...)
	if len(entries) == 0 || !s.brokerReady() {
		return
	}
	const workers = 16
	work := make(chan presenceEntry)
	var wg sync.WaitGroup
	for range min(workers, len(entries)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if err := s.broker.AddPresence(ctx, e.channel, e.info, s.cfg.PresenceTTL); err != nil {
					s.log.Debug("presence refresh failed", "channel", e.channel, "err", err)
				}
				cancel()
			}
		}()
	}
feed:
	for _, e := range entries {
		select {
		case work <- e:
		case <-s.stop:
			break feed
		}
	}
	close(work)
	wg.Wait()
}

// userChannel is the presence set of a user's connections, by which the
// per-user connection limit holds across every node of the broker.
func userChannel(user string) string { return "$user:" + user }

// admitUser counts sess among its user's connections at the broker and
// reports whether it is within Limits.MaxConnectionsPerUser, counting every
// node. A connection over it is removed again.
func (s *Server) admitUser(ctx context.Context, sess *session) (bool, error) {
	max := s.cfg.Limits.MaxConnectionsPerUser
	if max <= 0 || sess.user == "" {
		return true, nil
	}
	e := presenceEntry{channel: userChannel(sess.user), info: &broker.ClientInfo{Client: sess.id, User: sess.user}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.broker.AddPresence(ctx, e.channel, e.info, s.cfg.PresenceTTL); err != nil {
		return false, err
	}
	st, err := s.broker.PresenceStats(ctx, e.channel)
	if err != nil || st.Clients > max {
		if rerr := s.broker.RemovePresence(ctx, e.channel, sess.id); rerr != nil {
			s.log.Warn("removing a refused connection from its user's set failed", "err", rerr)
		}
		return false, err
	}
	sess.mu.Lock()
	sess.userEntry = &e
	sess.mu.Unlock()
	return true, nil
}

// releaseUser removes sess from its user's set at the broker.
func (s *Server) releaseUser(sess *session) {
	sess.mu.Lock()
	e := sess.userEntry
	sess.userEntry = nil
	sess.mu.Unlock()
	if e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.broker.RemovePresence(ctx, e.channel, sess.id); err != nil {
		s.log.Warn("removing a connection from its user's set failed", "err", err)
	}
}
