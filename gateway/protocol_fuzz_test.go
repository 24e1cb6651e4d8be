package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
	"github.com/duplexws/duplex/websocket/wstest"
)

// fuzzCommands are seeds of every command of PROTOCOL.md and malformed
// ones; testdata/fuzz/FuzzCommandDecode and FuzzSessionMessages hold them
// too, one per file, and batched. The tokens are HS256 with testSecret
// and no expiry, so that they verify whenever the corpus is replayed.
var fuzzCommands = []string{
	`{"id":1,"method":"connect","name":"fuzz"}`,
	`{"id":1,"method":"connect","token":"` + fuzzUserToken + `"}`,
	`{"id":2,"method":"refresh","token":"` + fuzzUserToken + `"}`,
	`{"id":3,"method":"subscribe","channel":"chat:a"}`,
	`{"id":4,"method":"subscribe","channel":"chat:a","since":{"offset":0,"epoch":""}}`,
	`{"id":5,"method":"subscribe","channel":"private:p","token":"` + fuzzChannelToken + `"}`,
	`{"id":6,"method":"publish","channel":"chat:a","data":{"text":"hi","n":[1,2.5,null,true]}}`,
	`{"id":7,"method":"presence","channel":"chat:a"}`,
	`{"id":8,"method":"presence_stats","channel":"chat:a"}`,
	`{"id":9,"method":"history","channel":"chat:a","limit":10,"since":{"offset":1,"epoch":"AAAA"},"reverse":true}`,
	`{"id":10,"method":"unsubscribe","channel":"chat:a"}`,
	`{"id":11,"method":"ping"}`,
	`{"id":12,"method":"nope"}`,
	// Malformed: each closes the connection with 4500, or is refused.
	`{"id":0,"method":"ping"}`,
	`{"method":"ping"}`,
	`{"id":-1,"method":"ping"}`,
	`{"id":1.5,"method":"ping"}`,
	`{"id":"1","method":"ping"}`,
	`{"id":18446744073709551616,"method":"ping"}`,
	`{"id":1,"method":"publish","channel":"chat:a","data":}`,
	`{"id":1,"method":"history","channel":"chat:a","limit":"ten"}`,
	`{"id":1,"method":"history","channel":"chat:a","limit":-1}`,
	`{"id":1,"method":"subscribe","channel":"chat:a","since":[]}`,
	`{"id":1,"method":"subscribe","channel":"chat:a b"}`,
	`{"id":1,"method":"subscribe","channel":"chat:\u00e9\"\\"}`,
	`{"id":1,"method":"subscribe","channel":"` + strings.Repeat("x", 300) + `"}`,
	`{"id":1,"method":"publish","channel":"chat:a","data":[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]}`,
	`{"id":1,"id":2,"method":"ping","unknown":{"a":1}}`,
	`{"id":1`,
	`[1]`,
	`null`,
	`"ping"`,
}

const (
	// fuzzUserToken is {"sub":"alice"}, HS256 with testSecret.
	fuzzUserToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.vv-i5cRwGqC4k_lGYuoCdpHlb9jUXGKjtno76n3lvv4"
	// fuzzChannelToken is {"sub":"alice","channel":"private:p"}.
	fuzzChannelToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImNoYW5uZWwiOiJwcml2YXRlOnAifQ.iLO_AahV_CKcHylX4X10OpJEDhL_bhitwr6ES5Sx6ms"
)

// addCommandSeeds adds each seed command alone and the commands of
// PROTOCOL.md batched in one message, as a client may send them.
func addCommandSeeds(f *testing.F) {
	for _, c := range fuzzCommands {
		f.Add([]byte(c))
	}
	f.Add([]byte(strings.Join(fuzzCommands[1:13], "\n")))
	f.Add([]byte(fuzzCommands[0] + "\n\n  \n" + fuzzCommands[3] + "\r\n" + fuzzCommands[6] + "\n"))
}

