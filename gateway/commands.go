package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// handle runs one command and queues its reply.
func (sess *session) handle(ctx context.Context, cmd *command) {
	if cmd.Method == "connect" {
		sess.connect(ctx, cmd)
		return
	}
	if !sess.connected {
		sess.reply(cmd.ID, nil, ErrNotConnected)
		return
	}
	var result any
	var err error
	switch cmd.Method {
	case "refresh":
		result, err = sess.refresh(ctx, cmd)
	case "subscribe":
		// subscribe queues its own reply, to order it before live
		// publications.
		if e := sess.subscribe(ctx, cmd); e != nil {
			sess.reply(cmd.ID, nil, e)
		}
		return
	case "unsubscribe":
		result, err = sess.unsubscribe(cmd)
	case "publish":
		result, err = sess.publish(ctx, cmd)
	case "presence", "presence_stats":
		result, err = sess.presence(ctx, cmd)
	case "history":
		result, err = sess.history(ctx, cmd)
	case "ping":
		result = emptyResult{}
	default:
		err = ErrMethodNotFound
	}
	if err != nil {
		sess.reply(cmd.ID, nil, asError(err))
		return
	}
	if page, ok := result.(*historyPage); ok {
		sess.replyLine(encodeReplyWithPublications(cmd.ID, page.head, page.pubs, page.size))
		return
	}
	sess.reply(cmd.ID, result, nil)
}

// asError turns err into a protocol error reply.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}

func (sess *session) connect(ctx context.Context, cmd *command) {
	srv := sess.srv
	if sess.connected {
		sess.reply(cmd.ID, nil, ErrAlreadyConnected)
		return
	}
	creds, err := srv.authenticate(ctx, cmd.Token, sess.header)
	if err == nil && creds == nil {
		err = errors.New("no credentials")
	}
	if err != nil {
		if isExpired(err) {
			sess.close(CloseTokenExpired, "token expired", reasonTokenExpired)
			return
		}
		sess.close(CloseUnauthorized, truncateReason("unauthorized: "+srv.authReason(err)), reasonUnauthorized)
		return
	}
	sess.user = creds.User
	if !srv.addUser(sess) {
		srv.metrics.limitHits.With(limitConnectionsPerUser).Inc()
		sess.user = "" // not counted, so not released
		sess.close(CloseConnectionLimit, "connection limit: "+limitConnectionsPerUser, reasonConnLimit)
		return
	}
	if ok, err := srv.admitUser(ctx, sess); !ok {
		if err != nil {
			// The limit cannot be checked across nodes now: refuse, and
			// let the client come back.
			srv.log.Warn("per-user connection count failed", "err", err)
			sess.close(CloseServerError, "server error: broker unavailable", reasonServerError)
			return
		}
		srv.metrics.limitHits.With(limitConnectionsPerUser).Inc()
		sess.close(CloseConnectionLimit, "connection limit: "+limitConnectionsPerUser, reasonConnLimit)
		return
	}
	sess.header = nil
	sess.connected = true
	sess.info = &broker.ClientInfo{Client: sess.id, User: creds.User, Info: creds.Info}
	if len(creds.Channels) > 0 {
		sess.channels = make(map[string]bool, len(creds.Channels))
		for _, c := range creds.Channels {
			sess.channels[c] = true
		}
	}
	res := connectResult{
		Client:  sess.id,
		User:    creds.User,
		Ping:    int(max(srv.cfg.PingInterval, 0) / time.Second),
		Version: srv.cfg.Version,
	}
	if !creds.ExpiresAt.IsZero() {
		sess.expires.Store(srv.expiryDeadline(creds.ExpiresAt))
		res.Expires = creds.ExpiresAt.Unix()
	}
	sess.connectedFlag.Store(true)
	sess.reply(cmd.ID, res, nil)
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows (RFC 6455 section 5.5), at a character boundary.
func truncateReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:123]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func (sess *session) refresh(ctx context.Context, cmd *command) (any, error) {
	if cmd.Token == "" {
		return nil, badRequest("token is required")
	}
	creds, err := sess.srv.authenticate(ctx, cmd.Token, nil)
	if err == nil && creds == nil {
		err = errors.New("no credentials")
	}
	if err != nil {
		return nil, &Error{ErrInvalidToken.Code, truncateReason("invalid token: " + sess.srv.authReason(err))}
	}
	if creds.User != sess.user {
		return nil, &Error{ErrInvalidToken.Code, "invalid token: another user"}
	}
	sess.regrant(creds)
	var res refreshResult
	sess.expires.Store(sess.srv.expiryDeadline(creds.ExpiresAt))
	if !creds.ExpiresAt.IsZero() {
		res.Expires = creds.ExpiresAt.Unix()
	}
	return res, nil
}

