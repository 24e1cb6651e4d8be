package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/websocket"
)

// runConnectGateway is duplex connect --channel: a client of the Duplex
// gateway that subscribes to channels, prints their publications and
// publishes the lines of stdin.
func runConnectGateway(cmd *cobra.Command, rawURL string, f *connectFlags) error {
	d, err := f.dial.dialer(rawURL)
	if err != nil {
		return err
	}
	var since *gwPosition
	if f.since != "" {
		if since, err = parseSince(f.since); err != nil {
			return err
		}
	}
	gatewayPath(d.url)
	if !slices.Contains(d.subprotocols, gatewaySubprotocol) {
		d.subprotocols = append(slices.Clone(d.subprotocols), gatewaySubprotocol)
	}
	ctx := cmd.Context()
	o, err := f.open(cmd, d)
	if err != nil {
		return err
	}
	defer o.release()
	conn := o.session.conn
	defer conn.CloseNow()
	if conn.Subprotocol() != gatewaySubprotocol {
		conn.Close(websocket.StatusNormalClosure, "")
		return errNotGateway
	}

	g := &gwSession{
		session:    o.session,
		channels:   f.channels,
		jsonOut:    f.json,
		once:       f.once,
		pending:    make(map[uint64]gwPending),
		subscribed: make(map[string]bool),
		replied:    make(chan struct{}, 1),
		gotPub:     make(chan struct{}),
	}
	g.onMessage = g.received

	var lines *lineInput
	if !f.once { // --once reads no stdin: it only prints
		var stopInput func()
		lines, stopInput, err = g.startInput(o.stdin, o.inFile, o.outFile)
		if err != nil {
			return err
		}
		defer stopInput()
	}
	if g.interactive {
		g.banner(d.url.String(), o.resp)
	}
	go g.readLoop()
	defer func() {
		conn.CloseNow() // when a failed write ended the session, the reader may still run
		<-g.readDone
	}()
	if done, err := g.start(ctx, f.token, since); done {
		return err
	}
	if f.once {
		return g.awaitPublication(ctx)
	}
	if g.interactive {
		g.con.printf("type JSON or text and Enter to publish to %s; /help lists the commands; Ctrl-D closes", g.channels[0])
	}
	return g.converse(ctx, lines, f.waitGiven, f.wait)
}

// gwSession is a connection of duplex connect to the gateway. Its reader
// (session.readLoop, calling received) handles the replies and pushes; the
// main goroutine sends commands.
type gwSession struct {
	*session
	channels []string // --channel; stdin publishes to the first
	jsonOut  bool
	once     bool

	mu         sync.Mutex
	nextID     uint64
	pending    map[uint64]gwPending // commands awaiting their reply
	subscribed map[string]bool
	replied    chan struct{} // a reply came

	// For the reader only.
	printedOne bool          // --once: a publication was printed
	gotPub     chan struct{} // --once: closed once a publication is printed
}

// gwPending is a command awaiting its reply.
type gwPending struct {
	method, channel string
	done            chan *gwMessage // receives the reply once handled; nil when nobody waits
}

// banner says, in a terminal, what the connection agreed on.
func (g *gwSession) banner(url string, resp *http.Response) {
	agreed := []string{"subprotocol " + g.conn.Subprotocol()}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		agreed = append(agreed, "extensions "+ext)
	}
	g.con.printf("connected to %s (%s)", url, strings.Join(agreed, "; "))
}

// register gives cmds their ids and records them as awaiting their replies.
// With wait, it returns a channel per command that receives its reply.
func (g *gwSession) register(cmds []gwCommand, wait bool) []chan *gwMessage {
	g.mu.Lock()
	defer g.mu.Unlock()
	var replies []chan *gwMessage
	for i := range cmds {
		g.nextID++
		cmds[i].ID = g.nextID
		p := gwPending{method: cmds[i].Method, channel: cmds[i].Channel}
		if wait {
			p.done = make(chan *gwMessage, 1)
			replies = append(replies, p.done)
		}
		g.pending[cmds[i].ID] = p
	}
	return replies
}

