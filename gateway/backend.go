package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/proxy"
	"github.com/duplexws/duplex/websocket"
)

// The node's use of the app's backend (gateway/proxy, docs/proxy.md): it
// builds the proxies of Config.Proxy, says what a request tells the
// backend of a client, and turns the backend's answers into the
// protocol's errors and close codes, once for every protocol and
// transport.

// ProxyConfig names the endpoints of the app's backend and which of them
// the node asks at connect and refresh; each Namespace names its own for
// subscribe, publish, sub_refresh and rpc. The zero value asks nothing.
type ProxyConfig struct {
	// Endpoints are the backend's endpoints by name, each one URL with
	// its timeout, header allow-list, static headers, signing secret and
	// in-flight cap (proxy.Options; Metrics and Transport are the node's
	// own). Default: none.
	Endpoints map[string]proxy.Options

	// Connect names the endpoint asked at connect: it decides who the
	// client is, in place of the JWT (Auth) and Hooks.Authenticate.
	// Default: "", no connect proxy.
	Connect string
	// Refresh names the endpoint asked when the expiry the connect proxy
	// set (expire_at) has passed; without it the connection then closes
	// with 4003, as a JWT's does. Default: "".
	Refresh string
	// RPC names the endpoint of rpc methods whose namespace (the part
	// before the first colon) names none. Default: "", and such methods
	// get error 104.
	RPC string

	// SkipConnectWithToken verifies a connect that carries a token as a
	// JWT (Auth), without asking the connect proxy: clients with a token
	// and clients with a cookie may then use one node. Default: false,
	// the connect proxy decides for every client.
	SkipConnectWithToken bool
}

// ErrBackendUnavailable is the error reply when the app's backend did not
// answer in time, could not be reached, or had too many requests under
// way; the command may be retried after a pause.
var ErrBackendUnavailable = &Error{114, "unavailable: the app's backend did not answer; retry later"}

// proxies are a node's proxy endpoints, by name.
type proxies map[string]*proxy.Proxy

// newProxies builds the endpoints of c, with metrics registered in reg,
// and checks that every name the configuration uses is one of them.
func newProxies(c *Config, metrics *proxy.Metrics) (proxies, error) {
	ps := make(proxies, len(c.Proxy.Endpoints))
	names := make([]string, 0, len(c.Proxy.Endpoints))
	for name := range c.Proxy.Endpoints {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		opts := c.Proxy.Endpoints[name]
		opts.Metrics = metrics
		p, err := proxy.New(opts)
		if err != nil {
			ps.close()
			return nil, fmt.Errorf("gateway: proxy endpoint %q: %w", name, err)
		}
		ps[name] = p
	}
	check := func(what, name string) error {
		if name != "" && ps[name] == nil {
			return fmt.Errorf("gateway: %s names the proxy endpoint %q, which is not configured", what, name)
		}
		return nil
	}
	errs := []error{
		check("proxy connect", c.Proxy.Connect),
		check("proxy refresh", c.Proxy.Refresh),
		check("proxy rpc", c.Proxy.RPC),
	}
	for _, ns := range c.Namespaces {
		where := fmt.Sprintf("namespace %q", ns.Name)
		errs = append(errs,
			check(where+" subscribe_proxy", ns.SubscribeProxy),
			check(where+" publish_proxy", ns.PublishProxy),
			check(where+" sub_refresh_proxy", ns.SubRefreshProxy),
			check(where+" rpc_proxy", ns.RPCProxy))
	}
	if err := errors.Join(errs...); err != nil {
		ps.close()
		return nil, err
	}
	return ps, nil
}

func (ps proxies) close() {
	for _, p := range ps {
		p.Close()
	}
}

