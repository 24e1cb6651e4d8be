package nats

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// A message of the broker carries a record in its payload, in a binary form
// of its own rather than JSON: Data and Info come back byte for byte
// (encoding/json would escape '<' in them), and a reader decodes the
// position of the last message of a channel without touching its data.
//
//	byte      version (1)
//	byte      flags: 1 a ClientInfo follows, 2 it has Info
//	uvarint   offset; 0 for a publication without history, a join or a leave
//	when offset > 0:
//	  string  epoch
//	  uvarint HistorySize
//	  uvarint HistoryTTL, milliseconds (0: none)
//	  uvarint the stream's TTL, milliseconds
//	  uvarint when it was published, Unix milliseconds
//	  uvarint links.epochStart, then 2×linkLevels uvarints links.levels
//	when flag 1:
//	  string  client, string user, and when flag 2: string info
//	rest      data
//
// A string is a uvarint length and its bytes. A presence entry is
//
//	byte      version (1)
//	uvarint   ttl, milliseconds
//	uvarint   when it was added, Unix milliseconds
//	string    client, string user, byte has-info, string info when it has
//	string    the node that keeps it alive, when one does (optional)
//
// The times are the writing node's clock: reads, which apply the
// lifetimes, ask the server for payloads only, which costs it and the
// reader half as much as messages with their headers.
type record struct {
	offset      uint64
	epoch       string
	historySize uint64
	historyTTL  time.Duration
	streamTTL   time.Duration
	published   time.Time // to the millisecond
	links       links
	info        *broker.ClientInfo
	data        []byte
}

const (
	codecVersion = 1
	flagInfo     = 1
	flagInfoInfo = 2
)

var errMalformed = errors.New("nats broker: malformed message")

func (r *record) encode() []byte {
	n := 2 + binary.MaxVarintLen64 + len(r.data)
	if r.offset > 0 {
		n += binary.MaxVarintLen64*(6+2*linkLevels) + len(r.epoch)
	}
	if r.info != nil {
		n += 3*binary.MaxVarintLen64 + len(r.info.Client) + len(r.info.User) + len(r.info.Info)
	}
	b := make([]byte, 0, n)
	var flags byte
	if r.info != nil {
		flags |= flagInfo
		if r.info.Info != nil {
			flags |= flagInfoInfo
		}
	}
	b = append(b, codecVersion, flags)
	b = binary.AppendUvarint(b, r.offset)
	if r.offset > 0 {
		b = appendString(b, r.epoch)
		b = binary.AppendUvarint(b, r.historySize)
		b = binary.AppendUvarint(b, millis(r.historyTTL))
		b = binary.AppendUvarint(b, millis(r.streamTTL))
		b = binary.AppendUvarint(b, unixMillis(r.published))
		b = binary.AppendUvarint(b, r.links.epochStart)
		for _, l := range r.links.levels {
			b = binary.AppendUvarint(b, l[0])
			b = binary.AppendUvarint(b, l[1])
		}
	}
	if r.info != nil {
		b = appendString(b, r.info.Client)
		b = appendString(b, r.info.User)
		if r.info.Info != nil {
			b = appendString(b, string(r.info.Info))
		}
	}
	return append(b, r.data...)
}

// decodeRecord decodes p. The record's data and info alias p.
func decodeRecord(p []byte) (record, error) {
	var r record
	d := decoder{p: p}
	if d.byte() != codecVersion {
		return r, errMalformed
	}
	flags := d.byte()
	r.offset = d.uvarint()
	if r.offset > 0 {
		r.epoch = string(d.bytes())
		r.historySize = d.uvarint()
		r.historyTTL = fromMillis(d.uvarint())
		r.streamTTL = fromMillis(d.uvarint())
		r.published = fromUnixMillis(d.uvarint())
		r.links.epochStart = d.uvarint()
		for i := range r.links.levels {
			r.links.levels[i] = [2]uint64{d.uvarint(), d.uvarint()}
		}
	}
	if flags&flagInfo != 0 {
		r.info = &broker.ClientInfo{Client: string(d.bytes()), User: string(d.bytes())}
		if flags&flagInfoInfo != 0 {
			r.info.Info = json.RawMessage(d.bytes())
		}
	}
	if d.err {
		return record{}, errMalformed
	}
	r.data = d.p
	return r, nil
}

// presence is an entry of a channel's presence, or a node's heartbeat.
type presence struct {
	ttl   time.Duration
	added time.Time // to the millisecond
	info  *broker.ClientInfo
	node  string // the token of the node whose heartbeat keeps it alive; "" for none
}

func (e presence) encode() []byte {
	b := make([]byte, 0, 3+6*binary.MaxVarintLen64+len(e.info.Client)+len(e.info.User)+len(e.info.Info)+len(e.node))
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, millis(e.ttl))
	b = binary.AppendUvarint(b, unixMillis(e.added))
	b = appendString(b, e.info.Client)
	b = appendString(b, e.info.User)
	if e.info.Info == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendString(b, string(e.info.Info))
	}
	if e.node != "" {
		b = appendString(b, e.node)
	}
	return b
}

func decodePresence(p []byte) (presence, error) {
	d := decoder{p: p}
	if d.byte() != codecVersion {
		return presence{}, errMalformed
	}
	e := presence{ttl: fromMillis(d.uvarint()), added: fromUnixMillis(d.uvarint())}
	e.info = &broker.ClientInfo{Client: string(d.bytes()), User: string(d.bytes())}
	if d.byte() == 1 {
		e.info.Info = json.RawMessage(d.bytes())
	}
	if len(d.p) > 0 {
		// Written only when there is one: an empty one is not.
		e.node = string(d.bytes())
		d.err = d.err || e.node == ""
	}
	if d.err || len(d.p) != 0 {
		return presence{}, errMalformed
	}
	return e, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// millis rounds d up to whole milliseconds, so that a TTL stays a TTL.
func millis(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Millisecond - 1) / time.Millisecond)
}

func unixMillis(t time.Time) uint64 {
	if ms := t.UnixMilli(); ms > 0 {
		return uint64(ms)
	}
	return 0
}

func fromUnixMillis(ms uint64) time.Time {
	return time.UnixMilli(int64(min(ms, 1<<62)))
}

func fromMillis(ms uint64) time.Duration {
	if ms > uint64(1<<63-1)/uint64(time.Millisecond) {
		return 1<<63 - 1
	}
	return time.Duration(ms) * time.Millisecond
}

// decoder reads p, remembering the first error instead of returning it
// from every read.
type decoder struct {
	p   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.p) == 0 {
		d.err = true
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err = true
		d.p = nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.p)) {
		d.err = true
		d.p = nil
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}