// send sends cmds as one message. It reports whether the session is over,
// and how, as session.send does.
func (g *gwSession) send(ctx context.Context, cmds []gwCommand) (done bool, err error) {
	p := encodeCommands(cmds...)
	if g.trace != nil {
		g.traceMessage(">>", websocket.MessageText, p, wireMessage{}, false)
	}
	return g.write(ctx, websocket.MessageText, p)
}

// start connects and subscribes, with one message, and waits for the
// replies. A refusal ends the session.
func (g *gwSession) start(ctx context.Context, token string, since *gwPosition) (done bool, err error) {
	cmds := []gwCommand{{Method: "connect", Token: token, Name: gatewayClientName}}
	for _, ch := range g.channels {
		cmds = append(cmds, gwCommand{Method: "subscribe", Channel: ch, Since: since})
	}
	replies := g.register(cmds, true)
	if done, err := g.send(ctx, cmds); done {
		return true, err
	}
	for i, reply := range replies {
		select {
		case m := <-reply:
			if m.Error == nil {
				continue
			}
			what := "connect"
			if i > 0 {
				what = "subscribe to " + cmds[i].Channel
			}
			if err := g.close(websocket.StatusNormalClosure, ""); err != nil && g.interactive {
				g.con.printf("closing: %v", err)
			}
			return true, fmt.Errorf("%s: %v", what, m.Error)
		case <-g.readDone:
			return true, g.ended()
		case <-ctx.Done():
			return true, g.close(websocket.StatusNormalClosure, "")
		}
	}
	return false, nil
}

// awaitPublication is --once: it waits for a publication to be printed,
// then closes.
func (g *gwSession) awaitPublication(ctx context.Context) error {
	select {
	case <-g.gotPub:
		return g.close(websocket.StatusNormalClosure, "")
	case <-g.readDone:
		return g.ended()
	case <-ctx.Done():
		return g.close(websocket.StatusNormalClosure, "")
	}
}

// converse publishes the lines of in, or carries out the commands typed at
// the prompt, until the connection ends or ctx does. When stdin ends in
// pipe mode, the session goes on printing publications, unless
// lingerAfterInput: then it waits for the replies to its publications and
// closes once no message has come for wait.
func (g *gwSession) converse(ctx context.Context, in *lineInput, lingerAfterInput bool, wait time.Duration) error {
	lines := in.lines
	for {
		select {
		case <-g.readDone:
			return g.ended()
		case <-ctx.Done():
			return g.close(websocket.StatusNormalClosure, "")
		case line, ok := <-lines:
			if !ok {
				if g.interactive {
					return g.close(websocket.StatusNormalClosure, "")
				}
				if in.err != io.EOF {
					g.con.printf("reading stdin: %v", in.err)
				}
				if !lingerAfterInput {
					lines = nil // keep printing publications
					continue
				}
				if done, err := g.awaitReplies(ctx); done {
					return err
				}
				return g.linger(ctx, wait)
			}
			var done bool
			var err error
			switch {
			case g.interactive:
				done, err = g.command(ctx, line)
			case strings.TrimSpace(line) != "":
				done, err = g.publish(ctx, g.channels[0], jsonData(line))
			}
			if done {
				return err
			}
		}
	}
}

// awaitReplies waits until every command sent has its reply.
func (g *gwSession) awaitReplies(ctx context.Context) (done bool, err error) {
	for {
		g.mu.Lock()
		n := len(g.pending)
		g.mu.Unlock()
		if n == 0 {
			return false, nil
		}
		select {
		case <-g.replied:
		case <-g.readDone:
			return true, g.ended()
		case <-ctx.Done():
			return true, g.close(websocket.StatusNormalClosure, "")
		}
	}
}

// publish publishes data to channel; the reader reports a failure.
func (g *gwSession) publish(ctx context.Context, channel string, data json.RawMessage) (done bool, err error) {
	cmds := []gwCommand{{Method: "publish", Channel: channel, Data: data}}
	g.register(cmds, false)
	return g.send(ctx, cmds)
}

