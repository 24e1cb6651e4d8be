package nats

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

func sampleRecords() []record {
	var l links
	for n := uint64(1); n < 40; n++ {
		l = l.next(n, n*3)
	}
	return []record{
		{data: []byte(`{}`)},
		{info: &broker.ClientInfo{Client: "c", User: ""}},
		{info: &broker.ClientInfo{Client: "c", User: "u", Info: json.RawMessage{}}, data: []byte(`1`)},
		{
			offset: 40, epoch: "AbC-_9xy", historySize: 100, historyTTL: 1500 * time.Millisecond,
			streamTTL: 24 * time.Hour, published: time.UnixMilli(1_780_000_000_123), links: l,
			info: &broker.ClientInfo{Client: "client-1", User: "user-1", Info: json.RawMessage(`{"name":"<Ann>"}`)},
			data: []byte("{\"text\":\"h\\u00e9llo \u2028 <b>&amp;</b> 😀\"}"),
		},
		{offset: 1, epoch: "e", historySize: 1, streamTTL: time.Millisecond, published: time.UnixMilli(0), links: firstLinks(0)},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		got, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if r.data == nil {
			r.data = []byte{}
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
		}
		if got.info != nil && (got.info.Info == nil) != (r.info.Info == nil) {
			t.Errorf("Info nil-ness changed: %v → %v", r.info.Info, got.info.Info)
		}
	}
}

func TestPresenceRoundTrip(t *testing.T) {
	for _, e := range []presence{
		{ttl: time.Minute, added: time.UnixMilli(1_780_000_000_123), info: &broker.ClientInfo{Client: "c1", User: "u1", Info: json.RawMessage(`[1,{"a":"<b>"}]`)}},
		{ttl: time.Millisecond, added: time.UnixMilli(0), info: &broker.ClientInfo{Client: "", User: ""}},
		{ttl: time.Second, added: time.UnixMilli(5), info: &broker.ClientInfo{Client: "c", Info: json.RawMessage{}}},
		{ttl: 3 * time.Second, added: time.UnixMilli(7), info: &broker.ClientInfo{Client: "c", User: "u"}, node: "n0de"},
		{ttl: time.Second, added: time.UnixMilli(9), info: &broker.ClientInfo{Client: "c", Info: json.RawMessage(`{}`)}, node: "n"},
	} {
		got, err := decodePresence(e.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", e, err)
		}
		if !reflect.DeepEqual(got, e) || (got.info.Info == nil) != (e.info.Info == nil) {
			t.Errorf("round trip: got %+v, want %+v", got, e)
		}
	}
}

// TestMalformed: every truncation of a record or an entry fails to decode
// (data excepted, which is the rest), without a panic.
func TestMalformed(t *testing.T) {
	for _, r := range sampleRecords() {
		p := r.encode()
		for n := 0; n < len(p)-len(r.data); n++ {
			if _, err := decodeRecord(p[:n]); err == nil {
				t.Errorf("decodeRecord of %d of %d bytes: no error", n, len(p))
			}
		}
	}
	p := presence{ttl: time.Second, info: &broker.ClientInfo{Client: "c", User: "u", Info: json.RawMessage(`{}`)}}.encode()
	for n := 0; n < len(p); n++ {
		if _, err := decodePresence(p[:n]); err == nil {
			t.Errorf("decodePresence of %d of %d bytes: no error", n, len(p))
		}
	}
	if _, err := decodePresence(append(p, 0)); err == nil {
		t.Error("decodePresence with a trailing byte: no error")
	}
	// With its node: every truncation but the one without the node, which
	// is an entry of no node, fails.
	withNode := presence{ttl: time.Second, info: &broker.ClientInfo{Client: "c"}, node: "node"}.encode()
	noNode := presence{ttl: time.Second, info: &broker.ClientInfo{Client: "c"}}.encode()
	for n := len(noNode) + 1; n < len(withNode); n++ {
		if _, err := decodePresence(withNode[:n]); err == nil {
			t.Errorf("decodePresence of %d of %d bytes, with a node: no error", n, len(withNode))
		}
	}
	if _, err := decodePresence(append(withNode, 0)); err == nil {
		t.Error("decodePresence with a node and a trailing byte: no error")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.encode())
	}
	f.Add([]byte{codecVersion, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := decodeRecord(p)
		if err != nil {
			return
		}
		// What decodes encodes to what decodes the same.
		again, err := decodeRecord(r.encode())
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.offset != r.offset || again.epoch != r.epoch || !bytes.Equal(again.data, r.data) {
			t.Fatalf("re-encoded record differs: %+v, %+v", again, r)
		}
	})
}

func FuzzDecodePresence(f *testing.F) {
	f.Add(presence{ttl: time.Second, info: &broker.ClientInfo{Client: "c", User: "u"}}.encode())
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := decodePresence(p)
		if err != nil {
			return
		}
		again, err := decodePresence(e.encode())
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encoded entry differs: %+v, %+v", again, e)
		}
	})
}

func TestTTLSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "1",
		time.Millisecond:        "1",
		time.Second:             "1",
		time.Second + 1:         "2",
		24 * time.Hour:          "86400",
		90*time.Second + 999999: "91",
	} {
		if got := ttlSeconds(d); got != want {
			t.Errorf("ttlSeconds(%v) = %q, want %q", d, got, want)
		}
	}
}