// decodeLines decodes a message as the session does (session.go,
// handleMessage): one command per line, blank lines skipped. It returns
// the commands and their lines up to the first line that is not a command
// (bad JSON, or no id), and that line: the session closes with 4500 there.
func decodeLines(msg []byte) (cmds []command, lines [][]byte, bad []byte) {
	for line := range bytes.SplitSeq(msg, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var c command
		if err := json.Unmarshal(line, &c); err != nil || c.ID == 0 {
			return cmds, lines, line
		}
		cmds = append(cmds, c)
		lines = append(lines, line)
	}
	return cmds, lines, nil
}

// FuzzCommandDecode decodes a client message as lines of commands and
// checks what the rest of the gateway relies on: a decoded command encodes
// back to one line that decodes to the same command (so a batch of them
// can be split and joined again); its strings are valid UTF-8; its data,
// when present, is JSON that compactJSON accepts; and a publication of it
// to a valid channel, spelled by appendPublication without escaping, is
// JSON holding the same channel and data.
func FuzzCommandDecode(f *testing.F) {
	addCommandSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		cmds, _, _ := decodeLines(msg)
		var batch [][]byte
		for _, c := range cmds {
			enc, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("a decoded command does not encode: %v (%+v)", err, c)
			}
			if bytes.ContainsAny(enc, "\r\n") {
				t.Fatalf("a command encodes to more than one line: %q", enc)
			}
			var again command
			if err := json.Unmarshal(enc, &again); err != nil {
				t.Fatalf("an encoded command does not decode: %v (%s)", err, enc)
			}
			if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
				t.Fatalf("decode/encode is not stable:\n%s\n%s", enc, enc2)
			}
			batch = append(batch, enc)
			for name, s := range map[string]string{"method": c.Method, "token": c.Token, "name": c.Name, "channel": c.Channel} {
				if !utf8.ValidString(s) {
					t.Fatalf("%s decoded to invalid UTF-8: %q", name, s)
				}
			}
			if c.Since != nil && !utf8.ValidString(c.Since.Epoch) {
				t.Fatalf("since.epoch decoded to invalid UTF-8: %q", c.Since.Epoch)
			}
			if c.Data == nil {
				continue
			}
			data, err := compactJSON(c.Data)
			if !utf8.Valid(c.Data) {
				// encoding/json passes raw bytes through unchecked;
				// compactJSON is what keeps them off text frames.
				if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
					t.Fatalf("decoded data %q of invalid UTF-8 got %v, want a bad request", c.Data, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("decoded data %q is refused by compactJSON: %v", c.Data, err)
			}
			if !validChannel(c.Channel) {
				continue
			}
			push := appendPublication(nil, &broker.Publication{
				Channel:  c.Channel,
				Position: broker.Position{Offset: 7, Epoch: "p3bX2q-_"},
				Data:     data,
				Info:     &broker.ClientInfo{Client: "c", User: c.Name},
			})
			var got struct {
				Push    string
				Channel string
				Data    json.RawMessage
			}
			if err := json.Unmarshal(push, &got); err != nil || bytes.ContainsAny(push, "\r\n") {
				t.Fatalf("publication push is not one line of JSON (%v): %s", err, push)
			}
			if got.Push != "pub" || got.Channel != c.Channel || !bytes.Equal(got.Data, data) {
				t.Fatalf("publication push %s does not hold channel %q and data %s", push, c.Channel, data)
			}
		}
		// The encoded commands, batched, decode to the same commands.
		again, _, bad := decodeLines(bytes.Join(batch, []byte{'\n'}))
		if bad != nil || len(again) != len(cmds) {
			t.Fatalf("the batch of %d encoded commands decodes to %d (bad line: %q)", len(cmds), len(again), bad)
		}
		for i := range again {
			a, _ := json.Marshal(again[i])
			if !bytes.Equal(a, batch[i]) {
				t.Fatalf("command %d changed in a batch: %s, want %s", i, a, batch[i])
			}
		}
	})
}

// The error codes and close codes of PROTOCOL.md.
var (
	protocolErrorCodes = []int{100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114}
	protocolPushes     = []string{"pub", "join", "leave", "gap", "presence_count", "unsubscribe"}
)

// fuzzSentinelID is the id of the ping each exchange ends with; a reply
// to it says every reply before it has come.
const fuzzSentinelID = 1<<64 - 1