// command carries out a line typed at the prompt. It reports whether the
// session is over, and how it ended.
func (g *gwSession) command(ctx context.Context, line string) (done bool, err error) {
	switch {
	case strings.TrimSpace(line) == "":
		return false, nil
	case strings.HasPrefix(line, "//"):
		return g.publish(ctx, g.channels[0], jsonData(line[1:]))
	case !strings.HasPrefix(line, "/"):
		return g.publish(ctx, g.channels[0], jsonData(line))
	}
	name, arg, _ := strings.Cut(line[1:], " ")
	arg = strings.TrimSpace(arg)
	switch name {
	case "publish":
		channel, data, _ := strings.Cut(arg, " ")
		if channel == "" || strings.TrimSpace(data) == "" {
			g.con.printf("/publish <channel> <data>: a channel and the data to publish")
			return false, nil
		}
		return g.publish(ctx, channel, jsonData(strings.TrimSpace(data)))
	case "ping", "close":
		return g.session.command(ctx, line)
	case "help":
		g.con.printf("a line publishes to %s | /publish <channel> <data> | /ping | /close [code] [reason] | "+
			"//text publishes /text | Ctrl-D closes", g.channels[0])
	default:
		g.con.printf("unknown command /%s: /help lists them; //%s publishes the line", name, name)
	}
	return false, nil
}

// received handles a message from the gateway: its replies and pushes, a
// line each.
func (g *gwSession) received(typ websocket.MessageType, p []byte) {
	if g.trace != nil {
		wire, ok := g.trace.nextReceived()
		g.traceMessage("<<", typ, p, wire, ok)
	}
	if typ != websocket.MessageText {
		g.con.printf("a binary message of %d B, which the gateway's protocol does not have", len(p))
		return
	}
	eachLine(p, g.line)
}

// traceMessage sums up a message for --trace, then gives its lines, which
// show nowhere else.
func (g *gwSession) traceMessage(arrow string, typ websocket.MessageType, p []byte, wire wireMessage, wireKnown bool) {
	g.con.printf("%s message: %s", arrow, describeMessage(typ, p, wire, wireKnown, false))
	if typ == websocket.MessageText {
		eachLine(p, func(line []byte) { g.con.printf("%s   %s", arrow, clip(redactToken(line))) })
	}
}

// tokenField matches the token of a command, a JSON string.
var tokenField = regexp.MustCompile(`"token":"(?:[^"\\]|\\.)*"`)

// redactToken hides the value of a command's token, as the trace hides
// the Authorization header's.
func redactToken(line []byte) []byte {
	return tokenField.ReplaceAllFunc(line, func(m []byte) []byte {
		return fmt.Appendf(nil, `"token":"[%d bytes hidden]"`, len(m)-len(`"token":""`))
	})
}

// line handles a reply or a push.
func (g *gwSession) line(line []byte) {
	var m gwMessage
	if err := json.Unmarshal(line, &m); err != nil {
		g.con.printf("not a line of the protocol: %s", clip(line))
		return
	}
	if m.Push != "" {
		g.push(line, &m)
		return
	}
	g.mu.Lock()
	p, ok := g.pending[m.ID]
	delete(g.pending, m.ID)
	g.mu.Unlock()
	if !ok {
		g.con.printf("a reply to no command sent: %s", clip(line))
		return
	}
	switch p.method {
	case "connect":
		g.connected(&m)
	case "subscribe":
		g.subscribedTo(p.channel, &m)
	case "publish":
		g.published(p.channel, &m)
	}
	if p.done != nil {
		p.done <- &m
	}
	select {
	case g.replied <- struct{}{}:
	default:
	}
}

// connected reports the reply to connect, in a terminal.
func (g *gwSession) connected(m *gwMessage) {
	if m.Error != nil || !g.interactive {
		return
	}
	var r gwConnectResult
	json.Unmarshal(m.Result, &r)
	who := "anonymously"
	if r.User != "" {
		who = "as user " + r.User
	}
	line := fmt.Sprintf("connected %s (client %s", who, r.Client)
	if r.Version != "" {
		line += ", gateway " + r.Version
	}
	if r.Expires > 0 {
		line += ", token expires " + time.Unix(r.Expires, 0).Format(time.DateTime)
	}
	g.con.printf("%s)", line)
}

