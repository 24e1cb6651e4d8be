package main

import (
	"context"
	"fmt"
	"time"
)

const stormChannel = "storm:room"

// storm is what a connect storm measured.
type storm struct {
	setup     setup
	clients   int
	connected connected // connected and subscribed, with the time of the last
	// presenceSeconds is the time from the storm's start until
	// presence_stats on every node counted every client.
	presenceSeconds float64
	presence        int   // the clients presence_stats counted last
	pushes          int64 // join, leave and presence_count pushes received
	// One publication to the channel afterwards: how many of the clients
	// got it, and how long the last one took.
	delivered   int64
	fanout      time.Duration
	lost        int64
	duplicated  int64
	disconnects int
}

func (s storm) failed() bool {
	return s.connected.Failed > 0 || s.presence != s.clients || s.lost > 0 || s.duplicated > 0 || s.disconnects > 0
}

// runStorm starts setup s and connects n clients to one presence channel
// at once (opts.stormConcurrency handshakes in flight per worker), spread
// over the nodes in turn.
func runStorm(ctx context.Context, bin, configPath string, s setup, n int, opts options) (storm, error) {
	res := storm{setup: s, clients: n}
	c, err := startCluster(ctx, bin, configPath, s)
	if err != nil {
		return res, err
	}
	defer c.close()
	start := time.Now()
	workers, conn, err := startWorkers(n, job{
		URLs: c.urls(), Channels: []string{stormChannel},
		Concurrency: opts.stormConcurrency, LocalAddrs: opts.localAddrs,
	})
	if err != nil {
		return res, err
	}
	defer stopWorkers(workers)
	res.connected = conn

	// Presence is counted by every node from the broker's view.
	for until := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		res.presence = n
		for _, node := range c.nodes {
			var st struct {
				Clients int `json:"clients"`
			}
			if err := node.API(ctx, "presence_stats", map[string]any{"channel": stormChannel}, &st); err != nil {
				return res, fmt.Errorf("presence_stats: %w", err)
			}
			res.presence = min(res.presence, st.Clients)
		}
		if res.presence == conn.Clients || time.Now().After(until) {
			break
		}
	}
	res.presenceSeconds = time.Since(start).Seconds()

	// One publication reaches every member.
	if _, err := c.nodes[0].Publish(ctx, stormChannel, stamp()); err != nil {
		return res, fmt.Errorf("publish to %d members: %w", n, err)
	}
	for until := time.Now().Add(drainTimeout); time.Now().Before(until); time.Sleep(20 * time.Millisecond) {
		a, _, err := ask(workers, command{Cmd: "count"})
		if err != nil {
			return res, err
		}
		if a.Received >= int64(conn.Clients) {
			break
		}
	}
	a, lat, err := ask(workers, command{Cmd: "collect", Expect: []expectation{{Channel: stormChannel, Count: 1}}})
	if err != nil {
		return res, err
	}
	res.delivered, res.pushes = a.Received, a.Pushes
	res.lost, res.duplicated, res.disconnects = a.Missing+a.Gapped, a.Duplicates+a.Extra, a.Disconnected
	res.fanout = percentile(lat, 1)
	return res, nil
}
