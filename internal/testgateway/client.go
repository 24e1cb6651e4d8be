package testgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Subprotocol is the gateway's protocol.
const Subprotocol = "duplex.v1.json"

// DialOptions configures Dial.
type DialOptions struct {
	// Token is the connection token; empty connects anonymously.
	Token string
	// LocalIP is the loopback source address to dial from (127.0.0.x):
	// spreading many clients over several keeps each address's ephemeral
	// ports from running out. Default: the system's choice.
	LocalIP net.IP
	// OnPush, when set, receives every push as its raw JSON line (valid
	// only during the call, from the client's reading goroutine) and the
	// client records nothing: for load generators, which count what they
	// need. Default: pushes are recorded per channel (Events).
	OnPush func(line []byte)
}

// ClientInfo names a connection in presence and publications.
type ClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// Event is a push a client received (or a publication its subscribe reply
// recovered, with Recovered set), in the order it arrived.
type Event struct {
	Push      string          `json:"push"` // pub, gap, join, leave, presence_count, unsubscribe
	Channel   string          `json:"channel"`
	Offset    uint64          `json:"offset"` // pub
	Epoch     string          `json:"epoch"`  // pub, gap
	Data      json.RawMessage `json:"data"`   // pub
	Info      *ClientInfo     `json:"info"`   // pub (a client's), join, leave
	From      uint64          `json:"from"`   // gap
	To        uint64          `json:"to"`     // gap
	Reset     bool            `json:"reset"`  // gap
	Clients   int             `json:"clients"`
	Users     int             `json:"users"`
	Code      int             `json:"code"` // unsubscribe
	Reason    string          `json:"reason"`
	Recovered bool            `json:"-"`
}

// Error is an error reply to a command.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("gateway error %d: %s", e.Code, e.Message) }

// ErrClosed is returned by calls on a client whose connection ended.
var ErrClosed = errors.New("testgateway: connection closed")

// Client is one connection to a node, connected (the connect command
// succeeded). Its methods are safe for concurrent use.
type Client struct {
	// ID and User are the connect result's client and user.
	ID, User string

	conn   *websocket.Conn
	onPush func([]byte)

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]pendingCall
	events  map[string][]Event
	done    chan struct{} // closed when the reading goroutine ends
	readErr error         // why, once done is closed
}

type pendingCall struct {
	reply     chan reply
	subscribe string // the channel, for a subscribe: its recovered publications are recorded
}

type reply struct {
	result json.RawMessage
	err    *Error
}

// Dial connects to a node's WebSocket URL and sends connect. A connection
// the server refuses or closes during connect is an error that
// websocket.CloseStatus reads.
func Dial(ctx context.Context, url string, opts *DialOptions) (*Client, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	do := &websocket.DialOptions{Subprotocols: []string{Subprotocol}}
	if opts.LocalIP != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: opts.LocalIP}}
		do.NetDialContext = d.DialContext
	}
	conn, _, err := websocket.Dial(ctx, url, do)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(64 << 20)
	c := &Client{
		conn:    conn,
		onPush:  opts.OnPush,
		pending: make(map[uint64]pendingCall),
		events:  make(map[string][]Event),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	var res struct {
		Client string `json:"client"`
		User   string `json:"user"`
	}
	params := map[string]any{"name": "testgateway"}
	if opts.Token != "" {
		params["token"] = opts.Token
	}
	if err := c.Call(ctx, "connect", params, &res); err != nil {
		c.Close()
		if errors.Is(err, ErrClosed) {
			return nil, c.readErr
		}
		return nil, err
	}
	c.ID, c.User = res.Client, res.User
	return c, nil
}

// Call sends a command and waits for its reply, decoding the result into
// result when it is not nil. An error reply is an *Error.
func (c *Client) Call(ctx context.Context, method string, params map[string]any, result any) error {
	raw, err := c.call(ctx, method, params)
	if err != nil || result == nil {
		return err
	}
	return json.Unmarshal(raw, result)
}

