package nats

import (
	"context"
	"errors"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/duplexws/duplex/gateway/broker"
)

// Presence lives in the bucket P_presence, one key per member: T.C for
// the channel's token T and the client id's token C, its value the
// ClientInfo, the entry's ttl and when it was added. Each put carries the
// ttl as the message's own (Nats-TTL), so that the server removes the
// members of a node that stopped refreshing them; reads also skip entries
// older than their ttl, which the server removes only in whole seconds. A
// channel's members are read with one batched direct get over T.*, which
// the server answers in isolation from writes.

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
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	m := &natsgo.Msg{
		Subject: b.names.presenceKey(token(channel), info.Client),
		Header:  natsgo.Header{headerTTL: []string{ttlSeconds(ttl)}},
		Data:    presence{ttl: ttl, added: time.Now(), info: info}.encode(),
	}
	for attempt := 0; ; attempt++ {
		_, err := b.jsPublish(ctx, m)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNoStream) || attempt > 0 {
			return b.fail(op, channel, err)
		}
		// The server lost the bucket (restarted without its data).
		if err := b.ensureBucket(ctx); err != nil {
			return b.fail(op, channel, err)
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
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	err := b.purge(ctx, b.names.kvStream, b.names.presenceKey(token(channel), client), 0, 0)
	if err != nil && !errors.Is(err, errNoStream) && !isAPIError(err, errCodeStreamNotFound) {
		return b.fail(op, channel, err)
	}
	return nil
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
	out := make(map[string]*broker.ClientInfo)
	err := b.scan(ctx, b.names.kvDirectGet, b.names.presenceAll(token(channel)), 0, scanBatch, func(data []byte) bool {
		// Deletes, purges and the markers of expired keys are empty.
		if len(data) == 0 {
			return true
		}
		e, err := decodePresence(data)
		if err != nil || !now.Before(e.added.Add(e.ttl)) {
			return true
		}
		// A key read twice (put again between two batches) keeps its
		// later value.
		out[e.info.Client] = e.info
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
