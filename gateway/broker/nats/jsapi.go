package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	natsgo "github.com/nats-io/nats.go"
)

// The broker speaks JetStream's wire API itself for what it does on every
// call (publish with expectations, direct gets, purges): one request each,
// with the errors it needs to tell apart, and no stream handles to go stale
// when a server loses its data. Stream and bucket creation goes through
// nats.go's jetstream package.

// Error codes of the JetStream API.
const (
	errCodeStreamNotFound            = 10059
	errCodeWrongLastSequence         = 10071
	errCodeWrongLastSequenceConstant = 10164 // a replicated stream's
)

// errNoStream says that no stream answered: it does not exist (the server
// lost its data) or JetStream is not available.
var errNoStream = errors.New("no stream answered")

// apiError is an error that the JetStream API returned.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (%d)", e.Description, e.ErrCode)
}

func isAPIError(err error, codes ...int) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrCode == c {
			return true
		}
	}
	return false
}

func isWrongLastSequence(err error) bool {
	return isAPIError(err, errCodeWrongLastSequence, errCodeWrongLastSequenceConstant)
}

// jsPublish stores m in the stream that captures its subject and returns
// the stream sequence it got.
func (b *Broker) jsPublish(ctx context.Context, m *natsgo.Msg) (uint64, error) {
	resp, err := b.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if errors.Is(err, natsgo.ErrNoResponders) {
			return 0, errNoStream
		}
		return 0, err
	}
	var ack struct {
		Stream string    `json:"stream"`
		Seq    uint64    `json:"seq"`
		Error  *apiError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("jetstream: invalid publish acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Seq == 0 {
		return 0, errors.New("jetstream: publish acknowledgement without a sequence")
	}
	return ack.Seq, nil
}

// apiRequest sends a JetStream API request and decodes its response into
// out; the caller checks the error that out holds.
func (b *Broker) apiRequest(ctx context.Context, subject string, req any, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := b.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, natsgo.ErrNoResponders) {
			return errNoStream
		}
		return err
	}
	return json.Unmarshal(resp.Data, out)
}

// purge removes messages of subject from stream: those before sequence
// seq when seq > 0, else all but the newest keep when keep > 0, else all.
func (b *Broker) purge(ctx context.Context, stream, subject string, seq, keep uint64) error {
	req := struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq,omitempty"`
		Keep   uint64 `json:"keep,omitempty"`
	}{subject, seq, keep}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := b.apiRequest(ctx, "$JS.API.STREAM.PURGE."+stream, req, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// storedMsg is a message read from a stream.
type storedMsg struct {
	seq  uint64
	data []byte
}

// parseStored reads a direct get response: found is false for a 404, the
// error a status other than none.
func parseStored(m *natsgo.Msg) (msg storedMsg, found bool, err error) {
	switch status := m.Header.Get("Status"); status {
	case "":
	case "404":
		return storedMsg{}, false, nil
	case "503":
		return storedMsg{}, false, errNoStream
	default:
		return storedMsg{}, false, fmt.Errorf("jetstream: direct get: status %s %s", status, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return storedMsg{}, false, fmt.Errorf("jetstream: direct get: bad Nats-Sequence %q", m.Header.Get("Nats-Sequence"))
	}
	return storedMsg{seq: seq, data: m.Data}, true, nil
}

// lastMsg reads the last message of subject in stream, whose direct get
// API is api. found is false when there is none, also when the stream
// does not exist.
func (b *Broker) lastMsg(ctx context.Context, api, subject string) (storedMsg, bool, error) {
	resp, err := b.nc.RequestWithContext(ctx, api+"."+subject, nil)
	if err != nil {
		if errors.Is(err, natsgo.ErrNoResponders) {
			return storedMsg{}, false, nil
		}
		return storedMsg{}, false, err
	}
	m, found, err := parseStored(resp)
	if errors.Is(err, errNoStream) {
		return storedMsg{}, false, nil
	}
	return m, found, err
}

// scanBatch is the most messages one direct get request returns; the
// channel the responses arrive on holds them all, so none is dropped.
const scanBatch = 256

// scan reads the payloads of the messages of a stream (through its direct
// get API api) whose subjects match filter, from stream sequence from on,
// calling fn for each in order until fn returns false; want, the number of
// messages the caller expects to read, sizes the first request. The
// server reads each request, a batch, in isolation from writes, and sends
// payloads without headers: half the work of whole messages, for it and
// for the reader. Deletes and markers have empty payloads. A stream that
// does not exist holds nothing.
func (b *Broker) scan(ctx context.Context, api, filter string, from uint64, want int, fn func(data []byte) bool) error {
	inbox, ch, done := b.replies.open()
	defer done()
	type request struct {
		Seq       uint64 `json:"seq,omitempty"`
		NextFor   string `json:"next_by_subj"`
		Batch     int    `json:"batch"`
		NoHeaders bool   `json:"no_hdr"`
	}
	for {
		batch := min(max(want, 1), scanBatch)
		body, _ := json.Marshal(request{Seq: from, NextFor: filter, Batch: batch, NoHeaders: true})
		if err := b.nc.PublishRequest(api, inbox, body); err != nil {
			return err
		}
		for n := 0; ; n++ {
			var m *natsgo.Msg
			select {
			case m = <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			switch status := m.Header.Get("Status"); status {
			case "":
				b.scanned.Add(1)
				if !fn(m.Data) {
					return nil
				}
				continue
			case "204": // the end of the batch
			case "404", "503":
				return nil // nothing (more) matches, or no stream
			default:
				return fmt.Errorf("jetstream: direct get: status %s %s", status, m.Header.Get("Description"))
			}
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			last, err := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
			if pending == 0 || n == 0 || err != nil || last < from {
				return nil
			}
			from = last + 1
			break
		}
		want = scanBatch // want was a hint for the first batch
	}
}

// replies routes the responses to scan's batched requests: one
// subscription, made at Start, to a wildcard inbox, instead of one per
// scan, which would cost the server a subscription and its removal per
// read.
type replies struct {
	prefix string // the inbox, ending in '.'
	sub    *natsgo.Subscription

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *natsgo.Msg
}

// start subscribes; b's subWG counts the subscription's goroutine.
func (r *replies) start(b *Broker) error {
	r.prefix = b.nc.NewInbox() + "."
	r.waiting = make(map[string]chan *natsgo.Msg)
	sub, err := b.nc.Subscribe(r.prefix+"*", r.route)
	if err != nil {
		return err
	}
	b.subWG.Add(1)
	sub.SetClosedHandler(func(string) { b.subWG.Done() })
	r.sub = sub
	return nil
}

// route hands a response to its scan. The scan's channel holds a whole
// batch, so the send does not block; a response that arrives after its
// scan ended is dropped.
func (r *replies) route(m *natsgo.Msg) {
	r.mu.Lock()
	ch := r.waiting[m.Subject[len(r.prefix):]]
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// open returns an inbox of its own for a scan, the channel its responses
// arrive on, and the function that ends it.
func (r *replies) open() (inbox string, ch chan *natsgo.Msg, done func()) {
	ch = make(chan *natsgo.Msg, scanBatch+1) // the batch and its end marker
	r.mu.Lock()
	r.next++
	tok := strconv.FormatUint(r.next, 36)
	r.waiting[tok] = ch
	r.mu.Unlock()
	return r.prefix + tok, ch, func() {
		r.mu.Lock()
		delete(r.waiting, tok)
		r.mu.Unlock()
	}
}
