package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
	"github.com/duplexws/duplex/websocket"
)

// presenceOf reads a channel's members through node i's API, as user ids
// by client id.
func (c *cluster) presenceOf(i int, channel string) map[string]string {
	c.t.Helper()
	var res struct {
		Clients map[string]testgateway.ClientInfo `json:"clients"`
	}
	c.api(i, "presence", map[string]any{"channel": channel}, &res)
	out := make(map[string]string, len(res.Clients))
	for id, info := range res.Clients {
		out[id] = info.User
	}
	return out
}

type presenceStats struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

// joined returns the client ids of the channel's join events minus its
// leave events, in the order they were pushed.
func joined(events []testgateway.Event) map[string]string {
	in := make(map[string]string)
	for _, e := range events {
		switch e.Push {
		case "join":
			in[e.Info.Client] = e.Info.User
		case "leave":
			delete(in, e.Info.Client)
		}
	}
	return in
}

// TestPresenceAcrossNodes: the member list and counts of a channel are the
// union of every node's members, through the API and the client command of
// any node, and join and leave events from every node reach a subscriber
// on another.
func TestPresenceAcrossNodes(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:presence"
		watcher := c.dial(0, "watcher")
		c.subscribe(watcher, channel, nil)
		members := map[string]string{watcher.ID: "watcher"}
		var clients []*testgateway.Client
		for node, user := range []string{"ann", "ben", "cat"} {
			// ann on node A, ben on B, cat on C; cat twice, on C and A.
			cl := c.dial(node, user)
			c.subscribe(cl, channel, nil)
			members[cl.ID] = user
			clients = append(clients, cl)
		}
		extra := c.dial(0, "cat")
		c.subscribe(extra, channel, nil)
		members[extra.ID] = "cat"

		others := maps.Clone(members)
		delete(others, watcher.ID)
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		if err := watcher.Wait(ctx, channel, func(ev []testgateway.Event) bool { return maps.Equal(joined(ev), others) }); err != nil {
			t.Fatalf("watcher on node A: joins %v, want %v: %v", joined(watcher.Events(channel)), others, err)
		}
		for node := range c.nodes {
			if got := c.presenceOf(node, channel); !maps.Equal(got, members) {
				t.Errorf("presence through node %d's API: %v, want %v", node, got, members)
			}
			var st presenceStats
			c.api(node, "presence_stats", map[string]any{"channel": channel}, &st)
			if st != (presenceStats{Clients: 5, Users: 4}) {
				t.Errorf("presence_stats through node %d's API: %+v, want 5 clients of 4 users", node, st)
			}
		}
		var fromClient struct {
			Clients map[string]testgateway.ClientInfo `json:"clients"`
		}
		if err := clients[2].Call(ctx, "presence", map[string]any{"channel": channel}, &fromClient); err != nil {
			t.Fatal(err)
		}
		if ids := slices.Sorted(maps.Keys(fromClient.Clients)); !slices.Equal(ids, slices.Sorted(maps.Keys(members))) {
			t.Errorf("presence command on node C: %v, want %v", ids, slices.Sorted(maps.Keys(members)))
		}

		// ben leaves by unsubscribing on node B, cat's connection on node C
		// closes: the watcher on node A hears both, and presence drops them.
		if err := clients[1].Call(ctx, "unsubscribe", map[string]any{"channel": channel}, nil); err != nil {
			t.Fatal(err)
		}
		clients[2].Close()
		delete(others, clients[1].ID)
		delete(others, clients[2].ID)
		delete(members, clients[1].ID)
		delete(members, clients[2].ID)
		if err := watcher.Wait(ctx, channel, func(ev []testgateway.Event) bool { return maps.Equal(joined(ev), others) }); err != nil {
			t.Fatalf("watcher after two leaves: %v, want %v: %v", joined(watcher.Events(channel)), others, err)
		}
		c.eventually(5*time.Second, "presence after the leaves", func() error {
			if got := c.presenceOf(1, channel); !maps.Equal(got, members) {
				return fmt.Errorf("presence %v, want %v", got, members)
			}
			return nil
		})
	})
}

