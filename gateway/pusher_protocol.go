package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/internal/ratelimit"
)

// pusherApp is a configured Pusher app as the server runs it.
type pusherApp struct {
	PusherApp
	protocol *pusherProtocol
	hooks    *pusherHooks // nil without webhooks
}

// pusherProtocol is Pusher Channels' protocol, version 7, for the clients
// of one app: one JSON event per WebSocket message, {"event", "channel",
// "data"}, where data is most often a string holding JSON.
type pusherProtocol struct {
	app *pusherApp
}

func (*pusherProtocol) index() int { return 1 }

// joinsLines is false: a Pusher client parses each message as one event.
func (*pusherProtocol) joinsLines() bool { return false }

// echoes is false: a client event never reaches its sender, nor an event
// the HTTP API triggered with the sender's socket_id.
func (*pusherProtocol) echoes() bool { return false }

// pusherMessage is an event of the protocol, either way.
type pusherMessage struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// pusherEnvelope is the data at the broker of a publication to a Pusher
// channel: the event's name and data, and for a client event on a presence
// channel its sender's user id.
type pusherEnvelope struct {
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	UserID string          `json:"user_id,omitempty"`
}

// opened greets the client with its socket id, and marks it connected: a
// Pusher connection needs no token.
func (p *pusherProtocol) opened(sess *session) {
	sess.connected = true
	sess.info = &broker.ClientInfo{Client: sess.id}
	sess.connectedFlag.Store(true)
	data, _ := json.Marshal(struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}{sess.id, pusherActivityTimeout})
	sess.queueReply(encodePusherEvent("pusher:connection_established", "", jsonString(data)))
}

// handleMessage handles one event of the client.
func (p *pusherProtocol) handleMessage(sess *session, text bool, msg []byte) {
	if !text {
		sess.close(CloseBadRequest, "binary messages are not part of the protocol", reasonBadRequest)
		return
	}
	if len(bytes.TrimSpace(msg)) == 0 || !sess.allowCommand() {
		return
	}
	var m pusherMessage
	if err := json.Unmarshal(msg, &m); err != nil || m.Event == "" {
		sess.closeFlushed(CloseBadRequest, "bad request: not a Pusher event", reasonBadRequest)
		return
	}
	if !sess.awaitRoom() {
		return
	}
	ctx := context.Background()
	switch {
	case m.Event == "pusher:ping":
		sess.queueReply(encodePusherEvent("pusher:pong", "", json.RawMessage(`"{}"`)))
	case m.Event == "pusher:subscribe":
		p.subscribe(ctx, sess, m.Data)
	case m.Event == "pusher:signin":
		p.signin(ctx, sess, m.Data)
	case m.Event == "pusher:unsubscribe":
		var d struct {
			Channel string `json:"channel"`
		}
		if json.Unmarshal(unquoteData(m.Data), &d) == nil && validPusherChannel(d.Channel) {
			sess.unsubscribe(p.app.pusherChannel(d.Channel)) // not subscribed: nothing to do
		}
	case strings.HasPrefix(m.Event, "client-"):
		p.clientEvent(ctx, sess, &m)
	default:
		sess.queueReply(encodePusherError(0, "unsupported event "+strconv.Quote(truncateReason(m.Event))))
	}
}

// unquoteData returns data, which clients send as an object or as a string
// holding one, as the object.
func unquoteData(data json.RawMessage) []byte {
	var s string
	if len(data) > 0 && data[0] == '"' && json.Unmarshal(data, &s) == nil {
		return []byte(s)
	}
	return data
}

// pusherSubscribe is the data of pusher:subscribe.
type pusherSubscribe struct {
	Channel     string `json:"channel"`
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
	// Recovery (the recovery extension) asks for the channel's position
	// in subscription_succeeded, and Since, an event id, for the events
	// after it.
	Recovery bool   `json:"recovery"`
	Since    string `json:"since"`
}