// FuzzSessionMessages sends a message to a real gateway twice, over two
// connections to two servers: once whole, and once split into its lines,
// one message each, as a client may batch or not. Each command must get
// exactly one reply, in order, with its id, either a result or an error
// of PROTOCOL.md; the connection closes only with a close code a command
// can cause (4500 for a line that is not a command, after every reply
// before it; 4501; 4005), after some or all of the replies before; pushes are of the documented kinds;
// and both ways of sending get the same replies and the same close.
func FuzzSessionMessages(f *testing.F) {
	addCommandSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		// The WebSocket layer refuses invalid UTF-8 (1007) and messages
		// over the limit (1009) before the decoder sees them.
		msg = bytes.ToValidUTF8(msg, []byte("\uFFFD"))
		if len(msg) > 32<<10 {
			return
		}
		cmds, lines, bad := decodeLines(msg)
		if bad != nil {
			lines = append(lines, bad)
		}
		whole := exchange(t, [][]byte{msg})
		split := exchange(t, lines)
		whole.check(t, "whole", cmds, bad != nil)
		split.check(t, "split", cmds, bad != nil)
		if n := min(len(whole.replies), len(split.replies)); !slices.Equal(whole.replies[:n], split.replies[:n]) {
			t.Fatalf("replies differ:\nwhole %+v\nsplit %+v\ncommands: %q", whole.replies, split.replies, msg)
		}
		if whole.closed != split.closed {
			t.Fatalf("closed with %d whole, %d split\ncommands: %q", whole.closed, split.closed, msg)
		}
		if whole.closed == -1 && len(whole.replies) != len(split.replies) {
			t.Fatalf("%d replies whole, %d split", len(whole.replies), len(split.replies))
		}
	})
}

// fuzzReply is what the fuzzers compare of a reply: results hold random
// ids and epochs.
type fuzzReply struct {
	id     uint64
	result bool
	code   int
}

type exchangeResult struct {
	replies []fuzzReply
	closed  websocket.StatusCode // -1 while open
	sawEnd  bool                 // the sentinel's reply came
}

// commandCloses are the close codes of PROTOCOL.md that a command can
// cause: a line that is not a command, a connect whose token does not
// verify, and the command rate.
var commandCloses = []websocket.StatusCode{CloseBadRequest, CloseUnauthorized, CloseTooManyRequests}

func (r *exchangeResult) check(t *testing.T, how string, cmds []command, bad bool) {
	t.Helper()
	switch {
	case r.closed == -1:
		if bad || !r.sawEnd || len(r.replies) != len(cmds) {
			t.Fatalf("%s: %d commands, bad line %v: %d replies, end seen %v, still open", how, len(cmds), bad, len(r.replies), r.sawEnd)
		}
	case !slices.Contains(commandCloses, r.closed):
		t.Fatalf("%s: closed with %d, not a code a command causes", how, r.closed)
	case r.closed == CloseBadRequest && !bad:
		t.Fatalf("%s: closed with %d, but every line is a command", how, r.closed)
	case r.closed == CloseBadRequest && len(r.replies) != len(cmds):
		t.Fatalf("%s: closed with %d after %d replies to the %d commands before the bad line", how, r.closed, len(r.replies), len(cmds))
	case len(r.replies) > len(cmds):
		t.Fatalf("%s: %d replies to %d commands", how, len(r.replies), len(cmds))
	}
	connected := false
	for i, rep := range r.replies {
		c := &cmds[i]
		if rep.id != c.ID {
			t.Fatalf("%s: reply %d has id %d, want %d", how, i, rep.id, c.ID)
		}
		if !rep.result && !slices.Contains(protocolErrorCodes, rep.code) {
			t.Fatalf("%s: reply %d: error code %d is not in PROTOCOL.md", how, i, rep.code)
		}
		if want, ok := documentedReply(c, connected); ok && rep.code != want {
			t.Fatalf("%s: reply %d to %+v: code %d, want %d (0: a result)", how, i, c, rep.code, want)
		}
		if c.Method != "connect" && connected && rep.result && !acceptable(c) {
			t.Fatalf("%s: reply %d: a result to %+v, which is outside the documented limits", how, i, c)
		}
		if c.Method == "connect" && rep.result {
			connected = true
		}
	}
}

