package nats

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/duplexws/duplex/gateway/broker"
)

// Presence lives in the bucket P_presence, one key per member: T.C for
// the channel's token T and the client id's token C, its value the
// ClientInfo, the member's ttl, when it was written and the token of the
// node that keeps it alive. A channel's members are read with one batched
// direct get over T.*, which the server answers in isolation from writes.
//
// A node does not keep its members alive by writing each again every
// third of its ttl: for a channel of 10,000 members at a 3 s ttl that is
// 10,000 JetStream writes a second, more than the server and the nodes
// carry beside the traffic, and the members expire under the load. Each
// node writes one heartbeat instead, h.N, every third of its members'
// longest ttl, and a reader lists an entry while its node's heartbeat is
// fresh, or while the entry itself is younger than its ttl (its node has
// not beaten yet). A node that dies stops beating, and its members leave
// every list within their ttl. A member's own ttl is kept by its node: one
// that is not added again in time is removed by the node's keeper.
//
// An entry is written when it is new, when its info or ttl changed, after
// the link to the server was lost (the server may have come back without
// its data), and every third of its backstop: the server removes an entry
// after that (Nats-TTL), in case no node is left to remove it. Heartbeats
// carry the backstop too. The server removes expired entries only in
// whole seconds, so readers apply the ttls themselves.

// backstop is the server's lifetime of an entry whose ttl is ttl.
func backstop(ttl time.Duration) time.Duration { return max(10*ttl, 5*time.Minute) }

// heartbeatsMaxAge is how old a reader's view of the heartbeats may be.
const heartbeatsMaxAge = time.Second

// localMember is a member this node added.
type localMember struct {
	info    *broker.ClientInfo
	ttl     time.Duration
	expires time.Time // when it leaves unless added again
	written time.Time // when its entry was last written; zero: not yet
	gen     uint64    // localPresence.gen when written
}

// localPresence is the members this node keeps alive.
type localPresence struct {
	node    string // this node's token: random, new at every start
	mu      sync.Mutex
	members map[string]*localMember // by the entry's subject
	gen     uint64                  // counts the losses of the link: after one, every entry is written again
	kick    chan struct{}           // wakes the keeper; capacity 1
	beatNow atomic.Bool             // the keeper beats at once when it wakes
	writes  atomic.Uint64           // entries and heartbeats written, for tests
}

func newLocalPresence() localPresence {
	var id [12]byte
	rand.Read(id[:])
	return localPresence{
		node:    base64.RawURLEncoding.EncodeToString(id[:]),
		members: make(map[string]*localMember),
		kick:    make(chan struct{}, 1),
	}
}

func (l *localPresence) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// linkLost makes every entry be written again: the server may lose its
// data while the link is down.
func (l *localPresence) linkLost() {
	l.mu.Lock()
	l.gen++
	l.mu.Unlock()
}

// linkBack makes the keeper beat at once.
func (l *localPresence) linkBack() {
	l.beatNow.Store(true)
	l.wake()
}

// AddPresence implements broker.Broker. A ttl of 0 means
// Options.PresenceTTL.
func (b *Broker) AddPresence(ctx context.Context, channel string, info *broker.ClientInfo, ttl time.Duration) error {
	const op = "add a member to"
	if err := b.begin(ctx, op); err != nil {
		return err
	}
	if info == nil {
		return b.fail(op, channel, errors.New("nil ClientInfo"))
	}
	if ttl <= 0 {
		ttl = b.opts.PresenceTTL
	}
	key := b.names.presenceKey(token(channel), info.Client)
	now := time.Now()
	l := &b.local
	l.mu.Lock()
	m, existed := l.members[key]
	if !existed {
		m = &localMember{}
		l.members[key] = m
	}
	write := m.written.IsZero() || m.gen != l.gen || m.ttl != ttl || !sameInfo(m.info, info) ||
		now.Sub(m.written) >= backstop(ttl)/3
	m.info, m.ttl, m.expires = info, ttl, now.Add(ttl)
	gen := l.gen
	first := len(l.members) == 1 && !existed
	l.mu.Unlock()
	if first {
		l.wake() // to beat
	}
	if !write {
		return nil
	}
	err := b.writeMember(ctx, key, info, ttl, now)
	l.mu.Lock()
	if l.members[key] == m {
		switch {
		case err == nil && gen == l.gen:
			m.written, m.gen = now, gen
		case err != nil && !existed:
			delete(l.members, key)
		}
	}
	l.mu.Unlock()
	if err != nil {
		return b.fail(op, channel, err)
	}
	return nil
}

