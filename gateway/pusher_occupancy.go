package gateway

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Which channels of an app are occupied, on any node: each node keeps, in
// a presence set of the app at the broker, one entry for each channel of
// the app it has subscribers of (added with the first, removed with the
// last, refreshed with the node's other presence entries, so that a dead
// node's expire with PresenceTTL). GET /apps/{id}/channels lists the set's
// channels. How many subscribe to one channel is its own presence set:
// every Pusher channel keeps one (namespaces), read with PresenceStats.

// pusherOccupancy is this node's entries in the apps' channel sets.
type pusherOccupancy struct {
	mu      sync.Mutex
	entries map[string]presenceEntry // by the gateway's channel name
	node    *presenceEntry           // in pusherNodesSet, with webhooks
	// conns are the entries of this node's connections in their apps'
	// sets of connections, for apps with MaxConnections.
	conns map[string]presenceEntry // by socket id
}

// pusherChannelsSet names the presence set of the occupied channels of
// the app with id; it is no hub channel (no ":").
func pusherChannelsSet(id string) string { return "$pusher." + id + ".channels" }

// pusherAppOf returns the app of a gateway channel of a Pusher app, and
// the app's name of the channel; nil for other channels.
func (s *Server) pusherAppOf(channel string) (*pusherApp, string) {
	ns, name, ok := strings.Cut(channel, ":")
	if !ok {
		return nil, ""
	}
	rest, ok := strings.CutPrefix(ns, "$pusher.")
	if !ok {
		return nil, ""
	}
	id, _, _ := strings.Cut(rest, ".")
	return s.pusherByID[id], name
}

// pusherOccupied records that this node has a first subscriber of a
// channel (the hub's subscribing lock for the channel is held).
func (s *Server) pusherOccupied(ctx context.Context, channel string) {
	app, name := s.pusherAppOf(channel)
	if app == nil {
		return
	}
	e := presenceEntry{channel: pusherChannelsSet(app.ID), info: &broker.ClientInfo{Client: s.node + " " + name, User: name}}
	s.pusherOccupancy.mu.Lock()
	if s.pusherOccupancy.entries == nil {
		s.pusherOccupancy.entries = make(map[string]presenceEntry)
	}
	s.pusherOccupancy.entries[channel] = e
	s.pusherOccupancy.mu.Unlock()
	if err := s.broker.AddPresence(ctx, e.channel, e.info, s.cfg.PresenceTTL); err != nil {
		s.log.Warn("recording an occupied Pusher channel failed", "channel", channel, "err", err)
	}
}

// pusherVacated records that this node's last subscriber of a channel
// left (the hub's subscribing lock for the channel is held).
func (s *Server) pusherVacated(ctx context.Context, channel string) {
	app, name := s.pusherAppOf(channel)
	if app == nil {
		return
	}
	s.pusherOccupancy.mu.Lock()
	delete(s.pusherOccupancy.entries, channel)
	s.pusherOccupancy.mu.Unlock()
	if err := s.broker.RemovePresence(ctx, pusherChannelsSet(app.ID), s.node+" "+name); err != nil {
		s.log.Warn("recording a vacated Pusher channel failed", "channel", channel, "err", err)
	}
}

// pusherOccupancyEntries are this node's entries, for refreshPresence.
func (s *Server) pusherOccupancyEntries() []presenceEntry {
	s.pusherOccupancy.mu.Lock()
	defer s.pusherOccupancy.mu.Unlock()
	out := make([]presenceEntry, 0, len(s.pusherOccupancy.entries)+1)
	for _, e := range s.pusherOccupancy.entries {
		out = append(out, e)
	}
	if e := s.pusherOccupancy.node; e != nil {
		out = append(out, *e)
	}
	for _, e := range s.pusherOccupancy.conns {
		out = append(out, e)
	}
	return out
}

// pusherOccupiedChannels lists the app's channels that have subscribers on
// any node, sorted, with the given prefix.
func (s *Server) pusherOccupiedChannels(ctx context.Context, app *pusherApp, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	entries, err := s.broker.Presence(ctx, pusherChannelsSet(app.ID))
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var names []string
	for _, e := range entries {
		if !seen[e.User] && strings.HasPrefix(e.User, prefix) {
			seen[e.User] = true
			names = append(names, e.User)
		}
	}
	sort.Strings(names)
	return names, nil
}

// pusherChannelStats counts a channel's subscriptions and, on a presence
// channel, its distinct users, across nodes.
func (s *Server) pusherChannelStats(ctx context.Context, app *pusherApp, name string) (broker.PresenceStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.broker.PresenceStats(ctx, app.pusherChannel(name))
}

// admitPusherConn counts a connection of an app with MaxConnections in the
// app's set of connections at the broker, and reports whether it is within
// the cap, counting every node; one over it is removed again.
func (s *Server) admitPusherConn(app *pusherApp, socketID string) (bool, error) {
	if app.MaxConnections <= 0 {
		return true, nil
	}
	e := presenceEntry{channel: "$pusher." + app.ID + ".connections", info: &broker.ClientInfo{Client: socketID}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.broker.AddPresence(ctx, e.channel, e.info, s.cfg.PresenceTTL); err != nil {
		return false, err
	}
	st, err := s.broker.PresenceStats(ctx, e.channel)
	if err != nil || st.Clients > app.MaxConnections {
		if rerr := s.broker.RemovePresence(ctx, e.channel, socketID); rerr != nil {
			s.log.Warn("removing a refused Pusher connection from its app's set failed", "err", rerr)
		}
		return false, err
	}
	s.pusherOccupancy.mu.Lock()
	if s.pusherOccupancy.conns == nil {
		s.pusherOccupancy.conns = make(map[string]presenceEntry)
	}
	s.pusherOccupancy.conns[socketID] = e
	s.pusherOccupancy.mu.Unlock()
	return true, nil
}

// releasePusherConn removes an ended session from its app's set of
// connections, if it is in one.
func (s *Server) releasePusherConn(sess *session) {
	s.pusherOccupancy.mu.Lock()
	e, ok := s.pusherOccupancy.conns[sess.id]
	delete(s.pusherOccupancy.conns, sess.id)
	s.pusherOccupancy.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.broker.RemovePresence(ctx, e.channel, sess.id); err != nil {
		s.log.Warn("removing a Pusher connection from its app's set failed", "err", err)
	}
}
