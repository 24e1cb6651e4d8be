package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Pusher's webhooks. Client events are sent by the node that relayed
// them. The others (channel_occupied, channel_vacated, member_added,
// member_removed) describe the state of a channel across nodes, which no
// one node sees change: one node, the webhook leader (the lowest node id
// in the broker's set of nodes), reads the app's occupied channels and
// the users of its presence channels every pusherWebhookInterval and
// sends what changed since its last read, so that each event is sent
// once. A node that becomes the leader takes what it reads first as the
// state it knows: changes while the leadership moves are not sent.
//
// At shutdown, once the node's sessions are closed, the leader reads the
// channels once more, so that what its own clients left is sent, and the
// node sends what is queued, each POST tried once, for at most
// pusherWebhookFlush (less if Shutdown's context ends first), before it
// leaves the set of nodes.

// PusherWebhook is a URL that receives an app's webhooks.
type PusherWebhook struct {
	// URL receives POSTs of {"time_ms", "events": [...]}, signed with
	// X-Pusher-Key (the app's key) and X-Pusher-Signature (the hex
	// HMAC-SHA256 of the body with the app's secret).
	URL string
	// Events are the names of the events sent: channel_occupied,
	// channel_vacated, member_added, member_removed, client_event.
	// Default: all.
	Events []string
}

// pusherWebhookEvents are the names of the events webhooks send.
var pusherWebhookEvents = []string{"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"}

const (
	// pusherWebhookInterval is how often the leader reads the channels'
	// state.
	pusherWebhookInterval = time.Second
	// pusherWebhookQueue bounds the events waiting to be sent, per app;
	// past it new events are dropped, and counted.
	pusherWebhookQueue = 10_000
	// pusherWebhookBatch is how many events one POST holds at most.
	pusherWebhookBatch = 100
	// pusherWebhookAttempts is how often one POST is tried, waiting
	// pusherWebhookBackoff, doubled each time, between tries.
	pusherWebhookAttempts = 5
	pusherWebhookBackoff  = 500 * time.Millisecond
	// pusherWebhookFlush bounds the sending of queued events at shutdown.
	pusherWebhookFlush = 5 * time.Second
)

