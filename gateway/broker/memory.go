package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultStreamTTL is how long a stream's position outlives its last
// publication when PublishOptions.StreamTTL is 0.
const DefaultStreamTTL = 24 * time.Hour

// MemoryOptions configures NewMemory. A nil *MemoryOptions means the zero
// value.
type MemoryOptions struct {
	// SweepInterval is how often expired streams and presence entries are
	// removed. Default: 10 seconds.
	SweepInterval time.Duration
	// Now returns the current time. Default: time.Now. Tests set it.
	Now func() time.Time
}

// Memory is a Broker for a single node: publications go from the publisher
// straight to this node's Handler, history and presence live in memory. It
// is the gateway's default.
type Memory struct {
	now      func() time.Time
	interval time.Duration
	seed     maphash.Seed
	shards   [memoryShards]memoryShard

	running atomic.Bool // between Start and Close

	streamsMu  sync.Mutex
	streams    map[string]int // streams per namespace
	earlySweep time.Time      // the last sweep made for a publisher at the cap

	mu      sync.Mutex
	handler Handler
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

const memoryShards = 64

// memoryShard holds a share of the channels. Lock order: mu, then a
// stream's mu; subMu is taken alone, since Publish reads it while holding a
// stream's mu.
type memoryShard struct {
	m        *Memory
	mu       sync.Mutex
	streams  map[string]*stream
	presence map[string]map[string]presenceEntry

	subMu      sync.Mutex
	subscribed map[string]struct{}
}

type presenceEntry struct {
	info    *ClientInfo
	expires time.Time // zero: never
}

// stream is one channel's history. Its mutex also orders delivery: a
// publication is handed to the Handler before the next one gets its offset.
type stream struct {
	mu      sync.Mutex
	epoch   string
	offset  uint64
	items   []streamItem // oldest first; len <= size
	expires time.Time    // of the stream's position
}

type streamItem struct {
	pub     *Publication
	expires time.Time // zero: never
}

// NewMemory returns an in-memory broker.
func NewMemory(opts *MemoryOptions) *Memory {
	var o MemoryOptions
	if opts != nil {
		o = *opts
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Memory{now: o.Now, interval: o.SweepInterval, seed: maphash.MakeSeed(), streams: make(map[string]int)}
	for i := range m.shards {
		s := &m.shards[i]
		s.m = m
		s.streams = make(map[string]*stream)
		s.subscribed = make(map[string]struct{})
		s.presence = make(map[string]map[string]presenceEntry)
	}
	return m
}

// Start implements Broker. It starts the sweeper, which Close stops.
func (m *Memory) Start(ctx context.Context, h Handler) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.handler != nil {
		return errorString("broker: started twice")
	}
	m.handler = h
	m.stop = make(chan struct{})
	m.done = make(chan struct{})
	m.running.Store(true)
	go m.sweepLoop()
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func (m *Memory) shard(channel string) *memoryShard {
	return &m.shards[maphash.String(m.seed, channel)%memoryShards]
}

// isClosed reports whether the broker cannot deliver: not started yet, or
// closed. It is read on every publication, hence atomic.
func (m *Memory) isClosed() bool { return !m.running.Load() }

// Publish implements Broker.
func (m *Memory) Publish(ctx context.Context, channel string, data json.RawMessage, info *ClientInfo, opts PublishOptions) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	if m.isClosed() {
		return Position{}, ErrClosed
	}
	pub := &Publication{Channel: channel, Data: data, Info: info}
	sh := m.shard(channel)
	if opts.HistorySize <= 0 {
		// No stream: nothing orders two publishers, as without history
		// there are no positions to keep in order.
		if sh.isSubscribed(channel) {
			m.handler.HandlePublication(pub)
		}
		return Position{}, nil
	}
	now := m.now()
	st := sh.stream(channel, now, m.creator(channel, opts.MaxStreams))
	if st == nil && m.sweepEarly(now) {
		// At the cap, expired streams not swept yet may hold the places.
		st = sh.stream(channel, now, m.creator(channel, opts.MaxStreams))
	}
	if st == nil {
		return Position{}, ErrStreamLimit
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.offset++
	pub.Position = Position{Offset: st.offset, Epoch: st.epoch}
	item := streamItem{pub: pub}
	if opts.HistoryTTL > 0 {
		item.expires = now.Add(opts.HistoryTTL)
	}
	st.items = append(st.items, item)
	if n := len(st.items) - opts.HistorySize; n > 0 {
		clear(st.items[:n])
		st.items = st.items[n:]
	}
	streamTTL := opts.StreamTTL
	if streamTTL <= 0 {
		streamTTL = DefaultStreamTTL
	}
	st.expires = now.Add(max(streamTTL, opts.HistoryTTL))
	if sh.isSubscribed(channel) {
		m.handler.HandlePublication(pub)
	}
	return pub.Position, nil
}

func (sh *memoryShard) isSubscribed(channel string) bool {
	sh.subMu.Lock()
	_, ok := sh.subscribed[channel]
	sh.subMu.Unlock()
	return ok
}

// namespaceOf is the part of channel's name before the first colon.
func namespaceOf(channel string) string {
	ns, _, _ := strings.Cut(channel, ":")
	return ns
}

// creator returns what stream calls to count a new stream of channel's
// namespace, or refuse it past max (0: no cap).
func (m *Memory) creator(channel string, max int) func() bool {
	return func() bool {
		ns := namespaceOf(channel)
		m.streamsMu.Lock()
		defer m.streamsMu.Unlock()
		if max > 0 && m.streams[ns] >= max {
			return false
		}
		m.streams[ns]++
		return true
	}
}

// sweepEarly sweeps now for a publisher at a namespace's cap, at most once
// a second (a sweep visits every stream), and reports whether it did.
func (m *Memory) sweepEarly(now time.Time) bool {
	m.streamsMu.Lock()
	due := now.Sub(m.earlySweep) >= time.Second
	if due {
		m.earlySweep = now
	}
	m.streamsMu.Unlock()
	if due {
		m.sweep(now)
	}
	return due
}

// dropped uncounts a stream of channel's namespace.
func (m *Memory) dropped(channel string) {
	ns := namespaceOf(channel)
	m.streamsMu.Lock()
	if m.streams[ns]--; m.streams[ns] <= 0 {
		delete(m.streams, ns)
	}
	m.streamsMu.Unlock()
}

// stream returns the channel's stream, replacing an expired one with a new
// epoch; create, when not nil, counts a new stream and may refuse it; with
// create nil or refusing it returns nil instead of creating one.
func (sh *memoryShard) stream(channel string, now time.Time, create func() bool) *stream {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.streams[channel]
	if st != nil {
		st.mu.Lock()
		expired := now.After(st.expires)
		st.mu.Unlock()
		if !expired {
			return st
		}
		delete(sh.streams, channel)
		sh.m.dropped(channel)
	}
	if create == nil || !create() {
		return nil
	}
	st = &stream{epoch: newEpoch(), expires: now.Add(DefaultStreamTTL)}
	sh.streams[channel] = st
	return st
}

func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// PublishJoin implements Broker.
func (m *Memory) PublishJoin(ctx context.Context, channel string, info *ClientInfo) error {
	return m.presenceEvent(ctx, channel, info, true)
}

// PublishLeave implements Broker.
func (m *Memory) PublishLeave(ctx context.Context, channel string, info *ClientInfo) error {
	return m.presenceEvent(ctx, channel, info, false)
}

func (m *Memory) presenceEvent(ctx context.Context, channel string, info *ClientInfo, join bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.isClosed() {
		return ErrClosed
	}
	if !m.shard(channel).isSubscribed(channel) {
		return nil
	}
	if join {
		m.handler.HandleJoin(channel, info)
	} else {
		m.handler.HandleLeave(channel, info)
	}
	return nil
}

// Control implements Broker.
func (m *Memory) Control(ctx context.Context, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.isClosed() {
		return ErrClosed
	}
	m.handler.HandleControl(data)
	return nil
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(ctx context.Context, channel string) error {
	if m.isClosed() {
		return ErrClosed
	}
	sh := m.shard(channel)
	sh.subMu.Lock()
	sh.subscribed[channel] = struct{}{}
	sh.subMu.Unlock()
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(ctx context.Context, channel string) error {
	if m.isClosed() {
		return ErrClosed
	}
	sh := m.shard(channel)
	sh.subMu.Lock()
	delete(sh.subscribed, channel)
	sh.subMu.Unlock()
	return nil
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error) {
	if err := ctx.Err(); err != nil {
		return HistoryResult{}, err
	}
	if m.isClosed() {
		return HistoryResult{}, ErrClosed
	}
	now := m.now()
	// Reading creates nothing: clients may read any channel name, and a
	// stream kept for each would be memory an attacker chooses.
	st := m.shard(channel).stream(channel, now, nil)
	if st == nil {
		return HistoryResult{}, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	res := HistoryResult{Position: Position{Offset: st.offset, Epoch: st.epoch}}
	if opts.Limit == 0 {
		return res, nil
	}
	if opts.Since != nil && opts.Since.Epoch != st.epoch {
		return res, nil
	}
	live := st.items
	for len(live) > 0 && !live[0].expires.IsZero() && now.After(live[0].expires) {
		live = live[1:]
	}
	if opts.Since != nil {
		// Offsets in the stream are consecutive, so the first item after
		// Since is found by arithmetic.
		if len(live) > 0 {
			first := live[0].pub.Position.Offset
			if opts.Since.Offset >= first {
				skip := opts.Since.Offset - first + 1
				if skip >= uint64(len(live)) {
					live = nil
				} else {
					live = live[skip:]
				}
			}
		}
	}
	n := len(live)
	if opts.Limit > 0 && opts.Limit < n {
		n = opts.Limit
	}
	res.Publications = make([]*Publication, n)
	for i := range n {
		if opts.Reverse {
			res.Publications[i] = live[len(live)-1-i].pub
		} else {
			res.Publications[i] = live[i].pub
		}
	}
	return res, nil
}

// AddPresence implements Broker.
func (m *Memory) AddPresence(ctx context.Context, channel string, info *ClientInfo, ttl time.Duration) error {
	if m.isClosed() {
		return ErrClosed
	}
	e := presenceEntry{info: info}
	if ttl > 0 {
		e.expires = m.now().Add(ttl)
	}
	sh := m.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.presence[channel]
	if members == nil {
		members = make(map[string]presenceEntry)
		sh.presence[channel] = members
	}
	members[info.Client] = e
	return nil
}

// RemovePresence implements Broker.
func (m *Memory) RemovePresence(ctx context.Context, channel, client string) error {
	if m.isClosed() {
		return ErrClosed
	}
	sh := m.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if members := sh.presence[channel]; members != nil {
		delete(members, client)
		if len(members) == 0 {
			delete(sh.presence, channel)
		}
	}
	return nil
}

// Presence implements Broker.
func (m *Memory) Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	now := m.now()
	sh := m.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make(map[string]*ClientInfo, len(sh.presence[channel]))
	for id, e := range sh.presence[channel] {
		if e.expires.IsZero() || !now.After(e.expires) {
			out[id] = e.info
		}
	}
	return out, nil
}

// PresenceStats implements Broker.
func (m *Memory) PresenceStats(ctx context.Context, channel string) (PresenceStats, error) {
	if m.isClosed() {
		return PresenceStats{}, ErrClosed
	}
	now := m.now()
	sh := m.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	members := sh.presence[channel]
	users := make(map[string]struct{}, len(members))
	var st PresenceStats
	for _, e := range members {
		if e.expires.IsZero() || !now.After(e.expires) {
			st.Clients++
			users[e.info.User] = struct{}{}
		}
	}
	st.Users = len(users)
	return st, nil
}

func (m *Memory) sweepLoop() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep(m.now())
		}
	}
}

// sweep drops expired streams, history items and presence entries, so that
// channels used once do not hold memory forever.
func (m *Memory) sweep(now time.Time) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for name, st := range sh.streams {
			st.mu.Lock()
			if now.After(st.expires) {
				delete(sh.streams, name)
				m.dropped(name)
			} else {
				n := 0
				for n < len(st.items) && !st.items[n].expires.IsZero() && now.After(st.items[n].expires) {
					n++
				}
				if n > 0 {
					clear(st.items[:n])
					st.items = st.items[n:]
				}
			}
			st.mu.Unlock()
		}
		for name, members := range sh.presence {
			for id, e := range members {
				if !e.expires.IsZero() && now.After(e.expires) {
					delete(members, id)
				}
			}
			if len(members) == 0 {
				delete(sh.presence, name)
			}
		}
		sh.mu.Unlock()
	}
}

// Close implements Broker.
func (m *Memory) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.running.Store(false)
	stop, done := m.stop, m.done
	m.mu.Unlock()
	if stop == nil {
		return nil
	}
	close(stop)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
