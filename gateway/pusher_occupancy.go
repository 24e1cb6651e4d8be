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
