package nats

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/duplexws/duplex/gateway/broker"
)

// NATS headers the broker sets on what it stores.
const (
	headerExpectedLastSubjectSeq = "Nats-Expected-Last-Subject-Sequence"
	headerTTL                    = "Nats-TTL"
)

// Publish implements broker.Broker.
//
// With history, the publication is appended to the channel's subject in
// the history stream, expecting the subject's last message to be the tip
// this node knows: its offset is the tip's plus one, in the tip's epoch,
// or 1 in a new epoch when the tip's stream has expired or there is none.
// If another node appended in between, the server refuses, and Publish
// reads the tip again and retries. The stream then republishes the stored
// message to the nodes subscribed to the channel. Without history, the
// publication goes to them directly, with no position.
func (b *Broker) Publish(ctx context.Context, channel string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.begin(ctx, "publish"); err != nil {
		return broker.Position{}, err
	}
	tok := token(channel)
	if opts.HistorySize <= 0 {
		rec := record{info: info, data: data}
		if err := b.publishCore(ctx, b.names.live(tok), rec.encode()); err != nil {
			return broker.Position{}, b.fail("publish to", channel, err)
		}
		return broker.Position{}, nil
	}
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	st := b.states.acquire(channel)
	defer func() { b.states.release(channel, st, time.Now()) }()
	if err := st.lock(ctx); err != nil {
		return broker.Position{}, b.fail("publish to", channel, err)
	}
	defer st.unlock()
	pos, err := b.append(ctx, channel, st, tok, data, info, opts)
	if err != nil {
		return broker.Position{}, b.fail("publish to", channel, err)
	}
	return pos, nil
}

// append stores a publication after st's tip, retrying while other nodes
// append first; st is locked.
func (b *Broker) append(ctx context.Context, channel string, st *channelState, tok string, data json.RawMessage, info *broker.ClientInfo, opts broker.PublishOptions) (broker.Position, error) {
	subject := b.names.history(tok)
	streamTTL := opts.StreamTTL
	if streamTTL <= 0 {
		streamTTL = broker.DefaultStreamTTL
	}
	streamTTL = max(streamTTL, opts.HistoryTTL)
	rec := record{
		historySize: uint64(min(opts.HistorySize, b.opts.MaxHistorySize)),
		historyTTL:  opts.HistoryTTL,
		streamTTL:   streamTTL,
		info:        info,
		data:        data,
	}
	header := natsgo.Header{headerTTL: []string{ttlSeconds(streamTTL)}}
	for attempt := 0; ; attempt++ {
		// A message delivered since is a newer tip (a later sequence);
		// after a refusal, only one newer than the refused tip is.
		if h := b.states.hintOf(channel, st); h.valid && h.seq > st.tip.seq {
			st.tip, st.known = h, true
		}
		if !st.known {
			t, err := b.readTip(ctx, subject)
			if err != nil {
				return broker.Position{}, err
			}
			st.tip, st.known = t, true
		}
		t := &st.tip
		if t.live(time.Now()) {
			rec.offset, rec.epoch, rec.links = t.offset+1, t.epoch, t.links.next(t.offset, t.seq)
		} else {
			rec.offset, rec.epoch, rec.links = 1, newEpoch(), firstLinks(t.seq)
		}
		rec.published = time.Now()
		header[headerExpectedLastSubjectSeq] = []string{strconv.FormatUint(t.seq, 10)}
		seq, err := b.jsPublish(ctx, &natsgo.Msg{Subject: subject, Header: header, Data: rec.encode()})
		switch {
		case err == nil:
			prev := t.seq
			*t = tip{seq: seq, valid: true, offset: rec.offset, epoch: rec.epoch, links: rec.links,
				published: rec.published.Truncate(time.Millisecond), streamTTL: streamTTL}
			b.trim(subject, rec, prev, seq)
			return broker.Position{Offset: rec.offset, Epoch: rec.epoch}, nil
		case isWrongLastSequence(err):
			// Another node appended: read the tip again. Past a few
			// rounds, back off a little so that one of the contenders
			// wins.
			st.known = false
			b.states.dropHint(channel, st, st.tip.seq)
			if attempt >= 3 {
				if err := sleep(ctx, time.Duration(mrand.Int64N(int64(min(attempt, 20))*int64(time.Millisecond)))); err != nil {
					return broker.Position{}, err
				}
			}
		case errors.Is(err, errNoStream):
			// The server lost the stream (restarted without its data):
			// make it again.
			st.known = false
			b.states.dropHint(channel, st, 0)
			if err := b.ensureStream(ctx); err != nil {
				return broker.Position{}, err
			}
		default:
			// The publication may have been stored (its acknowledgement
			// lost): the tip is unknown.
			st.known = false
			return broker.Position{}, err
		}
	}
}