// channelMethods are the commands that name a channel.
var channelMethods = []string{"subscribe", "unsubscribe", "publish", "presence", "presence_stats", "history"}

// documentedReply returns the reply PROTOCOL.md fixes for c whatever the
// server's state (0 for a result), if it fixes one: 112 to a second
// connect, 101 to anything before connect, 104 to an unknown method, a
// result to ping.
func documentedReply(c *command, connected bool) (int, bool) {
	switch {
	case c.Method == "connect":
		if connected {
			return ErrAlreadyConnected.Code, true
		}
		return 0, false
	case !connected:
		return ErrNotConnected.Code, true
	case c.Method == "ping":
		return 0, true
	case c.Method != "refresh" && !slices.Contains(channelMethods, c.Method):
		return ErrMethodNotFound.Code, true
	}
	return 0, false
}

// acceptable reports whether c is within the documented limits, so that it
// may get a result: a channel name of 1 to 255 printable ASCII bytes, no
// negative history limit.
func acceptable(c *command) bool {
	if slices.Contains(channelMethods, c.Method) && !validChannel(c.Channel) {
		return false
	}
	return c.Method != "history" || c.Limit == nil || *c.Limit >= 0
}

// exchange starts a gateway, sends msgs over one connection followed by
// the sentinel ping, and collects the replies until the sentinel's reply
// or the close.
func exchange(t *testing.T, msgs [][]byte) *exchangeResult {
	srv, err := New(Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{Algorithm: "HS256", Secret: testSecret, AllowAnonymous: true},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: Limits{
			// A command rate that cannot refill within one exchange, so
			// that the limit bites at the same command however the
			// commands are sent.
			MessageRate:  1e-9,
			MessageBurst: 1000,
		},
		DrainWindow: time.Millisecond,
		Version:     "fuzz",
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := newPipeListener()
	hs := &http.Server{Handler: srv.Handler()}
	served := make(chan struct{})
	go func() {
		defer close(served)
		hs.Serve(ln)
	}()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		<-served
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://fuzz/ws", &websocket.DialOptions{
		Subprotocols:   []string{Subprotocol},
		NetDialContext: ln.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)

	// Written from a goroutine of its own: a server that stops reading
	// while its replies wait must not stall the reader below.
	written := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := conn.Write(ctx, websocket.MessageText, m); err != nil {
				written <- err
				return
			}
		}
		written <- conn.Write(ctx, websocket.MessageText, []byte(`{"id":18446744073709551615,"method":"ping"}`))
	}()
	defer func() { <-written }()

	want := 0 // replies before the sentinel's
	for _, m := range msgs {
		cmds, _, _ := decodeLines(m)
		want += len(cmds)
	}
	res := &exchangeResult{closed: -1}
	for {
		_, p, err := conn.Read(ctx)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("read: %v", err)
			}
			res.closed = ce.Code
			return res
		}
		for line := range bytes.SplitSeq(p, []byte{'\n'}) {
			var m struct {
				ID     *uint64         `json:"id"`
				Push   string          `json:"push"`
				Result json.RawMessage `json:"result"`
				Error  *Error          `json:"error"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("the server sent a line that is not JSON: %q", line)
			}
			switch {
			case m.ID == nil:
				if !slices.Contains(protocolPushes, m.Push) {
					t.Fatalf("push of unknown kind: %s", line)
				}
			case (m.Result == nil) == (m.Error == nil):
				t.Fatalf("a reply with neither or both of result and error: %s", line)
			default:
				res.replies = append(res.replies, fuzzReply{id: *m.ID, result: m.Result != nil, code: errCode(m.Error)})
			}
		}
		// The input may use the sentinel's id too: the replies are counted.
		if len(res.replies) == want+1 && res.replies[want].id == fuzzSentinelID {
			res.replies = res.replies[:want]
			res.sawEnd = true
			return res
		}
	}
}

func errCode(e *Error) int {
	if e == nil {
		return 0
	}
	return e.Code
}

// pipeListener is a net.Listener of in-memory connections
// (wstest.NewConnPair), so that each exchange costs no sockets.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := wstest.NewConnPair()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "fuzz" }