// subscribedTo reports the reply to subscribe and prints the publications
// it recovered, before any live one.
func (g *gwSession) subscribedTo(channel string, m *gwMessage) {
	if m.Error != nil {
		return
	}
	g.mu.Lock()
	g.subscribed[channel] = true
	g.mu.Unlock()
	var r gwSubscribeResult
	json.Unmarshal(m.Result, &r)
	if g.interactive {
		if r.Recoverable {
			g.con.printf("subscribed to %s at offset %d (epoch %s)", channel, r.Offset, r.Epoch)
		} else {
			g.con.printf("subscribed to %s (no history)", channel)
		}
	}
	for _, pub := range r.Publications {
		g.line(pub)
	}
	if r.Recovered == nil {
		return
	}
	if *r.Recovered {
		if g.interactive {
			g.con.printf("recovered %d publications of %s", len(r.Publications), channel)
		}
		return
	}
	g.con.printf("%s: could not recover every publication since the position asked for (%d recovered): "+
		"the history no longer holds them or the epoch changed (now offset %d, epoch %s)",
		channel, len(r.Publications), r.Offset, r.Epoch)
}

// published reports the reply to publish: a failure always; a success in a
// terminal, when the channel is not one subscribed to, whose publications
// show anyway.
func (g *gwSession) published(channel string, m *gwMessage) {
	if m.Error != nil {
		g.con.printf("publish to %s failed: %v", channel, m.Error)
		return
	}
	g.mu.Lock()
	subscribed := g.subscribed[channel]
	g.mu.Unlock()
	if !g.interactive || subscribed {
		return
	}
	var r gwPublishResult
	json.Unmarshal(m.Result, &r)
	if r.Epoch != "" {
		g.con.printf("published to %s at offset %d", channel, r.Offset)
	} else {
		g.con.printf("published to %s", channel)
	}
}

// push prints a push: in pipe mode a publication's data (or with --json
// the whole line) on stdout; in a terminal a line for each.
func (g *gwSession) push(line []byte, m *gwMessage) {
	switch m.Push {
	case "pub":
		if g.once {
			if g.printedOne {
				return
			}
			g.printedOne = true
			defer close(g.gotPub)
		}
		switch {
		case g.jsonOut:
			g.con.data(line)
		case g.interactive:
			g.con.printf("< %s", describePub(m))
		default:
			g.con.data(m.Data)
		}
	case "join", "leave":
		switch {
		case g.jsonOut:
			g.con.data(line)
		case g.interactive:
			sign, verb := "+", "joined"
			if m.Push == "leave" {
				sign, verb = "-", "left"
			}
			g.con.printf("%s %s: %s %s", sign, m.Channel, describeClient(m.Info), verb)
		}
	case "gap":
		if g.jsonOut {
			g.con.data(line)
		}
		g.con.printf("! %s: the gateway dropped publications %d to %d (this client read too slowly)", m.Channel, m.From, m.To)
	case "unsubscribe":
		g.mu.Lock()
		delete(g.subscribed, m.Channel)
		g.mu.Unlock()
		if g.jsonOut {
			g.con.data(line)
		}
		g.con.printf("! %s: unsubscribed by the gateway: %d %q", m.Channel, m.Code, m.Reason)
	default:
		if g.jsonOut {
			g.con.data(line)
		} else if g.interactive {
			g.con.printf("< %s", clip(line))
		}
	}
}

// describePub formats a publication for a terminal: channel, offset,
// publisher and data.
func describePub(m *gwMessage) string {
	var b strings.Builder
	b.WriteString(m.Channel)
	if m.Epoch != "" {
		fmt.Fprintf(&b, " #%d", m.Offset)
	}
	if m.Info == nil {
		b.WriteString(" from the API")
	} else {
		b.WriteString(" from " + describeClient(m.Info))
	}
	b.WriteString(": ")
	b.WriteString(clip(m.Data))
	return b.String()
}

// describeClient names the client of a publication or event.
func describeClient(info *gwClientInfo) string {
	switch {
	case info == nil:
		return "a client"
	case info.User == "":
		return "anonymous " + info.Client
	}
	return info.User
}

// clip returns JSON text for a terminal, up to maxShownBytes.
func clip(p []byte) string {
	if len(p) <= maxShownBytes {
		return string(p)
	}
	shown := strings.ToValidUTF8(string(p[:maxShownBytes]), "") // a cut rune at the end
	return fmt.Sprintf("%s … (%d more bytes)", shown, len(p)-maxShownBytes)
}
