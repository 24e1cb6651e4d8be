package nats

import (
	"context"
	"slices"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// History implements broker.Broker. It reads the channel's last message,
// whose position is the result's, then the messages it selects up to
// that one: a snapshot, since messages before it only ever leave (the
// oldest first), and the result ends where the position is. The read
// starts at the closest link below the first offset wanted (see links),
// so it costs about what it returns. A channel without a stream, or whose
// stream outlived its StreamTTL, has Position{} and creates nothing.
func (b *Broker) History(ctx context.Context, channel string, opts broker.HistoryOptions) (broker.HistoryResult, error) {
	if err := b.begin(ctx, "read the history of"); err != nil {
		return broker.HistoryResult{}, err
	}
	ctx, cancel := b.requestContext(ctx)
	defer cancel()
	res, err := b.history(ctx, b.names.history(token(channel)), channel, opts)
	if err != nil {
		return broker.HistoryResult{}, b.fail("read the history of", channel, err)
	}
	return res, nil
}

// item is a publication read from history, with what decides whether it
// is still there.
type item struct {
	pub    *broker.Publication
	stored time.Time
	ttl    time.Duration // its HistoryTTL
}

func (it item) expired(now time.Time) bool {
	return it.ttl > 0 && !now.Before(it.stored.Add(it.ttl))
}

func (b *Broker) history(ctx context.Context, subject, channel string, opts broker.HistoryOptions) (broker.HistoryResult, error) {
	var res broker.HistoryResult
	last, found, err := b.lastMsg(ctx, b.names.directGet, subject)
	if err != nil || !found {
		return res, err
	}
	top, err := decodeRecord(last.data)
	now := time.Now()
	if err != nil || top.offset == 0 || !now.Before(top.published.Add(top.streamTTL)) {
		return res, nil // not ours, or expired: no stream
	}
	res.Position = broker.Position{Offset: top.offset, Epoch: top.epoch}
	if opts.Limit == 0 || opts.Since != nil && opts.Since.Epoch != top.epoch {
		return res, nil
	}

	// The offsets to read, lo to hi.
	n := top.offset
	lo := uint64(1)
	if size := max(min(top.historySize, uint64(b.opts.MaxHistorySize)), 1); n > size {
		lo = n - size + 1
	}
	if opts.Since != nil && opts.Since.Offset >= lo {
		lo = opts.Since.Offset + 1
	}
	if lo > n {
		return res, nil
	}
	hi := n
	// Without a HistoryTTL nothing in the range expires, so a Limit
	// narrows it before reading. (A HistoryTTL that older publications
	// had and the newest has not only makes a result shorter.)
	if opts.Limit > 0 && top.historyTTL == 0 {
		if l := uint64(opts.Limit); opts.Reverse && n-lo+1 > l {
			lo = n - l + 1
		} else if !opts.Reverse && hi-lo+1 > l {
			hi = lo + l - 1
		}
	}

	topItem := item{
		pub:    &broker.Publication{Channel: channel, Position: res.Position, Data: top.data, Info: top.info},
		stored: top.published,
		ttl:    top.historyTTL,
	}
	var items []item
	if lo < n {
		from, fromOffset := top.links.start(n, lo)
		// The run of consecutive offsets of the epoch read so far; a hole
		// (the oldest being removed while the read goes on) starts it
		// again.
		// Through the newest, whose sequence ends the read.
		want := int(min(hi, n)-fromOffset) + 1
		err := b.scan(ctx, b.names.directGet, subject, from, want, func(data []byte) bool {
			rec, err := decodeRecord(data)
			if err != nil || rec.offset == 0 {
				return true
			}
			// The newest, or past it: a later publication, or a later
			// epoch that began after the read did.
			if rec.epoch != top.epoch || rec.offset >= n {
				return false
			}
			if rec.offset < lo {
				return true
			}
			if len(items) > 0 && rec.offset != items[len(items)-1].pub.Position.Offset+1 {
				items = items[:0]
			}
			items = append(items, item{
				pub: &broker.Publication{Channel: channel, Data: rec.data, Info: rec.info,
					Position: broker.Position{Offset: rec.offset, Epoch: rec.epoch}},
				stored: rec.published,
				ttl:    rec.historyTTL,
			})
			return rec.offset < hi
		})
		if err != nil {
			return broker.HistoryResult{}, err
		}
	}
	if hi == n {
		if len(items) > 0 && items[len(items)-1].pub.Position.Offset != n-1 {
			items = items[:0]
		}
		items = append(items, topItem)
	}

	// Publications leave after their HistoryTTL, the oldest first: keep
	// what follows the last one gone.
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].expired(now) {
			items = items[i+1:]
			break
		}
	}
	if opts.Reverse {
		slices.Reverse(items)
	}
	if opts.Limit > 0 && len(items) > opts.Limit {
		items = items[:opts.Limit]
	}
	res.Publications = make([]*broker.Publication, len(items))
	for i, it := range items {
		res.Publications[i] = it.pub
	}
	return res, nil
}
