package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/proxy"
)

// The node's operations on behalf of a client, whichever protocol asked:
// each checks the permissions and limits it is subject to, talks to the
// hub and the broker, and reports what the protocol spells as its reply.
// They run on the session's reading chain, one at a time.

// connect authenticates the client: with the connect proxy, when one is
// configured (and not skipped for a token), or with token (and the
// headers of its upgrade, for Hooks.Authenticate); admits it within the
// per-user limits, and grants what its credentials say. It reports the
// credentials; or the error the client's connect command fails with (a
// final one closes the session after the reply), or neither when it closed
// the session. The caller checks that it is not connected yet.
func (sess *session) connect(ctx context.Context, token string, req *proxy.ConnectRequest) (*Credentials, *connectRefused) {
	srv := sess.srv
	var creds *Credentials
	var err error
	if p := srv.proxies[srv.cfg.Proxy.Connect]; p != nil && !(token != "" && srv.cfg.Proxy.SkipConnectWithToken) {
		var refused *connectRefused
		if creds, refused = sess.connectViaProxy(ctx, p, req); creds == nil {
			return nil, refused
		}
	} else {
		creds, err = srv.authenticate(ctx, token, sess.header)
	}
	if err == nil && creds == nil {
		err = errors.New("no credentials")
	}
	if err != nil {
		if isExpired(err) {
			sess.close(CloseTokenExpired, "token expired", reasonTokenExpired)
			return nil, nil
		}
		sess.close(CloseUnauthorized, truncateReason("unauthorized: "+srv.authReason(err)), reasonUnauthorized)
		return nil, nil
	}
	if !sess.becomeUser(ctx, creds.User) {
		return nil, nil
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
	if !creds.ExpiresAt.IsZero() {
		sess.expires.Store(srv.expiryDeadline(creds.ExpiresAt))
	}
	sess.connectedFlag.Store(true)
	return creds, nil
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

// becomeUser makes the client user's, within the per-user connection
// limit of this node and of all nodes; it reports whether it went on, or
// closed the session. The caller checks that the client has no user yet.
func (sess *session) becomeUser(ctx context.Context, user string) bool {
	srv := sess.srv
	sess.user = user
	if !srv.addUser(sess) {
		srv.metrics.limitHits.With(limitConnectionsPerUser).Inc()
		sess.user = "" // not counted, so not released
		sess.close(CloseConnectionLimit, "connection limit: "+limitConnectionsPerUser, reasonConnLimit)
		return false
	}
	if ok, err := srv.admitUser(ctx, sess); !ok {
		if err != nil {
			// The limit cannot be checked across nodes now: refuse, and
			// let the client come back.
			srv.log.Warn("per-user connection count failed", "err", err)
			sess.close(CloseServerError, "server error: broker unavailable", reasonServerError)
			return false
		}
		srv.metrics.limitHits.With(limitConnectionsPerUser).Inc()
		sess.close(CloseConnectionLimit, "connection limit: "+limitConnectionsPerUser, reasonConnLimit)
		return false
	}
	return true
}

// refresh renews the client's credentials with token, of the same user,
// and reports when they expire (zero: never).
func (sess *session) refresh(ctx context.Context, token string) (time.Time, error) {
	if token == "" {
		return time.Time{}, badRequest("token is required")
	}
	creds, err := sess.srv.authenticate(ctx, token, nil)
	if err == nil && creds == nil {
		err = errors.New("no credentials")
	}
	if err != nil {
		return time.Time{}, &Error{ErrInvalidToken.Code, truncateReason("invalid token: " + sess.srv.authReason(err))}
	}
	if creds.User != sess.user {
		return time.Time{}, &Error{ErrInvalidToken.Code, "invalid token: another user"}
	}
	sess.regrant(creds)
	sess.expires.Store(sess.srv.expiryDeadline(creds.ExpiresAt))
	return creds.ExpiresAt, nil
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

// subscribeRequest is a client's request to subscribe to Channel, with a
// channel token, and from the position Since when it recovers.
type subscribeRequest struct {
	Channel string
	Token   string
	Since   *broker.Position
	// Data is the client's data for the subscribe proxy.
	Data json.RawMessage

	// Granted says the protocol authorized the subscription by a rule of
	// its own (Pusher's channel signature): the namespace's permissions
	// and the client's grants are not consulted.
	Granted bool
	// Member, when not nil, is how the client appears in the channel's
	// presence, in place of its connection's info.
	Member *broker.ClientInfo
	// hold keeps the publications that arrive after the reply waiting in
	// the subscription until releaseLocked: the connect reply that lists
	// server-side subscriptions goes before any of them.
	hold bool
	// MaxMembers, when positive, caps the distinct users in the channel's
	// presence: a client whose user is not among them yet is refused.
	MaxMembers int
	// Members asks for the channel's presence in the result, read after
	// the client joined it.
	Members bool
	// Last asks for the channel's latest publication in history, if any,
	// in subscribed.pubs (Pusher's cache channels).
	Last bool
}

// ErrMemberLimit refuses a subscription to a presence channel that has
// subscribeRequest.MaxMembers users already.
var ErrMemberLimit = &Error{ErrLimitExceeded.Code, "limit exceeded: too many members in the presence channel"}

// subscribed is what subscribing brought: the result, the publications it
// recovers (their encoding as a JSON array takes pubsSize bytes), and, when
// the reply had no room for all, a gap notice for the rest.
type subscribed struct {
	result   subscribeResult
	pubs     []*broker.Publication
	pubsSize int
	rest     *notice
	members  map[string]*broker.ClientInfo // by client id, when asked for
}

// subscribe subscribes the client to a channel: permissions, the channel
// limit, the hub and broker, recovery from history and presence. reply
// queues the protocol's reply (sess.enqueueReplyLocked) under sess.mu,
// before the publications that arrived meanwhile and live ones. On error
// nothing is queued.
func (sess *session) subscribe(ctx context.Context, req subscribeRequest, reply func(*subscribed)) *Error {
	srv := sess.srv
	ns, err := srv.namespace(req.Channel)
	if err != nil {
		return asError(err)
	}
	viaToken := req.Granted
	var grant *proxyGrant
	switch p := srv.proxies[ns.SubscribeProxy]; {
	case req.Granted:
	case p != nil:
		// The backend decides; what it grants counts as a token's grant.
		var e *Error
		if grant, e = sess.subscribeViaProxy(ctx, p, req); e != nil {
			return e
		}
		viaToken = true
		if grant.info != nil && req.Member == nil {
			req.Member = &broker.ClientInfo{Client: sess.id, User: sess.user, Info: grant.info}
		}
	default:
		var perr *Error
		if viaToken, perr = sess.mayUse(ns, req.Channel, req.Token); perr != nil {
			return perr
		}
	}
	if !srv.brokerReady() {
		return ErrUnavailable
	}
	member := sess.connInfo()
	if req.Member != nil {
		member = req.Member
	}
	if ns.Presence && req.MaxMembers > 0 {
		if e := srv.checkMemberLimit(ctx, req.Channel, member, req.MaxMembers); e != nil {
			return e
		}
	}
	sub := &subscription{ns: ns, viaToken: viaToken, buffering: true, member: req.Member}
	if grant != nil {
		sub.expires = grant.expires
	}
	sess.mu.Lock()
	if sess.subs[req.Channel] != nil {
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
	sess.subs[req.Channel] = sub
	sess.mu.Unlock()

	// From here on live publications are buffered in sub, so reading the
	// stream's position next cannot miss one.
	fail := func(e *Error) *Error {
		sess.mu.Lock()
		delete(sess.subs, req.Channel)
		sess.mu.Unlock()
		return e
	}
	if err := srv.subscribe(ctx, req.Channel, sess); err != nil {
		srv.log.Warn("broker subscribe failed", "channel", req.Channel, "err", err)
		return fail(ErrUnavailable)
	}
	out := subscribed{result: subscribeResult{Latest: ns.SlowConsumer == SlowLatest}}
	if grant != nil {
		out.result.Data = grant.data
	}
	res := &out.result
	var delivered broker.Position // the last position the reply delivers
	var membersAt time.Time       // when out.members was read
	if ns.HistorySize > 0 {
		res.Recoverable = true
		opts := broker.HistoryOptions{}
		switch {
		case req.Since != nil && req.Since.Epoch == "":
			// The client saw the channel before its stream existed: all
			// of the stream is what it missed.
			opts = broker.HistoryOptions{Limit: -1}
		case req.Since != nil:
			opts = broker.HistoryOptions{Since: req.Since, Limit: -1}
		case req.Last:
			opts = broker.HistoryOptions{Limit: 1, Reverse: true}
		}
		h, err := srv.broker.History(ctx, req.Channel, opts)
		if err != nil {
			srv.log.Warn("history failed", "channel", req.Channel, "err", err)
			srv.unsubscribe(req.Channel, sess)
			return fail(ErrUnavailable)
		}
		res.Epoch, res.Offset = h.Position.Epoch, h.Position.Offset
		delivered = h.Position
		srv.noteRead(req.Channel, h.Position)
		if req.Since != nil {
			recovered := recoveredAll(*req.Since, h)
			res.Recovered = &recovered
			n, size := srv.fitPublications(h.Publications)
			out.pubs, out.pubsSize = h.Publications[:n], size
			if recovered && n < len(h.Publications) {
				// The reply holds the oldest it has room for; the client
				// reads the rest with history.
				res.Offset = h.Publications[n-1].Position.Offset
				out.rest = gapNotice(req.Channel, h.Position.Epoch, res.Offset+1, h.Position.Offset)
			}
		} else if req.Last {
			out.pubs = h.Publications
		}
	} else if req.Since != nil {
		recovered := false
		res.Recovered = &recovered
	}
	if ns.Presence {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := srv.broker.AddPresence(pctx, req.Channel, member, srv.cfg.PresenceTTL)
		if err == nil && ns.JoinLeave {
			err = srv.broker.PublishJoin(pctx, req.Channel, member)
		}
		if err == nil && req.Members {
			membersAt = time.Now()
			if out.members, err = srv.broker.Presence(pctx, req.Channel); err == nil && ns.perUserEvents {
				srv.noteMembers(req.Channel, out.members, membersAt)
			}
		}
		cancel()
		if err != nil {
			srv.log.Warn("presence failed", "channel", req.Channel, "err", err)
		}
		if req.Members && out.members == nil {
			// The client cannot be told who is there: it must not
			// believe it is alone.
			srv.unsubscribe(req.Channel, sess)
			sess.mu.Lock()
			delete(sess.subs, req.Channel)
			sess.mu.Unlock()
			sess.leavePresence(req.Channel, sub)
			return ErrUnavailable
		}
	}

	// The reply, then what arrived meanwhile and the reply does not hold,
	// then live publications.
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sub.expires != 0 {
		sess.noteSubExpiryLocked(sub.expires)
	}
	reply(&out)
	sub.membersAt = membersAt
	sub.delivered = delivered
	if !req.hold {
		sess.releaseLocked(sub)
	}
	return nil
}

// takeOverServerSub ends the server-side subscription to channel, if sess
// has one, without a push, so that the client's subscribe command makes it
// its own (with its since, as any subscribe): clients written for channels
// that are only granted subscribe to them themselves.
func (sess *session) takeOverServerSub(channel string) {
	sess.mu.Lock()
	sub := sess.subs[channel]
	if sub == nil || !sub.server || sub.buffering {
		sess.mu.Unlock()
		return
	}
	delete(sess.subs, channel)
	sess.mu.Unlock()
	sess.leave(channel, sub)
}

// releaseLocked ends the buffering of a subscription whose reply is
// queued: what arrived meanwhile and the reply did not hold, then live
// publications. The caller holds mu.
func (sess *session) releaseLocked(sub *subscription) {
	sub.buffering = false
	for _, p := range sub.buffered {
		if p.pos.Epoch != "" && p.pos.Epoch == sub.delivered.Epoch && p.pos.Offset <= sub.delivered.Offset {
			continue
		}
		sess.enqueuePubLocked(p)
	}
	sub.buffered = nil
}

// serverSubscribe subscribes the client to the channels the connect proxy
// named, as a subscribe command would (history, recovery from the
// positions in since, presence) but without asking the namespace's
// permissions or subscribe proxy: the backend decided. reply queues the
// connect reply, which lists them, under mu before any publication of
// theirs. A channel that cannot be subscribed to at all (no such
// namespace, the channel limit) is left out and logged; one that fails
// for a while (the broker) closes the session with 4004, so that the
// client connects again later, and reports false.
func (sess *session) serverSubscribe(ctx context.Context, channels []string, since map[string]*broker.Position, reply func(map[string]*subscribed)) bool {
	results := make(map[string]*subscribed, len(channels))
	var held []*subscription
	release := func() {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		reply(results)
		for _, sub := range held {
			sess.releaseLocked(sub)
		}
	}
	for _, channel := range channels {
		if results[channel] != nil {
			continue
		}
		e := sess.subscribe(ctx, subscribeRequest{Channel: channel, Since: since[channel], Granted: true, hold: true}, func(s *subscribed) {
			results[channel] = s
			sub := sess.subs[channel]
			sub.server = true
			held = append(held, sub)
		})
		switch {
		case e == nil:
		case e.Code == ErrUnavailable.Code:
			release() // so that those already made are not left held
			sess.srv.log.Warn("a server-side subscription failed", "client", sess.id, "channel", channel, "err", e)
			sess.close(CloseReconnect, truncateReason("server-side subscription to "+channel+" failed: "+e.Message), reasonServerError)
			return false
		default:
			sess.srv.log.Warn("the connect proxy named a channel the client cannot be subscribed to; left out", "client", sess.id, "channel", channel, "err", e)
		}
	}
	release()
	return true
}

// checkMemberLimit refuses member in channel's presence when max distinct
// users are there already and member's user is not among them. Nodes that
// admit members at the same moment may each let one more in.
func (s *Server) checkMemberLimit(ctx context.Context, channel string, member *broker.ClientInfo, max int) *Error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.broker.PresenceStats(ctx, channel)
	if err != nil {
		return ErrUnavailable
	}
	if st.Users < max {
		return nil
	}
	members, err := s.broker.Presence(ctx, channel)
	if err != nil {
		return ErrUnavailable
	}
	for _, m := range members {
		if m.User == member.User {
			return nil
		}
	}
	s.metrics.limitHits.With(limitMembers).Inc()
	return ErrMemberLimit
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

// unsubscribe ends the client's subscription to channel.
func (sess *session) unsubscribe(channel string) error {
	sess.mu.Lock()
	sub := sess.subs[channel]
	delete(sess.subs, channel)
	sess.mu.Unlock()
	if sub == nil {
		return ErrNotSubscribed
	}
	sess.leave(channel, sub)
	return nil
}

// publish publishes data, JSON, to channel as the client.
func (sess *session) publish(ctx context.Context, channel string, data json.RawMessage) (broker.Position, error) {
	return sess.publishAs(ctx, channel, data, false)
}

// publishAs publishes as publish does; granted says the protocol allowed
// it by a rule of its own (a Pusher client event), so the namespace's
// permission is not consulted. Validation, Hooks.ValidatePublish and the
// broker's answer apply alike.
func (sess *session) publishAs(ctx context.Context, channel string, data json.RawMessage, granted bool) (broker.Position, error) {
	var none broker.Position
	srv := sess.srv
	ns, err := srv.namespace(channel)
	if err != nil {
		return none, err
	}
	p := srv.proxies[ns.PublishProxy]
	switch {
	case granted:
	case p != nil:
		// The backend decides.
	case ns.Publish == PermissionServer:
		return none, ErrPermissionDenied
	case sess.user == "" && !ns.Anonymous:
		return none, ErrPermissionDenied
	case ns.Publish == PermissionToken:
		sess.mu.Lock()
		sub := sess.subs[channel]
		sess.mu.Unlock()
		if sub == nil || !sub.viaToken {
			return none, ErrPermissionDenied
		}
	}
	data, err = compactJSON(data)
	if err != nil {
		return none, err
	}
	if h := srv.cfg.Hooks.ValidatePublish; h != nil {
		err := h(ctx, PublishRequest{Channel: channel, Data: data, Client: sess.id, User: sess.user})
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return none, e
			}
			return none, &Error{ErrPermissionDenied.Code, truncateReason("permission denied: " + err.Error())}
		}
	}
	if p != nil {
		var skipHistory bool
		if data, skipHistory, err = sess.publishViaProxy(ctx, p, channel, data); err != nil {
			return none, err
		}
		if skipHistory {
			// Published as in a namespace without history: no position.
			noHistory := *ns
			noHistory.HistorySize = 0
			ns = &noHistory
		}
	}
	return srv.publish(ctx, ns, channel, data, sess.connInfo())
}

// readable checks that sess may read channel's presence or history: it is
// subscribed, or could subscribe without a channel token.
func (sess *session) readable(channel string) (*Namespace, error) {
	ns, err := sess.srv.namespace(channel)
	if err != nil {
		return nil, err
	}
	sess.mu.Lock()
	subscribed := sess.subs[channel] != nil
	sess.mu.Unlock()
	if subscribed {
		return ns, nil
	}
	if _, perr := sess.mayUse(ns, channel, ""); perr != nil {
		return nil, perr
	}
	return ns, nil
}

// presence reads the members of channel, or their counts.
func (sess *session) presence(ctx context.Context, channel string, stats bool) (any, error) {
	ns, err := sess.readable(channel)
	if err != nil {
		return nil, err
	}
	if !ns.Presence {
		return nil, ErrNotAvailable
	}
	return sess.srv.presenceOf(ctx, channel, stats)
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

// history reads channel's history for the client, cut to the reply
// budget: a *historyPage.
func (sess *session) history(ctx context.Context, channel string, limit *int, since *broker.Position, reverse bool) (any, error) {
	ns, err := sess.readable(channel)
	if err != nil {
		return nil, err
	}
	return sess.srv.readHistory(ctx, ns, channel, limit, since, reverse, true)
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