// subscribe checks a pusher:subscribe by Pusher's rules (the channel
// signature of private and presence channels) and runs the node's
// subscribe, which applies the limits every protocol has.
func (p *pusherProtocol) subscribe(ctx context.Context, sess *session, data json.RawMessage) {
	var d pusherSubscribe
	if err := json.Unmarshal(unquoteData(data), &d); err != nil || !validPusherChannel(d.Channel) {
		sess.queueReply(encodePusherError(0, "pusher:subscribe needs a valid channel name"))
		return
	}
	fail := func(kind, msg string, status int) {
		sess.queueReply(encodeSubscriptionError(d.Channel, kind, msg, status))
	}
	req := subscribeRequest{Channel: p.app.pusherChannel(d.Channel), Granted: true}
	switch {
	case strings.HasPrefix(d.Channel, pusherUserChannel):
		// The channel of events to one user: only its signed-in
		// connections.
		if sess.user == "" || sess.user != p.app.pusherUser(strings.TrimPrefix(d.Channel, pusherUserChannel)) {
			fail("AuthError", "only the connections signed in as the user may subscribe to "+d.Channel, 403)
			return
		}
	case strings.HasPrefix(d.Channel, "private-"):
		// private-encrypted- channels too: the server relays their
		// ciphertext and never holds the key, which the app's
		// authorization endpoint gives the client beside auth.
		if !p.app.validAuth(d.Auth, sess.id+":"+d.Channel) {
			fail("AuthError", "Invalid signature: expected HMAC-SHA256 of socket_id:channel with the app's secret", 401)
			return
		}
	case strings.HasPrefix(d.Channel, "presence-"):
		if !p.app.validAuth(d.Auth, sess.id+":"+d.Channel+":"+d.ChannelData) {
			fail("AuthError", "Invalid signature: expected HMAC-SHA256 of socket_id:channel:channel_data with the app's secret", 401)
			return
		}
		member, err := presenceMember(sess.id, d.ChannelData)
		if err != nil {
			fail("AuthError", err.Error(), 400)
			return
		}
		req.Member, req.MaxMembers, req.Members = member, p.app.MaxPresenceMembers, true
	}
	if pos, ok := parsePusherID(d.Since); ok {
		req.Since = &pos
	}
	req.Last = isCacheChannel(d.Channel) && req.Since == nil
	e := sess.subscribe(ctx, req, func(s *subscribed) {
		data := []byte("{}")
		if s.members != nil {
			data = encodePusherMembers(s.members)
		}
		if d.Recovery || req.Since != nil {
			data = withRecovery(data, &s.result, s.rest == nil)
		}
		sess.enqueueReplyLocked(encodePusherEvent("pusher_internal:subscription_succeeded", d.Channel, jsonString(data)))
		if req.Since != nil {
			for _, pub := range s.pubs {
				sess.enqueueReplyLocked(p.encodePublication(pub))
			}
			return
		}
		if !req.Last {
			return
		}
		// A cache channel's last event (from the broker's history, so
		// whichever node it was triggered on), else a miss.
		if len(s.pubs) == 0 {
			sess.enqueueReplyLocked(encodePusherEvent("pusher:cache_miss", d.Channel, nil))
			return
		}
		sess.enqueueReplyLocked(p.encodePublication(s.pubs[0]))
	})
	if e == nil {
		return
	}
	status := 400
	switch e {
	case ErrUnavailable:
		status = 503
	case ErrLimitExceeded, ErrMemberLimit:
		status = 429
	}
	fail("SubscriptionError", e.Message, status)
}

// signin checks a pusher:signin, whose auth signs
// "socket_id::user::user_data" and whose user_data is a JSON object with an
// "id", and makes the connection that user's: the per-user connection
// limits apply to it, POST /apps/{id}/users/{user}/terminate_connections
// closes it, and it may subscribe to the user's #server-to-user- channel.
func (p *pusherProtocol) signin(ctx context.Context, sess *session, data json.RawMessage) {
	var d struct {
		Auth     string `json:"auth"`
		UserData string `json:"user_data"`
	}
	refuse := func(msg string) { sess.queueReply(encodePusherError(0, "pusher:signin refused: "+msg)) }
	if err := json.Unmarshal(unquoteData(data), &d); err != nil {
		refuse("its data is not a JSON object")
		return
	}
	if sess.user != "" {
		refuse("the connection is signed in already")
		return
	}
	if !p.app.validAuth(d.Auth, sess.id+"::user::"+d.UserData) {
		refuse("invalid signature: expected HMAC-SHA256 of socket_id::user::user_data with the app's secret")
		return
	}
	var user struct {
		ID string `json:"id"`
	}
	if json.Unmarshal([]byte(d.UserData), &user) != nil || !validPusherName(user.ID) {
		refuse(`user_data needs an "id" of the characters of channel names`)
		return
	}
	if !sess.becomeUser(ctx, p.app.pusherUser(user.ID)) {
		return // closed
	}
	reply, _ := json.Marshal(struct {
		UserData string `json:"user_data"`
	}{d.UserData})
	sess.queueReply(encodePusherEvent("pusher:signin_success", "", reply))
}

