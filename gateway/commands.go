package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/proxy"
	"github.com/duplexws/duplex/websocket"
)

// duplexProtocol is duplex.v1.json (PROTOCOL.md): lines of JSON commands,
// each with an id its reply carries, and pushes; several lines may share a
// message.
type duplexProtocol struct{}

func (duplexProtocol) index() int { return 0 }

func (duplexProtocol) joinsLines() bool { return true }

func (duplexProtocol) echoes() bool { return true }

// opened does nothing: a duplex client speaks first (connect).
func (duplexProtocol) opened(*session) {}

// closing keeps the close codes of PROTOCOL.md, which are duplex's own.
func (duplexProtocol) closing(code websocket.StatusCode, reason string) (websocket.StatusCode, string, []byte) {
	return code, reason, nil
}

func (duplexProtocol) encodePublication(pub *broker.Publication) []byte {
	return appendPublication(nil, pub)
}

func (duplexProtocol) encodeNotice(n *notice) []byte {
	switch n.kind {
	case noticeGap:
		if n.reset {
			return encodeReset(n.channel, n.epoch, n.to)
		}
		return encodeGap(n.channel, n.epoch, n.from, n.to)
	case noticeJoin:
		return encodePresenceEvent("join", n.channel, n.info)
	case noticeLeave:
		return encodePresenceEvent("leave", n.channel, n.info)
	case noticePresenceCount:
		return encodePresenceCount(n.channel, n.stats)
	case noticeUnsubscribe:
		return encodeUnsubscribePush(n.channel, n.code, n.reason)
	}
	return nil
}

// commandsPerTurn is how many commands of one message handleMessage runs
// before it lets other goroutines run: a message of many commands (200 of
// a command flood fit the default burst) would otherwise keep its
// processor for all of them while other clients' single commands wait. In
// the abuse suite's command flood (100 attackers reconnecting for 10 s),
// the healthy client's p99 went from 27-37 ms to 21-22 ms, three runs of
// each; a message of one command, the usual, never yields.
const commandsPerTurn = 16

// commandPool holds the command values handleMessage decodes into.
var commandPool = sync.Pool{New: func() any { return new(command) }}