// pusherWebhookEvent is one event of a webhook's body.
type pusherWebhookEvent struct {
	Name     string          `json:"name"`
	Channel  string          `json:"channel"`
	UserID   string          `json:"user_id,omitempty"`
	Event    string          `json:"event,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	SocketID string          `json:"socket_id,omitempty"`
}

// pusherHooks is the webhook state of one app.
type pusherHooks struct {
	queue chan pusherWebhookEvent
	// watched is closed when the watcher has made its last read, at
	// shutdown: the sender then sends what is queued.
	watched chan struct{}
	// What the leader read last: occupied channels, and the users of
	// presence channels; nil when this node was not the leader.
	channels map[string]bool
	users    map[string]map[string]bool
}

// pusherNodesSet is the presence set of the nodes, whose lowest id is the
// webhook leader.
const pusherNodesSet = "$pusher.nodes"

// startPusherWebhooks starts, for each app with webhooks, a goroutine that
// sends them and one that reads the channels' state when this node leads.
func (s *Server) startPusherWebhooks() {
	started := false
	for _, app := range s.pusherByID {
		if len(app.Webhooks) == 0 {
			continue
		}
		app.hooks = &pusherHooks{queue: make(chan pusherWebhookEvent, pusherWebhookQueue), watched: make(chan struct{})}
		started = true
	}
	if !started {
		return
	}
	defer func() {
		for _, app := range s.pusherByID {
			if app.hooks != nil {
				s.wg.Add(2)
				go s.sendPusherWebhooks(app)
				go s.watchPusherChannels(app)
			}
		}
	}()
	e := presenceEntry{channel: pusherNodesSet, info: &broker.ClientInfo{Client: s.node}}
	s.pusherOccupancy.mu.Lock()
	s.pusherOccupancy.node = &e
	s.pusherOccupancy.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.broker.AddPresence(ctx, e.channel, e.info, s.cfg.PresenceTTL); err != nil {
		s.log.Warn("joining the Pusher webhook nodes failed", "err", err)
	}
	// What the leader knows at the start, before its goroutines run.
	for _, app := range s.pusherByID {
		if app.hooks != nil {
			s.readPusherChannels(ctx, app)
		}
	}
}

// leavePusherNodes removes this node from the set of nodes, at shutdown,
// so that another leads at once.
func (s *Server) leavePusherNodes(ctx context.Context) {
	s.pusherOccupancy.mu.Lock()
	e := s.pusherOccupancy.node
	s.pusherOccupancy.node = nil
	s.pusherOccupancy.mu.Unlock()
	if e != nil {
		s.broker.RemovePresence(ctx, e.channel, e.info.Client)
	}
}

// queueWebhook queues an event of the app's webhooks, if they send it.
func (s *Server) queueWebhook(app *pusherApp, ev pusherWebhookEvent) {
	if app.hooks == nil || !app.sendsWebhook(ev.Name) {
		return
	}
	select {
	case app.hooks.queue <- ev:
	default:
		s.metrics.limitHits.With(limitWebhookQueue).Inc()
		s.log.Warn("Pusher webhook queue full: event dropped", "app", app.ID, "event", ev.Name, "channel", ev.Channel)
	}
}

func (a *PusherApp) sendsWebhook(name string) bool {
	for _, h := range a.Webhooks {
		if len(h.Events) == 0 || slices.Contains(h.Events, name) {
			return true
		}
	}
	return false
}

// watchPusherChannels reads, while this node leads, the app's occupied
// channels and the users of its presence channels, and queues the changes.
func (s *Server) watchPusherChannels(app *pusherApp) {
	defer s.wg.Done()
	defer close(app.hooks.watched)
	t := time.NewTicker(pusherWebhookInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			// The node's sessions are closed: what they left is sent
			// while this node still leads.
			s.readPusherChannels(s.stopCtx, app)
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), pusherWebhookInterval)
		s.readPusherChannels(ctx, app)
		cancel()
	}
}

func (s *Server) readPusherChannels(ctx context.Context, app *pusherApp) {
	h := app.hooks
	nodes, err := s.broker.Presence(ctx, pusherNodesSet)
	if err != nil {
		return
	}
	for id := range nodes {
		if id < s.node {
			h.channels, h.users = nil, nil // another leads
			return
		}
	}
	names, err := s.pusherOccupiedChannels(ctx, app, "")
	if err != nil {
		return
	}
	channels := make(map[string]bool, len(names))
	users := make(map[string]map[string]bool)
	for _, name := range names {
		channels[name] = true
		if !strings.HasPrefix(name, "presence-") {
			continue
		}
		members, err := s.broker.Presence(ctx, app.pusherChannel(name))
		if err != nil {
			return
		}
		users[name] = make(map[string]bool)
		for id := range usersOf(members) {
			users[name][id] = true
		}
	}
	if h.channels != nil {
		for _, name := range names {
			if !h.channels[name] {
				s.queueWebhook(app, pusherWebhookEvent{Name: "channel_occupied", Channel: name})
			}
			for id := range users[name] {
				if !h.users[name][id] {
					s.queueWebhook(app, pusherWebhookEvent{Name: "member_added", Channel: name, UserID: id})
				}
			}
		}
		for name := range h.channels {
			for id := range h.users[name] {
				if !users[name][id] {
					s.queueWebhook(app, pusherWebhookEvent{Name: "member_removed", Channel: name, UserID: id})
				}
			}
			if !channels[name] {
				s.queueWebhook(app, pusherWebhookEvent{Name: "channel_vacated", Channel: name})
			}
		}
	}
	h.channels, h.users = channels, users
}

// sendPusherWebhooks posts the app's queued events in batches to each of
// its webhooks that wants them, trying each POST again with backoff; at
// shutdown, it sends what is left (flushPusherWebhooks).
func (s *Server) sendPusherWebhooks(app *pusherApp) {
	defer s.wg.Done()
	// A POST in progress ends with the time Shutdown gives the last
	// webhooks, so that a slow receiver does not hold it longer.
	ctx, cancel := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	watching.Add(1)
	go func() {
		defer watching.Done()
		select {
		case <-s.stop:
			select {
			case <-s.stopCtx.Done():
			case <-ctx.Done():
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	defer watching.Wait()
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		var batch []pusherWebhookEvent
		select {
		case <-s.stop:
			s.flushPusherWebhooks(ctx, client, app)
			return
		case ev := <-app.hooks.queue:
			batch = append(batch, ev)
		}
		s.postPusherBatch(ctx, client, app, takeWebhookBatch(app.hooks.queue, batch))
	}
}

// flushPusherWebhooks sends, at shutdown, the events the watcher's last
// read queued and every other event still queued, while ctx lasts. Each
// POST is tried once: postPusherWebhook does not wait to try again once
// the server stops.
func (s *Server) flushPusherWebhooks(ctx context.Context, client *http.Client, app *pusherApp) {
	select {
	case <-app.hooks.watched:
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		batch := takeWebhookBatch(app.hooks.queue, nil)
		if len(batch) == 0 {
			return
		}
		s.postPusherBatch(ctx, client, app, batch)
	}
}

// takeWebhookBatch adds to batch the events waiting in queue, up to
// pusherWebhookBatch, without waiting for more.
func takeWebhookBatch(queue chan pusherWebhookEvent, batch []pusherWebhookEvent) []pusherWebhookEvent {
	for len(batch) < pusherWebhookBatch {
		select {
		case ev := <-queue:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

// postPusherBatch posts batch to each of the app's webhooks, with the
// events each wants.
func (s *Server) postPusherBatch(ctx context.Context, client *http.Client, app *pusherApp, batch []pusherWebhookEvent) {
	for _, hook := range app.Webhooks {
		events := batch
		if len(hook.Events) > 0 {
			events = slices.DeleteFunc(slices.Clone(batch), func(ev pusherWebhookEvent) bool {
				return !slices.Contains(hook.Events, ev.Name)
			})
		}
		if len(events) > 0 {
			s.postPusherWebhook(ctx, client, app, hook.URL, events)
		}
	}
}

// postPusherWebhook posts events to url, signed, up to
// pusherWebhookAttempts times while the answer is not a 2xx.
func (s *Server) postPusherWebhook(ctx context.Context, client *http.Client, app *pusherApp, url string, events []pusherWebhookEvent) {
	body, _ := json.Marshal(struct {
		TimeMS int64                `json:"time_ms"`
		Events []pusherWebhookEvent `json:"events"`
	}{time.Now().UnixMilli(), events})
	signature := hex.EncodeToString(app.sign(string(body)))
	wait := pusherWebhookBackoff
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			s.log.Warn("Pusher webhook URL is invalid", "app", app.ID, "url", url, "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Pusher-Key", app.Key)
		req.Header.Set("X-Pusher-Signature", signature)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
			err = &Error{Code: resp.StatusCode, Message: "status " + strconv.Itoa(resp.StatusCode)}
		}
		if attempt == pusherWebhookAttempts {
			s.log.Warn("Pusher webhook not delivered: events dropped", "app", app.ID, "url", url,
				"events", len(events), "attempts", attempt, "err", err)
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}