// validAuth checks an auth field, "key:signature", where signature is the
// hex HMAC-SHA256 of signed with the app's secret, in constant time.
func (a *PusherApp) validAuth(auth, signed string) bool {
	key, sig, ok := strings.Cut(auth, ":")
	if !ok || key != a.Key {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	return hmac.Equal(got, a.sign(signed))
}

// sign is the HMAC-SHA256 of s with the app's secret.
func (a *PusherApp) sign(s string) []byte {
	m := hmac.New(sha256.New, []byte(a.Secret))
	m.Write([]byte(s))
	return m.Sum(nil)
}

// presenceMember reads the channel_data of a presence subscription:
// {"user_id": string or number, "user_info": any}.
func presenceMember(socketID, channelData string) (*broker.ClientInfo, error) {
	var d struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if err := json.Unmarshal([]byte(channelData), &d); err != nil {
		return nil, errors.New("channel_data is not a JSON object")
	}
	var user string
	if json.Unmarshal(d.UserID, &user) != nil {
		var n json.Number
		if json.Unmarshal(d.UserID, &n) != nil {
			return nil, errors.New("channel_data needs a user_id, a string or a number")
		}
		user = n.String()
	}
	if user == "" || len(user) > 128 {
		return nil, errors.New("channel_data needs a user_id of 1 to 128 bytes")
	}
	info := &broker.ClientInfo{Client: socketID, User: user}
	if len(d.UserInfo) > 0 && !bytes.Equal(d.UserInfo, []byte("null")) {
		info.Info = d.UserInfo
	}
	return info, nil
}

// clientEvent publishes a client event to the other subscribers of a
// private or presence channel, when the app allows client events, within
// the connection's client event rate.
func (p *pusherProtocol) clientEvent(ctx context.Context, sess *session, m *pusherMessage) {
	refuse := func(code int, msg string) { sess.queueReply(encodePusherError(code, msg)) }
	if !p.app.ClientEvents {
		refuse(0, "client events are not enabled for this app")
		return
	}
	if !strings.HasPrefix(m.Channel, "private-") && !strings.HasPrefix(m.Channel, "presence-") {
		refuse(0, "client events are allowed on private and presence channels only")
		return
	}
	if strings.HasPrefix(m.Channel, "private-encrypted-") {
		// As on Pusher: the server cannot check or relay them as the
		// encrypted events its clients expect.
		refuse(0, "client events are not supported on encrypted channels")
		return
	}
	channel := p.app.pusherChannel(m.Channel)
	sess.mu.Lock()
	sub := sess.subs[channel]
	sess.mu.Unlock()
	if sub == nil {
		refuse(0, "client event on a channel the connection is not subscribed to: "+m.Channel)
		return
	}
	if !p.allowClientEvent(sess) {
		sess.srv.metrics.limitHits.With(limitClientEvents).Inc()
		refuse(pusherErrClientEventsRate, "Client event rejected due to rate limit")
		return
	}
	env := pusherEnvelope{Event: m.Event, Data: m.Data}
	if env.Data == nil {
		env.Data = json.RawMessage("null")
	}
	if sub.member != nil {
		env.UserID = sub.member.User
	}
	data, err := json.Marshal(env)
	if err != nil {
		refuse(0, "client event data is not valid JSON")
		return
	}
	if _, err := sess.publishAs(ctx, channel, data, true); err != nil {
		refuse(0, "client event not delivered: "+asError(err).Message)
		return
	}
	hookData := env.Data
	if len(hookData) == 0 || hookData[0] != '"' {
		hookData = jsonString(hookData) // webhooks carry data as a string, as Pusher's do
	}
	sess.srv.queueWebhook(p.app, pusherWebhookEvent{Name: "client_event", Channel: m.Channel, Event: m.Event,
		Data: hookData, SocketID: sess.id, UserID: env.UserID})
}

// allowClientEvent counts a client event of sess against the app's rate,
// in the session's publish rate.
func (p *pusherProtocol) allowClientEvent(sess *session) bool {
	now := time.Now()
	if sess.publishRate == nil {
		rate := p.app.ClientEventRate
		b := ratelimit.NewBucket(rate, max(1, int(rate)), now)
		sess.publishRate = &b
	}
	return sess.publishRate.Allow(now)
}

// encodePublication spells a publication of the app's channel as its
// event: the envelope a Pusher trigger stored, or, for data published
// otherwise (the backend API of PROTOCOL.md), the event "message" with the
// data as it is.
func (*pusherProtocol) encodePublication(pub *broker.Publication) []byte {
	var env pusherEnvelope
	if json.Unmarshal(pub.Data, &env) != nil || env.Event == "" || env.Data == nil {
		env = pusherEnvelope{Event: "message", Data: pub.Data}
	}
	var id string
	if pub.Position.Epoch != "" {
		id = pusherID(pub.Position)
	}
	b, _ := json.Marshal(struct {
		Event   string          `json:"event"`
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
		UserID  string          `json:"user_id,omitempty"`
		ID      string          `json:"id,omitempty"`
	}{env.Event, pusherName(pub.Channel), env.Data, env.UserID, id})
	return b
}

// pusherID is the recovery extension's id of an event at pos in its
// channel's stream: "epoch:offset".
func pusherID(pos broker.Position) string {
	return pos.Epoch + ":" + strconv.FormatUint(pos.Offset, 10)
}

// parsePusherID reads an id of pusherID.
func parsePusherID(id string) (broker.Position, bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return broker.Position{}, false
	}
	off, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return broker.Position{}, false
	}
	return broker.Position{Epoch: id[:i], Offset: off}, true
}