// handleMessage handles one message of the client: lines of commands.
func (duplexProtocol) handleMessage(sess *session, text bool, msg []byte) {
	ctx := context.Background()
	if !text {
		sess.close(CloseBadRequest, "binary messages are not part of the protocol", reasonBadRequest)
		return
	}
	// One command value for the message's lines, zeroed for each, from a
	// pool rather than allocated per line: nothing keeps it past handle.
	cmd := commandPool.Get().(*command)
	defer func() {
		*cmd = command{}
		commandPool.Put(cmd)
	}()
	turn := 0 // commands run since the last yield
	for len(msg) > 0 {
		var line []byte
		line, msg, _ = bytes.Cut(msg, []byte{'\n'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if !sess.allowCommand() {
			return
		}
		if turn++; turn > commandsPerTurn {
			runtime.Gosched()
			turn = 1
		}
		// A line that is not a command ends the session, after the
		// replies to the commands before it, as the command rate does.
		*cmd = command{}
		if err := json.Unmarshal(line, cmd); err != nil {
			sess.closeFlushed(CloseBadRequest, "bad request: invalid JSON", reasonBadRequest)
			return
		}
		if cmd.ID == 0 {
			sess.closeFlushed(CloseBadRequest, "bad request: command without id", reasonBadRequest)
			return
		}
		if !sess.awaitRoom() {
			return
		}
		handleCommand(ctx, sess, cmd)
		if sess.isClosing() {
			return
		}
	}
}

// replyTo queues the reply to a command.
func replyTo(sess *session, id uint64, result any, e *Error) {
	sess.queueReply(encodeReply(id, result, e))
}

// handleCommand runs one command and queues its reply.
func handleCommand(ctx context.Context, sess *session, cmd *command) {
	if cmd.Method == "connect" {
		if sess.connected {
			replyTo(sess, cmd.ID, nil, ErrAlreadyConnected)
			return
		}
		creds, refused := sess.connect(ctx, cmd.Token, &proxy.ConnectRequest{Name: cmd.Name, Version: cmd.Version, Data: cmd.Data})
		if refused != nil {
			replyTo(sess, cmd.ID, nil, refused.reply)
			if refused.final {
				sess.closeFlushed(CloseUnauthorized, truncateReason("unauthorized: "+refused.reply.Message), reasonUnauthorized)
			}
			return
		}
		if creds == nil {
			return // closed
		}
		res := connectResult{
			Client:  sess.id,
			User:    creds.User,
			Ping:    int(max(sess.srv.cfg.PingInterval, 0) / time.Second),
			Version: sess.srv.cfg.Version,
			Data:    sess.connectData,
		}
		sess.connectData = nil
		if !creds.ExpiresAt.IsZero() {
			res.Expires = creds.ExpiresAt.Unix()
		}
		if channels := sess.serverSubs; len(channels) > 0 {
			sess.serverSubs = nil
			id := cmd.ID
			sess.serverSubscribe(ctx, channels, cmd.Subs, func(subs map[string]*subscribed) {
				sess.enqueueReplyLocked(encodeConnectReply(id, res, subs))
				for _, s := range subs {
					if s.rest != nil {
						sess.enqueueReplyLocked(duplexProtocol{}.encodeNotice(s.rest))
					}
				}
			})
			return
		}
		replyTo(sess, cmd.ID, res, nil)
		return
	}
	if !sess.connected {
		replyTo(sess, cmd.ID, nil, ErrNotConnected)
		return
	}
	var result any
	var err error
	switch cmd.Method {
	case "refresh":
		var exp time.Time
		if exp, err = sess.refresh(ctx, cmd.Token); err == nil {
			res := refreshResult{}
			if !exp.IsZero() {
				res.Expires = exp.Unix()
			}
			result = res
		}
	case "subscribe":
		// The reply is queued by subscribe, to order it before live
		// publications.
		sess.takeOverServerSub(cmd.Channel)
		id := cmd.ID
		e := sess.subscribe(ctx, subscribeRequest{Channel: cmd.Channel, Token: cmd.Token, Since: cmd.Since, Data: cmd.Data}, func(s *subscribed) {
			if len(s.pubs) > 0 {
				sess.enqueueReplyLocked(encodeReplyWithPublications(id, s.result, s.pubs, s.pubsSize))
			} else {
				sess.enqueueReplyLocked(encodeReply(id, s.result, nil))
			}
			if s.rest != nil {
				sess.enqueueReplyLocked(duplexProtocol{}.encodeNotice(s.rest))
			}
		})
		if e != nil {
			replyTo(sess, cmd.ID, nil, e)
		}
		return
	case "unsubscribe":
		if err = sess.unsubscribe(cmd.Channel); err == nil {
			result = emptyResult{}
		}
	case "publish":
		var pos broker.Position
		if pos, err = sess.publish(ctx, cmd.Channel, cmd.Data); err == nil {
			result = publishResult{Offset: pos.Offset, Epoch: pos.Epoch}
		}
	case "presence", "presence_stats":
		result, err = sess.presence(ctx, cmd.Channel, cmd.Method == "presence_stats")
	case "history":
		result, err = sess.history(ctx, cmd.Channel, cmd.Limit, cmd.Since, cmd.Reverse)
	case "rpc":
		result, err = sess.rpc(ctx, cmd.Params)
	case "ping":
		result = emptyResult{}
	default:
		err = ErrMethodNotFound
	}
	if err != nil {
		replyTo(sess, cmd.ID, nil, asError(err))
		return
	}
	if page, ok := result.(*historyPage); ok {
		sess.queueReply(encodeReplyWithPublications(cmd.ID, page.head, page.pubs, page.size))
		return
	}
	replyTo(sess, cmd.ID, result, nil)
}

// encodeConnectReply encodes the reply to connect whose result is res with
// "subs" set to the server-side subscriptions' results, each with the
// publications it recovered, spliced in as encodeReplyWithPublications
// does.
func encodeConnectReply(id uint64, res connectResult, subs map[string]*subscribed) []byte {
	h, err := json.Marshal(res)
	if err != nil || len(h) < 2 || h[0] != '{' {
		return encodeReply(id, nil, ErrInternal)
	}
	b := []byte(`{"id":`)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"result":`...)
	b = append(b, h[:len(h)-1]...)
	b = append(b, `,"subs":{`...)
	channels := make([]string, 0, len(subs))
	for c := range subs {
		channels = append(channels, c)
	}
	sort.Strings(channels)
	for i, c := range channels {
		s := subs[c]
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(c)
		b = append(b, name...)
		b = append(b, ':')
		sh, err := json.Marshal(s.result)
		if err != nil {
			return encodeReply(id, nil, ErrInternal)
		}
		if len(s.pubs) == 0 {
			b = append(b, sh...)
			continue
		}
		b = append(b, sh[:len(sh)-1]...)
		if len(sh) > 2 {
			b = append(b, ',')
		}
		b = append(b, `"publications":`...)
		b = appendPublications(b, s.pubs)
		b = append(b, '}')
	}
	return append(b, "}}}"...)
}

// asError turns err into a protocol error reply.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}

// historyPage is the result of a client's history command: the fields of
// historyResult, and the publications the reply budget has room for.
// handle encodes it with encodeReplyWithPublications.
type historyPage struct {
	head historyHead
	pubs []*broker.Publication
	size int // of pubs, encoded as a JSON array
}

// historyHead is historyResult without its publications.
type historyHead struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Truncated bool   `json:"truncated,omitempty"`
}

// encodeReplyWithPublications encodes the reply to id whose result is head
// (a struct without publications) with "publications" set to pubs, whose
// encoding takes size bytes (fitPublications), in one buffer of the
// reply's size. json.Marshal would encode the publications once, then
// check and copy each into a buffer grown by doubling, and copy that
// once more: several times a page of history in garbage for each reply.
func encodeReplyWithPublications(id uint64, head any, pubs []*broker.Publication, size int) []byte {
	h, err := json.Marshal(head)
	if err != nil || len(h) < 2 || h[0] != '{' {
		return encodeReply(id, nil, ErrInternal) // the gateway's own types: a bug
	}
	b := make([]byte, 0, len(`{"id":,"result":,"publications":}`)+20+len(h)+size)
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"result":`...)
	b = append(b, h[:len(h)-1]...)
	if len(h) > 2 {
		b = append(b, ',')
	}
	b = append(b, `"publications":`...)
	b = appendPublications(b, pubs)
	return append(b, "}}"...)
}

// Unsubscribe ends user's subscriptions to channel on every node; each
// client gets an unsubscribe push with reason and does not resubscribe. It
// reports how many subscriptions this node ended.
func (s *Server) Unsubscribe(ctx context.Context, user, channel, reason string) (int, error) {
	if reason == "" {
		reason = "unsubscribed by the server"
	}
	n := s.unsubscribeUser(user, channel, reason)
	msg, _ := json.Marshal(controlMessage{Op: "unsubscribe", Node: s.node, User: user, Channel: channel, Reason: reason})
	if err := s.broker.Control(ctx, msg); err != nil {
		return n, ErrInternal
	}
	return n, nil
}

// Disconnect closes every connection of user, on every node, with code
// (4000–4999; default CloseDisconnected) and reason. It reports how many
// connections this node closed.
func (s *Server) Disconnect(ctx context.Context, user string, code websocket.StatusCode, reason string) (int, error) {
	if code == 0 {
		code = CloseDisconnected
	}
	if code < 4000 || code > 4999 {
		return 0, badRequest("code must be 4000–4999")
	}
	if reason == "" {
		reason = "disconnected"
	}
	reason = truncateReason(reason)
	n := s.disconnectUser(user, code, reason)
	msg, _ := json.Marshal(controlMessage{Op: "disconnect", Node: s.node, User: user, Code: int(code), Reason: reason})
	if err := s.broker.Control(ctx, msg); err != nil {
		return n, ErrInternal
	}
	return n, nil
}