// mayUse checks that sess may subscribe to channel of ns, or read its
// presence and history; token is a channel token, possibly empty. It
// reports whether the grant came from a token.
func (sess *session) mayUse(ns *Namespace, channel, token string) (viaToken bool, err *Error) {
	if ns.Subscribe == PermissionServer || (sess.user == "" && !ns.Anonymous) {
		return false, ErrPermissionDenied
	}
	// A grant by token counts even where the namespace does not require
	// one, since its publish permission may.
	if sess.channels[channel] {
		return true, nil
	}
	if token != "" {
		if verr := sess.srv.verifyChannelToken(token, channel, sess.user); verr != nil {
			return false, &Error{ErrPermissionDenied.Code, truncateReason("permission denied: " + sess.srv.authReason(verr))}
		}
		return true, nil
	}
	if ns.Subscribe == PermissionToken {
		return false, ErrPermissionDenied
	}
	return false, nil
}

func (sess *session) subscribe(ctx context.Context, cmd *command) *Error {
	srv := sess.srv
	ns, err := srv.namespace(cmd.Channel)
	if err != nil {
		return asError(err)
	}
	viaToken, perr := sess.mayUse(ns, cmd.Channel, cmd.Token)
	if perr != nil {
		return perr
	}
	if !srv.brokerReady() {
		return ErrUnavailable
	}
	sub := &subscription{ns: ns, viaToken: viaToken, buffering: true}
	sess.mu.Lock()
	if sess.subs[cmd.Channel] != nil {
		sess.mu.Unlock()
		return ErrAlreadySubscribed
	}
	if max := srv.cfg.Limits.MaxChannels; max > 0 && len(sess.subs) >= max {
		sess.mu.Unlock()
		srv.metrics.limitHits.With(limitChannels).Inc()
		return ErrLimitExceeded
	}
	if sess.subs == nil {
		sess.subs = make(map[string]*subscription)
	}
	sess.subs[cmd.Channel] = sub
	sess.mu.Unlock()

	// From here on live publications are buffered in sub, so reading the
	// stream's position next cannot miss one.
	fail := func(e *Error) *Error {
		sess.mu.Lock()
		delete(sess.subs, cmd.Channel)
		sess.mu.Unlock()
		return e
	}
	if err := srv.subscribe(ctx, cmd.Channel, sess); err != nil {
		srv.log.Warn("broker subscribe failed", "channel", cmd.Channel, "err", err)
		return fail(ErrUnavailable)
	}
	res := subscribeResult{Latest: ns.SlowConsumer == SlowLatest}
	var delivered broker.Position  // the last position the reply delivers
	var rest []byte                // a gap push for what the reply had no room for
	var pubs []*broker.Publication // the publications it recovers
	var pubsSize int               // their size, encoded
	if ns.HistorySize > 0 {
		res.Recoverable = true
		opts := broker.HistoryOptions{}
		switch {
		case cmd.Since != nil && cmd.Since.Epoch == "":
			// The client saw the channel before its stream existed: all
			// of the stream is what it missed.
			opts = broker.HistoryOptions{Limit: -1}
		case cmd.Since != nil:
			opts = broker.HistoryOptions{Since: cmd.Since, Limit: -1}
		}
		h, err := srv.broker.History(ctx, cmd.Channel, opts)
		if err != nil {
			srv.log.Warn("history failed", "channel", cmd.Channel, "err", err)
			srv.unsubscribe(cmd.Channel, sess)
			return fail(ErrUnavailable)
		}
		res.Epoch, res.Offset = h.Position.Epoch, h.Position.Offset
		delivered = h.Position
		srv.noteRead(cmd.Channel, h.Position)
		if cmd.Since != nil {
			recovered := recoveredAll(*cmd.Since, h)
			res.Recovered = &recovered
			n, size := srv.fitPublications(h.Publications)
			pubs, pubsSize = h.Publications[:n], size
			if recovered && n < len(h.Publications) {
				// The reply holds the oldest it has room for; the client
				// reads the rest with history.
				res.Offset = h.Publications[n-1].Position.Offset
				rest = encodeGap(cmd.Channel, h.Position.Epoch, res.Offset+1, h.Position.Offset)
			}
		}
	} else if cmd.Since != nil {
		recovered := false
		res.Recovered = &recovered
	}
	if ns.Presence {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := srv.broker.AddPresence(pctx, cmd.Channel, sess.info, srv.cfg.PresenceTTL)
		if err == nil && ns.JoinLeave {
			err = srv.broker.PublishJoin(pctx, cmd.Channel, sess.info)
		}
		cancel()
		if err != nil {
			srv.log.Warn("presence failed", "channel", cmd.Channel, "err", err)
		}
	}

	// The reply, then what arrived meanwhile and the reply does not hold,
	// then live publications.
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if len(pubs) > 0 {
		sess.enqueueReplyLocked(encodeReplyWithPublications(cmd.ID, res, pubs, pubsSize))
	} else {
		sess.enqueueReplyLocked(encodeReply(cmd.ID, res, nil))
	}
	if rest != nil {
		sess.enqueueReplyLocked(rest)
	}
	sub.buffering = false
	for _, p := range sub.buffered {
		if p.pos.Epoch != "" && p.pos.Epoch == delivered.Epoch && p.pos.Offset <= delivered.Offset {
			continue
		}
		sess.enqueueLocked(p.line, p)
	}
	sub.buffered = nil
	return nil
}