func sameInfo(a, b *broker.ClientInfo) bool {
	return a != nil && b != nil && a.Client == b.Client && a.User == b.User &&
		(a.Info == nil) == (b.Info == nil) && bytes.Equal(a.Info, b.Info)
}

// writeMember writes a member's entry, creating the bucket again if the
// server lost it.
func (b *Broker) writeMember(ctx context.Context, key string, info *broker.ClientInfo, ttl time.Duration, now time.Time) error {
	return b.writeEntry(ctx, &natsgo.Msg{
		Subject: key,
		Header:  natsgo.Header{headerTTL: []string{ttlSeconds(backstop(ttl))}},
		Data:    presence{ttl: ttl, added: now, info: info, node: b.local.node}.encode(),
	})
}

func (b *Broker) writeEntry(ctx context.Context, m *natsgo.Msg) error {
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		_, err := b.jsPublish(ctx, m)
		if err == nil {
			b.local.writes.Add(1)
			return nil
		}
		if !errors.Is(err, errNoStream) || attempt > 0 {
			return err
		}
		// The server lost the bucket (restarted without its data).
		if err := b.ensureBucket(ctx); err != nil {
			return err
		}
	}
}

// RemovePresence implements broker.Broker. It purges the member's key,
// which leaves no marker behind.
func (b *Broker) RemovePresence(ctx context.Context, channel, client string) error {
	const op = "remove a member from"
	if err := b.begin(ctx, op); err != nil {
		return err
	}
	key := b.names.presenceKey(token(channel), client)
	b.local.mu.Lock()
	delete(b.local.members, key)
	b.local.mu.Unlock()
	if err := b.purgeEntry(ctx, key); err != nil {
		return b.fail(op, channel, err)
	}
	return nil
}

func (b *Broker) purgeEntry(ctx context.Context, key string) error {
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	err := b.purge(ctx, b.names.kvStream, key, 0, 0)
	if err != nil && !errors.Is(err, errNoStream) && !isAPIError(err, errCodeStreamNotFound) {
		return err
	}
	return nil
}

// keepPresence is the keeper: it writes this node's heartbeat every third
// of its members' longest ttl while it has members, and removes the
// members not added again within their ttl.
func (b *Broker) keepPresence() {
	l := &b.local
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var beatDue time.Time // zero: at once
	for {
		select {
		case <-b.stop:
			return
		case <-l.kick:
		case <-timer.C:
		}
		if l.beatNow.Swap(false) {
			beatDue = time.Time{}
		}
		now := time.Now()
		expired, longest, next := l.sweep(now)
		for _, key := range expired {
			b.expireMember(key)
		}
		wait := time.Hour
		if longest > 0 {
			if !now.Before(beatDue) {
				if err := b.beat(longest); err != nil {
					beatDue = now.Add(min(time.Second, longest/3))
					b.opts.Logger.Debug("nats broker: presence heartbeat failed", "error", err)
				} else {
					beatDue = now.Add(longest / 3)
				}
			}
			wait = time.Until(beatDue)
		}
		if !next.IsZero() {
			wait = min(wait, time.Until(next))
		}
		timer.Reset(max(wait, 5*time.Millisecond))
	}
}

// sweep takes out the members whose time is up and returns their keys,
// the longest ttl of those left, and when the next one's time is up.
func (l *localPresence) sweep(now time.Time) (expired []string, longest time.Duration, next time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, m := range l.members {
		if !now.Before(m.expires) {
			delete(l.members, key)
			expired = append(expired, key)
			continue
		}
		longest = max(longest, m.ttl)
		if next.IsZero() || m.expires.Before(next) {
			next = m.expires
		}
	}
	return expired, longest, next
}