// TestDisconnectAndUnsubscribeReachEveryNode: the API's unsubscribe,
// called on one node, ends the user's subscription on every node with an
// unsubscribe push (code 2000), and its disconnect, called on another,
// closes the user's connections on every node with 4502; another user's
// connections are untouched.
func TestDisconnectAndUnsubscribeReachEveryNode(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:control"
		var eve, bob []*testgateway.Client
		for node := range c.nodes {
			e, b := c.dial(node, "eve"), c.dial(node, "bob")
			c.subscribe(e, channel, nil)
			c.subscribe(b, channel, nil)
			eve, bob = append(eve, e), append(bob, b)
		}
		c.api(0, "unsubscribe", map[string]any{"user": "eve", "channel": channel, "reason": "moderated"}, nil)
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		for node, e := range eve {
			err := e.Wait(ctx, channel, func(ev []testgateway.Event) bool {
				return slices.ContainsFunc(ev, func(e testgateway.Event) bool { return e.Push == "unsubscribe" })
			})
			if err != nil {
				t.Fatalf("eve on node %d: no unsubscribe push: %v", node, err)
			}
			ev := e.Events(channel)
			if u := ev[len(ev)-1]; u.Code != 2000 || u.Reason != "moderated" {
				t.Errorf("eve on node %d: unsubscribe push %+v, want code 2000 and the reason", node, u)
			}
		}
		// A publication after it reaches bob everywhere and eve nowhere.
		pos, err := c.nodes[1].Publish(ctx, channel, map[string]any{"after": "unsubscribe"})
		if err != nil {
			t.Fatal(err)
		}
		for node, b := range bob {
			if err := b.Wait(ctx, channel, func(ev []testgateway.Event) bool { return lastPosition(ev) == pos }); err != nil {
				t.Errorf("bob on node %d: no publication %d: %v", node, pos.Offset, err)
			}
		}
		for node, e := range eve {
			for _, ev := range e.Events(channel) {
				if ev.Push == "pub" {
					t.Errorf("eve on node %d got publication %d after the unsubscribe", node, ev.Offset)
				}
			}
		}

		c.api(1, "disconnect", map[string]any{"user": "eve", "reason": "banned"}, nil)
		for node, e := range eve {
			select {
			case <-e.Done():
				var ce *websocket.CloseError
				if code := websocket.CloseStatus(e.Err()); code != 4502 {
					t.Errorf("eve on node %d: closed with %v (%v), want 4502", node, code, e.Err())
				} else if errors.As(e.Err(), &ce) && ce.Reason != "banned" {
					t.Errorf("eve on node %d: reason %q, want banned", node, ce.Reason)
				}
			case <-ctx.Done():
				t.Fatalf("eve on node %d still connected after disconnect", node)
			}
		}
		for node, b := range bob {
			if err := b.Call(ctx, "ping", nil, nil); err != nil {
				t.Errorf("bob on node %d: %v after eve's disconnect", node, err)
			}
		}
	})
}

// TestUserLimitAcrossNodes: max_connections_per_user counts a user's
// connections on every node: with the limit reached through three nodes,
// one more on any node is closed with 4006, and once one of them closes
// the user may connect again, on any node. Anonymous connections do not
// count.
func TestUserLimitAcrossNodes(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		var conns []*testgateway.Client
		for node := range userLimit {
			conns = append(conns, c.dial(node%len(c.nodes), "max"))
		}
		for node := range c.nodes {
			_, err := c.tryDial(node, "max")
			if code := websocket.CloseStatus(err); code != 4006 {
				t.Errorf("connection %d of user max, on node %d: %v, want close 4006", userLimit+1, node, err)
			}
		}
		for range 5 {
			c.dial(0, "")
		}
		conns[2].Close()
		c.eventually(5*time.Second, "connecting again after one of the user's connections closed", func() error {
			cl, err := c.tryDial(1, "max")
			if err == nil {
				conns[2] = cl
			}
			return err
		})
		if _, err := c.tryDial(2, "max"); websocket.CloseStatus(err) != 4006 {
			t.Errorf("over the limit again: %v, want close 4006", err)
		}
	})
}