// headers lists the request headers any endpoint passes on, which the
// node keeps with a session; nil when there are no endpoints.
func (c *ProxyConfig) headers() []string {
	seen := map[string]bool{}
	var out []string
	for _, opts := range c.Endpoints {
		list := opts.Headers
		if list == nil {
			list = proxy.DefaultHeaders
		}
		for _, h := range list {
			h = http.CanonicalHeaderKey(h)
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

// keepHeaders copies from h the headers in names, for the backend.
func keepHeaders(h http.Header, names []string) http.Header {
	if len(names) == 0 {
		return nil
	}
	out := make(http.Header, len(names))
	for _, k := range names {
		for _, v := range h.Values(k) {
			// A copy, so as not to pin a larger buffer v may be part of.
			out[k] = append(out[k], strings.Clone(v))
		}
	}
	return out
}

// proxyClient is what a request to the backend says of sess.
func (sess *session) proxyClient() *proxy.Client {
	return &proxy.Client{
		ID:        sess.id,
		Transport: sess.tr.kind(),
		Protocol:  "json",
		User:      sess.user,
		Meta:      sess.meta,
		Header:    sess.proxyHeader,
		RemoteIP:  sess.ip,
	}
}

// backendError turns the error of a request to the backend into the
// client's error reply, or closes the session for a disconnect (and
// reports nil). what names the request, for the log.
func (sess *session) backendError(what string, err error) *Error {
	var refused *proxy.Error
	var disc *proxy.Disconnect
	switch {
	case errors.As(err, &refused):
		return &Error{int(refused.Code), refused.Message}
	case errors.As(err, &disc):
		sess.close(websocket.StatusCode(disc.Code), disc.Reason, reasonServer)
		return nil
	case errors.Is(err, proxy.ErrUnavailable), errors.Is(err, proxy.ErrBusy):
		sess.srv.log.Warn("the app's backend did not answer", "proxy", what, "client", sess.id, "err", err)
		return ErrBackendUnavailable
	}
	sess.srv.log.Error("the app's backend answered with a reply the gateway cannot use", "proxy", what, "client", sess.id, "err", err)
	return ErrInternal
}

// compactOptional compacts a JSON value from the backend to one line,
// so that it fits the line-delimited protocol; nil stays nil.
func compactOptional(field string, v json.RawMessage) (json.RawMessage, error) {
	if len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	c, err := compactJSON(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", proxy.ErrBadReply, field, err)
	}
	return c, nil
}

// connectRefused is connect's failure that the client is told of in the
// reply to its connect command; final ones close the session after it.
type connectRefused struct {
	reply *Error
	final bool
}

// connectViaProxy asks the connect proxy who the client is. It reports
// the credentials, or why not (nil, nil when the session was closed).
func (sess *session) connectViaProxy(ctx context.Context, p *proxy.Proxy, req *proxy.ConnectRequest) (*Credentials, *connectRefused) {
	res, err := p.Connect(ctx, sess.proxyClient(), req)
	if err == nil {
		err = compactConnectResult(res)
	}
	if err != nil {
		var refused *proxy.Error
		final := errors.As(err, &refused) && !refused.Temporary
		e := sess.backendError(string(proxy.Connect), err)
		if e == nil {
			return nil, nil
		}
		return nil, &connectRefused{reply: e, final: final}
	}
	creds := &Credentials{User: res.User, Info: res.Info, Channels: res.Channels}
	sess.serverSubs = res.Channels
	if res.ExpireAt > 0 {
		creds.ExpiresAt = time.Unix(res.ExpireAt, 0)
	}
	sess.meta, sess.proxied = res.Meta, true
	sess.connectData = res.Data
	return creds, nil
}

// compactConnectResult compacts the JSON values of a connect result and
// checks its channels.
func compactConnectResult(r *proxy.ConnectResult) (err error) {
	if r.Info, err = compactOptional("info", r.Info); err != nil {
		return err
	}
	if r.Data, err = compactOptional("data", r.Data); err != nil {
		return err
	}
	for _, c := range r.Channels {
		if !validChannel(c) {
			return fmt.Errorf("%w: channels: %q is not a valid channel name", proxy.ErrBadReply, c)
		}
	}
	return nil
}

// refreshViaProxy asks the refresh proxy whether the session goes on, once
// its expiry has passed; it runs in a goroutine of the server's while
// sess.refreshing is set. A backend that does not answer is asked again a
// few seconds later; one that refuses, or says expired, ends the session
// with 4003.
func (sess *session) refreshViaProxy(p *proxy.Proxy) {
	defer sess.refreshing.Store(false)
	// The endpoint's timeout bounds the request, and Shutdown waits.
	res, err := p.Refresh(context.Background(), sess.proxyClient())
	if err != nil {
		var refused *proxy.Error
		var disc *proxy.Disconnect
		switch {
		case errors.As(err, &disc):
			sess.close(websocket.StatusCode(disc.Code), disc.Reason, reasonServer)
		case errors.As(err, &refused):
			sess.close(CloseTokenExpired, truncateReason("token expired: "+refused.Message), reasonTokenExpired)
		default:
			sess.srv.log.Warn("the app's backend did not refresh a session; asking again", "client", sess.id, "err", err)
			sess.expires.Store(time.Now().Add(refreshRetryPause).UnixNano())
		}
		return
	}
	if res.Expired {
		sess.close(CloseTokenExpired, "token expired", reasonTokenExpired)
		return
	}
	if info, err := compactOptional("info", res.Info); err != nil {
		sess.srv.log.Error("the app's backend answered with a reply the gateway cannot use", "proxy", string(proxy.Refresh), "client", sess.id, "err", err)
	} else if info != nil {
		sess.setConnInfo(info)
	}
	if res.ExpireAt == 0 {
		sess.expires.Store(0)
		return
	}
	sess.expires.Store(sess.srv.expiryDeadline(time.Unix(res.ExpireAt, 0)))
}

// setConnInfo makes info the connection's info, as the connect proxy's
// would have been: in the publications the client makes from now on, and
// at once in the presence of its channels where it appears by it.
func (sess *session) setConnInfo(info json.RawMessage) {
	var entries []presenceEntry
	sess.mu.Lock()
	if sess.info == nil || sess.closing {
		sess.mu.Unlock()
		return
	}
	ci := *sess.info
	ci.Info = info
	sess.info = &ci
	for channel, sub := range sess.subs {
		if sub.ns.Presence && !sub.buffering && sub.member == nil {
			entries = append(entries, presenceEntry{channel, &ci})
		}
	}
	sess.mu.Unlock()
	sess.updatePresence(entries)
}

// updatePresence writes entries to the broker again, so that presence
// shows changed info before the next periodic refresh.
func (sess *session) updatePresence(entries []presenceEntry) {
	srv := sess.srv
	if len(entries) == 0 || !srv.brokerReady() {
		return
	}
	for _, e := range entries {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := srv.broker.AddPresence(ctx, e.channel, e.info, srv.cfg.PresenceTTL); err != nil {
			srv.log.Warn("presence update failed", "channel", e.channel, "err", err)
		}
		cancel()
	}
}

// connInfo is the connection's info, which a refresh may change.
func (sess *session) connInfo() *broker.ClientInfo {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.info
}

// refreshRetryPause is how long a session whose refresh the backend did
// not answer waits before it is asked again.
const refreshRetryPause = 5 * time.Second

// subscribeViaProxy asks the namespace's subscribe proxy whether sess may
// subscribe; on success it reports how the client appears in the
// channel's presence and the data for the reply.
func (sess *session) subscribeViaProxy(ctx context.Context, p *proxy.Proxy, req subscribeRequest) (*proxyGrant, *Error) {
	var data json.RawMessage
	if len(req.Data) > 0 {
		c, err := compactJSON(req.Data)
		if err != nil {
			return nil, asError(err)
		}
		data = c
	}
	res, err := p.Subscribe(ctx, sess.proxyClient(), &proxy.SubscribeRequest{Channel: req.Channel, Token: req.Token, Data: data})
	if err == nil {
		if res.Info, err = compactOptional("info", res.Info); err == nil {
			res.Data, err = compactOptional("data", res.Data)
		}
	}
	if err != nil {
		if e := sess.backendError(string(proxy.Subscribe), err); e != nil {
			return nil, e
		}
		return nil, ErrInternal // closing: the reply goes nowhere
	}
	g := &proxyGrant{info: res.Info, data: res.Data}
	if res.ExpireAt > 0 {
		g.expires = time.Unix(res.ExpireAt, 0).UnixNano()
	}
	return g, nil
}

// proxyGrant is what the subscribe proxy's answer adds to a subscription.
type proxyGrant struct {
	info    json.RawMessage // the subscriber's channel info, in presence
	data    json.RawMessage // for the subscribe reply
	expires int64           // Unix nanoseconds when the subscription ends unless refreshed; 0 never
}

// noteSubExpiryLocked lowers the session's earliest subscription expiry
// to exp (Unix nanoseconds, not 0). The caller holds mu.
func (sess *session) noteSubExpiryLocked(exp int64) {
	if cur := sess.subExpires.Load(); cur == 0 || exp < cur {
		sess.subExpires.Store(exp)
	}
}

// refreshSubs asks, for each subscription of sess whose expiry has passed,
// its namespace's sub_refresh proxy whether it goes on; one the backend
// refuses or says expired, or whose namespace has no such proxy, ends with
// an unsubscribe push. A backend that does not answer is asked again a few
// seconds later. It runs in a goroutine of the server's while
// sess.subRefreshing is set.
func (sess *session) refreshSubs(now time.Time) {
	defer sess.subRefreshing.Store(false)
	type due struct {
		channel string
		ns      *Namespace
	}
	var list []due
	sess.mu.Lock()
	for channel, sub := range sess.subs {
		if sub.expires != 0 && sub.expires <= now.UnixNano() {
			list = append(list, due{channel, sub.ns})
		}
	}
	sess.mu.Unlock()
	next := make(map[string]int64, len(list))
	infos := make(map[string]json.RawMessage)
	for _, d := range list {
		p := sess.srv.proxies[d.ns.SubRefreshProxy]
		if p == nil {
			sess.serverUnsubscribe(d.channel, "subscription expired")
			continue
		}
		res, err := p.SubRefresh(context.Background(), sess.proxyClient(), d.channel)
		var refused *proxy.Error
		var disc *proxy.Disconnect
		switch {
		case errors.As(err, &disc):
			sess.close(websocket.StatusCode(disc.Code), disc.Reason, reasonServer)
			return
		case errors.As(err, &refused):
			sess.serverUnsubscribe(d.channel, truncateReason("subscription expired: "+refused.Message))
		case err != nil:
			sess.srv.log.Warn("the app's backend did not refresh a subscription; asking again", "client", sess.id, "channel", d.channel, "err", err)
			next[d.channel] = now.Add(refreshRetryPause).UnixNano()
		case res.Expired:
			sess.serverUnsubscribe(d.channel, "subscription expired")
		case res.ExpireAt == 0:
			next[d.channel] = 0
		default:
			next[d.channel] = time.Unix(res.ExpireAt, 0).UnixNano()
		}
		if err == nil && !res.Expired {
			if info, err := compactOptional("info", res.Info); err != nil {
				sess.srv.log.Error("the app's backend answered with a reply the gateway cannot use", "proxy", string(proxy.SubRefresh), "client", sess.id, "channel", d.channel, "err", err)
			} else if info != nil {
				infos[d.channel] = info
			}
		}
	}
	// New channel info is how the client appears in the channel's
	// presence from now on, as the subscribe proxy's info would be.
	var entries []presenceEntry
	defer func() { sess.updatePresence(entries) }()
	// The new expiries, and the earliest of all for the janitor.
	sess.mu.Lock()
	defer sess.mu.Unlock()
	var earliest int64
	for channel, sub := range sess.subs {
		if exp, ok := next[channel]; ok {
			sub.expires = exp
		}
		if info, ok := infos[channel]; ok {
			m := broker.ClientInfo{Client: sess.id, User: sess.user}
			if sub.member != nil {
				m = *sub.member
			}
			m.Info = info
			sub.member = &m
			if sub.ns.Presence && !sub.buffering {
				entries = append(entries, presenceEntry{channel, sub.member})
			}
		}
		if sub.expires != 0 && (earliest == 0 || sub.expires < earliest) {
			earliest = sub.expires
		}
	}
	sess.subExpires.Store(earliest)
}

// publishViaProxy asks the namespace's publish proxy whether sess may
// publish data to channel, and what: it reports the data to publish and
// whether to keep it out of history.
func (sess *session) publishViaProxy(ctx context.Context, p *proxy.Proxy, channel string, data json.RawMessage) (json.RawMessage, bool, error) {
	res, err := p.Publish(ctx, sess.proxyClient(), &proxy.PublishRequest{Channel: channel, Data: data})
	if err == nil && len(res.Data) > 0 && string(res.Data) != "null" {
		var c json.RawMessage
		if c, err = compactOptional("data", res.Data); err == nil {
			data = c
		}
	}
	if err != nil {
		if e := sess.backendError(string(proxy.Publish), err); e != nil {
			return nil, false, e
		}
		return nil, false, ErrInternal
	}
	return data, res.SkipHistory, nil
}

// rpcParams are the params of the rpc command.
type rpcParams struct {
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data"`
}

// rpcResult is the result of the rpc command.
type rpcResult struct {
	Data json.RawMessage `json:"data,omitempty"`
}

// rpc calls a method of the app's backend for the client: the endpoint of
// the namespace the method names ("ns:method"), or ProxyConfig.RPC.
func (sess *session) rpc(ctx context.Context, params *rpcParams) (any, error) {
	if params == nil || params.Method == "" {
		return nil, badRequest("params.method is required")
	}
	srv := sess.srv
	name := srv.cfg.Proxy.RPC
	if nsName, _, found := strings.Cut(params.Method, ":"); found || srv.namespaces[""] != nil {
		if !found {
			nsName = ""
		}
		if ns := srv.namespaces[nsName]; ns != nil && ns.RPCProxy != "" {
			name = ns.RPCProxy
		}
	}
	p := srv.proxies[name]
	if name == "" || p == nil {
		return nil, ErrMethodNotFound
	}
	var data json.RawMessage
	if len(params.Data) > 0 {
		c, err := compactJSON(params.Data)
		if err != nil {
			return nil, err
		}
		data = c
	}
	res, err := p.RPC(ctx, sess.proxyClient(), &proxy.RPCRequest{Method: params.Method, Data: data})
	if err == nil {
		res.Data, err = compactOptional("data", res.Data)
	}
	if err != nil {
		if e := sess.backendError(string(proxy.RPC), err); e != nil {
			return nil, e
		}
		return nil, ErrInternal
	}
	return rpcResult{Data: res.Data}, nil
}