// expireMember removes the entry of a member whose time is up. When the
// member was added again meanwhile, its entry is written again.
func (b *Broker) expireMember(key string) {
	if err := b.purgeEntry(b.closing, key); err != nil {
		b.opts.Logger.Debug("nats broker: removing an expired member failed", "error", err)
	}
	l := &b.local
	l.mu.Lock()
	m := l.members[key]
	var info *broker.ClientInfo
	var ttl time.Duration
	if m != nil {
		m.written = time.Time{}
		info, ttl = m.info, m.ttl
	}
	l.mu.Unlock()
	if m != nil {
		now := time.Now()
		if b.writeMember(b.closing, key, info, ttl, now) == nil {
			l.mu.Lock()
			if l.members[key] == m && m.written.IsZero() {
				m.written, m.gen = now, l.gen
			}
			l.mu.Unlock()
		}
	}
}

// beat writes this node's heartbeat: alive for ttl.
func (b *Broker) beat(ttl time.Duration) error {
	return b.writeEntry(b.closing, &natsgo.Msg{
		Subject: b.names.heartbeat(b.local.node),
		Header:  natsgo.Header{headerTTL: []string{ttlSeconds(backstop(ttl))}},
		Data:    presence{ttl: ttl, added: time.Now(), info: &broker.ClientInfo{Client: b.local.node}}.encode(),
	})
}

// heartbeats is a reader's view of the nodes' heartbeats.
type heartbeats struct {
	mu    sync.Mutex
	at    time.Time            // when read; zero: never
	alive map[string]time.Time // node token → until when its heartbeat is fresh
}

// nodesAlive returns when each node's heartbeat goes stale, read again
// when the view is older than heartbeatsMaxAge.
func (b *Broker) nodesAlive(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	h := &b.heartbeats
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && now.Sub(h.at) < heartbeatsMaxAge {
		return h.alive, nil
	}
	alive := make(map[string]time.Time)
	err := b.scan(ctx, b.names.kvDirectGet, b.names.heartbeatAll(), 0, scanBatch, func(data []byte) bool {
		if e, err := decodePresence(data); err == nil && len(data) > 0 {
			alive[e.info.Client] = e.added.Add(e.ttl)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	h.at, h.alive = now, alive
	return alive, nil
}

// Presence implements broker.Broker.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*broker.ClientInfo, error) {
	const op = "read the members of"
	if err := b.begin(ctx, op); err != nil {
		return nil, err
	}
	members, err := b.members(ctx, channel)
	if err != nil {
		return nil, b.fail(op, channel, err)
	}
	return members, nil
}

// PresenceStats implements broker.Broker.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	const op = "count the members of"
	if err := b.begin(ctx, op); err != nil {
		return broker.PresenceStats{}, err
	}
	members, err := b.members(ctx, channel)
	if err != nil {
		return broker.PresenceStats{}, b.fail(op, channel, err)
	}
	users := make(map[string]struct{}, len(members))
	for _, info := range members {
		users[info.User] = struct{}{}
	}
	return broker.PresenceStats{Clients: len(members), Users: len(users)}, nil
}

// members reads a channel's live entries.
func (b *Broker) members(ctx context.Context, channel string) (map[string]*broker.ClientInfo, error) {
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	now := time.Now()
	entries := make(map[string]presence)
	err := b.scan(ctx, b.names.kvDirectGet, b.names.presenceAll(token(channel)), 0, scanBatch, func(data []byte) bool {
		// Deletes, purges and the markers of expired keys are empty.
		if len(data) == 0 {
			return true
		}
		// A key read twice (put again between two batches) keeps its
		// later value.
		if e, err := decodePresence(data); err == nil {
			entries[e.info.Client] = e
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var alive map[string]time.Time
	out := make(map[string]*broker.ClientInfo, len(entries))
	chanTok := token(channel)
	for client, e := range entries {
		var live bool
		switch {
		case e.node == b.local.node:
			// This node's own: live while it keeps them.
			b.local.mu.Lock()
			_, live = b.local.members[b.names.presenceKey(chanTok, client)]
			b.local.mu.Unlock()
		case now.Before(e.added.Add(e.ttl)):
			live = true
		case e.node != "":
			if alive == nil {
				if alive, err = b.nodesAlive(ctx, now); err != nil {
					return nil, err
				}
			}
			live = now.Before(alive[e.node])
		}
		if live {
			out[client] = e.info
		}
	}
	return out, nil
}