// recoveredAll reports whether h holds every publication after since,
// with nothing lost in between.
func recoveredAll(since broker.Position, h broker.HistoryResult) bool {
	top := h.Position
	if since.Epoch == "" && since.Offset == 0 {
		// From before the stream began: recovered when history still
		// holds all of it.
		pubs := h.Publications
		return top.Offset == 0 || len(pubs) > 0 && pubs[0].Position.Offset == 1 &&
			pubs[len(pubs)-1].Position.Offset == top.Offset
	}
	if since.Epoch != top.Epoch || since.Offset > top.Offset {
		return false
	}
	if since.Offset == top.Offset {
		return true
	}
	pubs := h.Publications
	return len(pubs) > 0 &&
		pubs[0].Position.Offset == since.Offset+1 &&
		pubs[len(pubs)-1].Position.Offset == top.Offset
}

func encodePublications(pubs []*broker.Publication) []*json.RawMessage {
	out := make([]*json.RawMessage, len(pubs))
	for i, p := range pubs {
		line := json.RawMessage(appendPublication(nil, p))
		out[i] = &line
	}
	return out
}

func (sess *session) unsubscribe(cmd *command) (any, error) {
	sess.mu.Lock()
	sub := sess.subs[cmd.Channel]
	delete(sess.subs, cmd.Channel)
	sess.mu.Unlock()
	if sub == nil {
		return nil, ErrNotSubscribed
	}
	sess.leave(cmd.Channel, sub)
	return emptyResult{}, nil
}

