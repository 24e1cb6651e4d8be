package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// TestHistoryPageGarbage: clients paging through a history of large
// publications (issue 12, defect 5, the poisoned history) made the server
// allocate several times each page: the publications encoded one by one,
// json.Marshal checking and copying them into a buffer grown by doubling
// and cloning it, then the writer copying the reply into a batch buffer
// too large to keep (3.2× the pages here, more with pages over 128 KiB).
// The collection of that garbage delayed every other client. A page is now
// encoded once, into a buffer of its size.
func TestHistoryPageGarbage(t *testing.T) {
	ts := bigHistoryServer(t) // pages of 64 KiB
	bigHistory(t, ts, "big:g", 100, 20<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)
	buf := make([]byte, 0, 256<<10)
	// read reads the next message into buf, which is reused.
	read := func() []byte {
		_, r, err := conn.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
		for {
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				return buf
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(buf) == cap(buf) {
				t.Fatalf("a message over %d bytes", cap(buf))
			}
		}
	}
	cmd := make([]byte, 0, 128)
	send := func(line string) {
		cmd = append(cmd[:0], line...)
		if err := conn.Write(ctx, websocket.MessageText, cmd); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"id":1,"method":"connect"}`)
	read()
	// pass pages through the whole history and returns the pages and
	// their bytes.
	id := 1
	pass := func() (pages, size int) {
		since := ""
		for {
			id++
			send(`{"id":` + strconv.Itoa(id) + `,"method":"history","channel":"big:g"` + since + `}`)
			page := read()
			if !bytes.HasPrefix(page, []byte(`{"id":`+strconv.Itoa(id)+`,"result":`)) {
				t.Fatalf("reply %.200s", page)
			}
			pages++
			size += len(page)
			if !bytes.Contains(page, []byte(`"truncated":true`)) {
				return pages, size
			}
			// The offset of the last publication of the page.
			last := bytes.LastIndex(page, []byte(`{"push":"pub"`))
			i := last + bytes.Index(page[last:], []byte(`"offset":`))
			j := i + len(`"offset":`)
			for page[j] >= '0' && page[j] <= '9' {
				j++
			}
			since = fmt.Sprintf(`,"since":{"offset":%s,"epoch":%q}`, page[i+len(`"offset":`):j], epochOf(page))
		}
	}
	pass() // warm up: pools, buffers
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	pages, size := 0, 0
	for range 3 {
		p, s := pass()
		pages, size = pages+p, size+s
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	ratio := float64(allocated) / float64(size)
	t.Logf("%d pages of %d bytes on average: %d bytes allocated, %.2f× the pages", pages, size/pages, allocated, ratio)
	if pages < 60 {
		t.Fatalf("%d pages: the history was not paged", pages)
	}
	// The buffer of a page, and room for the rest of the process (the
	// commands, the client's frames, the test's own strings).
	if ratio > 1.6 {
		t.Errorf("serving history allocated %.2f× the bytes of its pages, want at most 1.6×", ratio)
	}
}

// TestPublicationLen: the size fitPublications computes is what
// appendPublication writes, so that a reply fits its buffer and its
// budget exactly.
func TestPublicationLen(t *testing.T) {
	for _, p := range []*broker.Publication{
		{Channel: "a:b", Data: json.RawMessage(`1`)},
		{Channel: "chat:lobby", Data: json.RawMessage(`{"text":"hé"}`), Position: broker.Position{Offset: 9, Epoch: "xyz"}},
		{Channel: "c", Data: json.RawMessage(`[]`), Position: broker.Position{Offset: 1234567890123, Epoch: "e"},
			Info: &broker.ClientInfo{Client: "c1", User: "u\"1", Info: json.RawMessage(`{"name":"Zoë"}`)}},
	} {
		if got, want := publicationLen(p), len(appendPublication(nil, p)); got != want {
			t.Errorf("publicationLen = %d, appendPublication wrote %d: %s", got, want, appendPublication(nil, p))
		}
	}
}

// epochOf returns the value of the first "epoch" of a reply.
func epochOf(reply []byte) string {
	_, rest, _ := bytes.Cut(reply, []byte(`"epoch":"`))
	epoch, _, _ := bytes.Cut(rest, []byte(`"`))
	return string(epoch)
}