func (c *Client) call(ctx context.Context, method string, params map[string]any) (json.RawMessage, error) {
	cmd := make(map[string]any, len(params)+2)
	for k, v := range params {
		cmd[k] = v
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	c.nextID++
	id := c.nextID
	p := pendingCall{reply: ch}
	if method == "subscribe" {
		p.subscribe, _ = params["channel"].(string)
	}
	c.pending[id] = p
	c.mu.Unlock()
	cmd["id"], cmd["method"] = id, method
	data, err := json.Marshal(cmd)
	if err == nil {
		err = c.conn.Write(ctx, websocket.MessageText, data)
	}
	if err != nil {
		c.forget(id)
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.result, nil
	case <-c.done:
		c.forget(id)
		return nil, ErrClosed
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("testgateway: %s: %w", method, ctx.Err())
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// SubscribeResult is the result of subscribe.
type SubscribeResult struct {
	Epoch        string            `json:"epoch"`
	Offset       uint64            `json:"offset"`
	Recoverable  bool              `json:"recoverable"`
	Recovered    *bool             `json:"recovered"`
	Publications []json.RawMessage `json:"publications"`
}

// Subscribe subscribes to channel, recovering from since when it is not
// nil. The recovered publications are recorded before any live one.
func (c *Client) Subscribe(ctx context.Context, channel string, since *Position) (SubscribeResult, error) {
	params := map[string]any{"channel": channel}
	if since != nil {
		params["since"] = since
	}
	var res SubscribeResult
	err := c.Call(ctx, "subscribe", params, &res)
	return res, err
}

// Publish publishes data to channel from this client.
func (c *Client) Publish(ctx context.Context, channel string, data any) (Position, error) {
	var pos Position
	err := c.Call(ctx, "publish", map[string]any{"channel": channel, "data": data}, &pos)
	return pos, err
}

// Events returns a copy of what the client recorded of channel.
func (c *Client) Events(channel string) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events[channel]...)
}

// Wait polls cond with what the client recorded of channel until it holds,
// the connection ends (then cond has one last look) or ctx ends. cond runs
// under the client's lock: it must not keep the slice or call the client.
func (c *Client) Wait(ctx context.Context, channel string, cond func([]Event) bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		c.mu.Lock()
		ok := cond(c.events[channel])
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-t.C:
		case <-c.done:
			c.mu.Lock()
			ok := cond(c.events[channel])
			c.mu.Unlock()
			if ok {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended, once Done is closed: websocket.CloseStatus
// reads the server's close code from it.
func (c *Client) Err() error {
	<-c.done
	return c.readErr
}

// Close closes the connection at once and waits for the reading goroutine.
func (c *Client) Close() {
	c.conn.CloseNow()
	<-c.done
}

func (c *Client) readLoop() {
	var err error
	defer func() {
		c.mu.Lock()
		c.readErr = err
		close(c.done)
		c.mu.Unlock()
	}()
	for {
		var data []byte
		_, data, err = c.conn.Read(context.Background())
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(data, []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			if bytes.HasPrefix(line, []byte(`{"push":`)) {
				c.push(line)
				continue
			}
			if perr := c.reply(line); perr != nil {
				err = perr
				c.conn.CloseNow()
				return
			}
		}
	}
}

func (c *Client) push(line []byte) {
	if c.onPush != nil {
		c.onPush(line)
		return
	}
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		e = Event{Push: "malformed", Data: append(json.RawMessage(nil), line...)}
	}
	c.mu.Lock()
	c.events[e.Channel] = append(c.events[e.Channel], e)
	c.mu.Unlock()
}

func (c *Client) reply(line []byte) error {
	var r struct {
		ID     uint64          `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(line, &r); err != nil || r.ID == 0 {
		return fmt.Errorf("testgateway: the server sent %.200q", line)
	}
	c.mu.Lock()
	p, ok := c.pending[r.ID]
	delete(c.pending, r.ID)
	if ok && p.subscribe != "" && r.Error == nil && c.onPush == nil {
		// Recovered publications come before any live one of the channel.
		var res SubscribeResult
		if json.Unmarshal(r.Result, &res) == nil {
			for _, raw := range res.Publications {
				var e Event
				json.Unmarshal(raw, &e)
				e.Push, e.Channel, e.Recovered = "pub", p.subscribe, true
				c.events[p.subscribe] = append(c.events[p.subscribe], e)
			}
		}
	}
	c.mu.Unlock()
	if ok {
		p.reply <- reply{result: r.Result, err: r.Error}
	}
	return nil
}