// withRecovery adds to subscription_succeeded's data, a JSON object, the
// recovery extension's fields: "id", the channel's position (absent on a
// channel without history), and, when the subscription gave an id,
// "recovered", whether every event after it was delivered.
func withRecovery(data []byte, res *subscribeResult, complete bool) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil || m == nil {
		m = make(map[string]json.RawMessage)
	}
	if res.Recoverable {
		m["id"], _ = json.Marshal(pusherID(broker.Position{Epoch: res.Epoch, Offset: res.Offset}))
	}
	if res.Recovered != nil {
		m["recovered"], _ = json.Marshal(*res.Recovered && complete)
	}
	b, _ := json.Marshal(m)
	return b
}

// encodeNotice spells the member events of presence channels; Pusher has
// no spelling for the others (gaps cannot happen on its channels, which
// keep no history and disconnect slow consumers).
func (*pusherProtocol) encodeNotice(n *notice) []byte {
	switch n.kind {
	case noticeMemberAdded:
		data, _ := json.Marshal(struct {
			UserID   string          `json:"user_id"`
			UserInfo json.RawMessage `json:"user_info,omitempty"`
		}{n.user, n.info.Info})
		return encodePusherEvent("pusher_internal:member_added", pusherName(n.channel), jsonString(data))
	case noticeMemberRemoved:
		data, _ := json.Marshal(struct {
			UserID string `json:"user_id"`
		}{n.user})
		return encodePusherEvent("pusher_internal:member_removed", pusherName(n.channel), jsonString(data))
	}
	return nil
}

// encodePusherMembers is the presence data of subscription_succeeded:
// the channel's distinct users, each with the info of one of its
// connections.
func encodePusherMembers(members map[string]*broker.ClientInfo) []byte {
	type presence struct {
		Count int                        `json:"count"`
		IDs   []string                   `json:"ids"`
		Hash  map[string]json.RawMessage `json:"hash"`
	}
	p := presence{IDs: []string{}, Hash: make(map[string]json.RawMessage)}
	for _, m := range members {
		if _, dup := p.Hash[m.User]; dup {
			continue
		}
		info := m.Info
		if info == nil {
			info = json.RawMessage("null")
		}
		p.Hash[m.User] = info
		p.IDs = append(p.IDs, m.User)
	}
	p.Count = len(p.IDs)
	b, _ := json.Marshal(struct {
		Presence presence `json:"presence"`
	}{p})
	return b
}

// encodePusherEvent spells an event; data is JSON (most often a string
// holding JSON, as Pusher sends it).
func encodePusherEvent(event, channel string, data json.RawMessage) []byte {
	b, _ := json.Marshal(pusherMessage{Event: event, Channel: channel, Data: data})
	return b
}

// encodePusherError spells pusher:error with code (0: null) and message.
func encodePusherError(code int, msg string) []byte {
	var c any
	if code != 0 {
		c = code
	}
	data, _ := json.Marshal(struct {
		Code    any    `json:"code"`
		Message string `json:"message"`
	}{c, msg})
	return encodePusherEvent("pusher:error", "", data)
}

// encodeSubscriptionError spells pusher:subscription_error for channel.
func encodeSubscriptionError(channel, kind, msg string, status int) []byte {
	data, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{kind, msg, status})
	return encodePusherEvent("pusher:subscription_error", channel, data)
}

// jsonString is b, JSON, as a JSON string holding it.
func jsonString(b []byte) json.RawMessage {
	s, _ := json.Marshal(string(b))
	return s
}
