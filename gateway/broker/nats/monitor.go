package nats

import (
	"context"
	"errors"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// onLinkEvent is nats.go's disconnect and reconnect handler: it wakes the
// monitor, which decides what to report.
func (b *Broker) onLinkEvent(nc *natsgo.Conn, lost bool, what string, err error) {
	if nc != b.current.Load() {
		return // a connection that Start gave up on
	}
	if lost {
		b.linkLost.Store(true)
		b.opts.Logger.Warn("nats broker: "+what, "error", err)
	} else {
		b.opts.Logger.Info("nats broker: " + what)
	}
	b.wakeMonitor()
}

func (b *Broker) wakeMonitor() {
	select {
	case b.linkEvent <- struct{}{}:
	default:
	}
}

// onAsyncError is nats.go's handler of errors that no call returns. A
// slow consumer lost messages of a subscription: the gateway must
// recover them from history as after a lost link, so it counts as one.
func (b *Broker) onAsyncError(nc *natsgo.Conn, sub *natsgo.Subscription, err error) {
	if nc != b.current.Load() {
		return
	}
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	b.opts.Logger.Warn("nats broker: asynchronous error", "subject", subject, "error", err)
	if errors.Is(err, natsgo.ErrSlowConsumer) {
		b.linkLost.Store(true)
		b.wakeMonitor()
	}
}

// monitor reports the link to the Handler: lost when nats.go loses the
// connection, or drops messages, or the server stops answering round
// trips within HealthTimeout (a hung server keeps its TCP connection
// open); back when the connection answers a round trip again. The round
// trip also proves that the server has every subscription: after a
// reconnection nats.go sends them all before anything else. The calls
// alternate, starting with false, from this goroutine only.
func (b *Broker) monitor() {
	tick := time.NewTicker(b.opts.HealthInterval)
	defer tick.Stop()
	up := true
	for {
		select {
		case <-b.stop:
			return
		case <-b.linkEvent:
		case <-tick.C:
		}
		lost := b.linkLost.Swap(false)
		if up && lost {
			up = false
			b.report(false)
		}
		healthy := b.nc.IsConnected() && b.nc.FlushTimeout(b.opts.HealthTimeout) == nil
		if healthy {
			b.proved()
		}
		switch {
		case up && !healthy:
			up = false
			b.report(false)
		case !up && healthy && !b.linkLost.Load():
			up = true
			b.report(true)
		}
	}
}

func (b *Broker) report(up bool) {
	select {
	case <-b.stop:
		return // closed: nothing more reaches the Handler
	default:
	}
	b.linkUp.Store(up)
	if up {
		b.local.linkBack()
	} else {
		b.local.linkLost()
	}
	if up {
		b.opts.Logger.Info("nats broker: link back")
	} else {
		b.opts.Logger.Warn("nats broker: link lost")
	}
	b.handler.HandleConnection(up)
}

// purgeJob trims a channel's history: the messages before seq when seq >
// 0, else all but the newest keep.
type purgeJob struct {
	subject   string
	seq, keep uint64
}

// evictAfter is how long a channel's tip stays known without a
// publication.
const evictAfter = 5 * time.Minute

// janitor trims the channels' histories as Publish asks, off the
// publishers' path, and forgets the tips of channels left unused.
func (b *Broker) janitor() {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
			b.states.evict(time.Now().Add(-evictAfter))
		case job := <-b.purges:
			ctx, cancel := context.WithTimeout(b.closing, b.opts.RequestTimeout)
			if err := b.purge(ctx, b.names.stream, job.subject, job.seq, job.keep); err != nil && !errors.Is(err, errNoStream) {
				b.opts.Logger.Warn("nats broker: trimming history failed", "subject", job.subject, "error", err)
			}
			cancel()
		}
	}
}

// schedulePurge queues job for the janitor; when the queue is full the
// job is dropped, as a later one trims the same.
func (b *Broker) schedulePurge(job purgeJob) {
	select {
	case b.purges <- job:
	default:
	}
}