// trim asks the janitor to keep the channel's subject near its
// HistorySize, and to drop an epoch that the message at seq, following the
// one at prev, ended. Reads cut at HistorySize anyway; trimming only keeps
// the stream small.
func (b *Broker) trim(subject string, rec record, prev, seq uint64) {
	switch {
	case rec.offset == 1 && prev != 0:
		b.schedulePurge(purgeJob{subject: subject, seq: seq})
	case rec.offset%trimEvery(rec.historySize) == 0:
		b.schedulePurge(purgeJob{subject: subject, keep: rec.historySize})
	}
}

// trimEvery is how many publications a channel takes between two trims:
// a quarter of its size, so that it holds at most 1.25 times it, and at
// least 16, so that small histories do not cost a trim per publication.
func trimEvery(size uint64) uint64 { return max(size/4, 16) }

// readTip reads the last message of a channel's subject.
func (b *Broker) readTip(ctx context.Context, subject string) (tip, error) {
	b.tipReads.Add(1)
	m, found, err := b.lastMsg(ctx, b.names.directGet, subject)
	if err != nil || !found {
		return tip{}, err
	}
	rec, err := decodeRecord(m.data)
	if err != nil || rec.offset == 0 {
		return tip{seq: m.seq}, nil // not ours: the next publication starts an epoch
	}
	return tip{seq: m.seq, valid: true, offset: rec.offset, epoch: rec.epoch, links: rec.links,
		published: rec.published, streamTTL: rec.streamTTL}, nil
}

// publishCore publishes on core NATS and waits, bounded by ctx, for the
// server to have it (a round trip after it on the connection): a
// publication that Publish returned for has reached the server, and
// reaches every node subscribed by then and no node that subscribes
// later; one that cannot reach it fails instead of waiting in a buffer.
func (b *Broker) publishCore(ctx context.Context, subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return err
	}
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	return b.nc.FlushWithContext(ctx)
}

// PublishJoin implements broker.Broker.
func (b *Broker) PublishJoin(ctx context.Context, channel string, info *broker.ClientInfo) error {
	return b.publishEvent(ctx, "publish a join to", channel, b.names.join(token(channel)), info)
}

// PublishLeave implements broker.Broker.
func (b *Broker) PublishLeave(ctx context.Context, channel string, info *broker.ClientInfo) error {
	return b.publishEvent(ctx, "publish a leave to", channel, b.names.leave(token(channel)), info)
}

func (b *Broker) publishEvent(ctx context.Context, op, channel, subject string, info *broker.ClientInfo) error {
	if err := b.begin(ctx, op); err != nil {
		return err
	}
	if info == nil {
		return b.fail(op, channel, errors.New("nil ClientInfo"))
	}
	rec := record{info: info}
	if err := b.publishCore(ctx, subject, rec.encode()); err != nil {
		return b.fail(op, channel, err)
	}
	return nil
}

// Control implements broker.Broker.
func (b *Broker) Control(ctx context.Context, data []byte) error {
	if err := b.begin(ctx, "publish a control message"); err != nil {
		return err
	}
	if err := b.publishCore(ctx, b.names.control, data); err != nil {
		return b.fail("publish a control message", "", err)
	}
	return nil
}

// newEpoch returns a random name for a new life of a stream.
func newEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ttlSeconds is a Nats-TTL header's value for d: whole seconds, rounded
// up, at least the 1 second that the server accepts.
func ttlSeconds(d time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(max(s, 1)), 10)
}

// sleep waits for d or ctx.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