func (sess *session) publish(ctx context.Context, cmd *command) (any, error) {
	srv := sess.srv
	ns, err := srv.namespace(cmd.Channel)
	if err != nil {
		return nil, err
	}
	switch {
	case ns.Publish == PermissionServer:
		return nil, ErrPermissionDenied
	case sess.user == "" && !ns.Anonymous:
		return nil, ErrPermissionDenied
	case ns.Publish == PermissionToken:
		sess.mu.Lock()
		sub := sess.subs[cmd.Channel]
		sess.mu.Unlock()
		if sub == nil || !sub.viaToken {
			return nil, ErrPermissionDenied
		}
	}
	data, err := compactJSON(cmd.Data)
	if err != nil {
		return nil, err
	}
	if h := srv.cfg.Hooks.ValidatePublish; h != nil {
		err := h(ctx, PublishRequest{Channel: cmd.Channel, Data: data, Client: sess.id, User: sess.user})
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return nil, e
			}
			return nil, &Error{ErrPermissionDenied.Code, truncateReason("permission denied: " + err.Error())}
		}
	}
	pos, err := srv.publish(ctx, ns, cmd.Channel, data, sess.info)
	if err != nil {
		return nil, err
	}
	return publishResult{Offset: pos.Offset, Epoch: pos.Epoch}, nil
}

// readable checks that sess may read channel's presence or history: it is
// subscribed, or could subscribe without a channel token.
func (sess *session) readable(cmd *command) (*Namespace, error) {
	ns, err := sess.srv.namespace(cmd.Channel)
	if err != nil {
		return nil, err
	}
	sess.mu.Lock()
	subscribed := sess.subs[cmd.Channel] != nil
	sess.mu.Unlock()
	if subscribed {
		return ns, nil
	}
	if _, perr := sess.mayUse(ns, cmd.Channel, ""); perr != nil {
		return nil, perr
	}
	return ns, nil
}

func (sess *session) presence(ctx context.Context, cmd *command) (any, error) {
	ns, err := sess.readable(cmd)
	if err != nil {
		return nil, err
	}
	if !ns.Presence {
		return nil, ErrNotAvailable
	}
	return sess.srv.presenceOf(ctx, cmd.Channel, cmd.Method == "presence_stats")
}

func (s *Server) presenceOf(ctx context.Context, channel string, stats bool) (any, error) {
	if stats {
		st, err := s.broker.PresenceStats(ctx, channel)
		if err != nil {
			return nil, ErrInternal
		}
		return st, nil
	}
	members, err := s.broker.Presence(ctx, channel)
	if err != nil {
		return nil, ErrInternal
	}
	return presenceResult{Clients: members}, nil
}

func (sess *session) history(ctx context.Context, cmd *command) (any, error) {
	ns, err := sess.readable(cmd)
	if err != nil {
		return nil, err
	}
	return sess.srv.readHistory(ctx, ns, cmd.Channel, cmd.Limit, cmd.Since, cmd.Reverse, true)
}

// historyOf reads history for the backend API, whose replies are not
// queued for a connection and so not cut to the reply budget.
func (s *Server) historyOf(ctx context.Context, ns *Namespace, channel string, limit *int, since *broker.Position, reverse bool) (any, error) {
	return s.readHistory(ctx, ns, channel, limit, since, reverse, false)
}

func (s *Server) readHistory(ctx context.Context, ns *Namespace, channel string, limit *int, since *broker.Position, reverse, capped bool) (any, error) {
	if ns.HistorySize == 0 {
		return nil, ErrNotAvailable
	}
	opts := broker.HistoryOptions{Since: since, Reverse: reverse, Limit: -1}
	if limit != nil {
		if *limit < 0 {
			return nil, badRequest("negative limit")
		}
		opts.Limit = *limit
	}
	h, err := s.broker.History(ctx, channel, opts)
	if err != nil {
		return nil, ErrInternal
	}
	if since != nil && since.Epoch != h.Position.Epoch {
		return nil, ErrUnrecoverable
	}
	if !capped {
		return historyResult{Offset: h.Position.Offset, Epoch: h.Position.Epoch, Publications: encodePublications(h.Publications)}, nil
	}
	n, size := s.fitPublications(h.Publications)
	return &historyPage{
		head: historyHead{Offset: h.Position.Offset, Epoch: h.Position.Epoch, Truncated: n < len(h.Publications)},
		pubs: h.Publications[:n],
		size: size,
	}, nil
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
