// Package proxy asks the application's backend, over HTTP with JSON
// bodies, what the gateway should do with a client: whether it may
// connect and as whom, subscribe, publish (and what), and what a remote
// procedure call returns.
//
// Requests and replies follow the format of Centrifugo's HTTP proxy, so a
// backend written for Centrifugo works unchanged: a POST whose body holds
// the client's id, transport, protocol and encoding, the user and the
// command's fields, answered with {"result": {…}}, {"error": {"code",
// "message"}} or {"disconnect": {"code", "reason"}}. What differs is said
// in docs/proxy.md.
//
// A Proxy is one endpoint of the backend. It keeps its connections alive,
// bounds the requests in flight, retries only what is safe to repeat,
// and tells the caller apart a refusal (*Error), an order to disconnect
// (*Disconnect), a backend that is down or slow (ErrUnavailable, worth
// retrying), too many requests at once (ErrBusy) and a reply it cannot
// use (ErrBadReply).
package proxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind names what a request asks the backend.
type Kind string

// The kinds of request, as Centrifugo names its proxies.
const (
	Connect    Kind = "connect"
	Refresh    Kind = "refresh"
	Subscribe  Kind = "subscribe"
	Publish    Kind = "publish"
	SubRefresh Kind = "sub_refresh"
	RPC        Kind = "rpc"
)

// Kinds lists every kind.
var Kinds = []Kind{Connect, Refresh, Subscribe, Publish, SubRefresh, RPC}

// idempotent reports whether a request of kind k may be sent again after
// it may have reached the backend: asking again whether a client may
// connect or subscribe changes nothing, publishing or calling twice does.
func (k Kind) idempotent() bool { return k != Publish && k != RPC }

var (
	// ErrUnavailable: the backend did not answer in time, could not be
	// reached, or answered 5xx or 429. The client may try again later.
	ErrUnavailable = errors.New("proxy: the backend is unavailable")
	// ErrBusy: Options.MaxInFlight requests to the backend are under way;
	// the request was not sent. The client may try again later.
	ErrBusy = errors.New("proxy: too many requests to the backend under way")
	// ErrBadReply: the backend answered with a status other than 200, or
	// with a body that is not a valid reply. Trying again will not help.
	ErrBadReply = errors.New("proxy: the backend's reply is not valid")
)

// Error is the backend's refusal, passed on to the client: Code and
// Message in the gateway's error reply.
type Error struct {
	Code      uint32 `json:"code"`
	Message   string `json:"message"`
	Temporary bool   `json:"temporary,omitempty"`
}

func (e *Error) Error() string {
	return "proxy: the backend refused: " + strconv.FormatUint(uint64(e.Code), 10) + " " + e.Message
}

// Disconnect is the backend's order to close the client's connection
// with Code and Reason.
type Disconnect struct {
	Code   uint16 `json:"code"`
	Reason string `json:"reason"`
}

func (d *Disconnect) Error() string {
	return "proxy: the backend asks to disconnect: " + strconv.Itoa(int(d.Code)) + " " + d.Reason
}

// Options configures a Proxy. Every field's default is stated on it.
type Options struct {
	// URL is the backend's endpoint, http:// or https://. Required.
	URL string

	// Timeout bounds one call, retries included. Default: 1 second.
	Timeout time.Duration

	// MaxInFlight caps the requests to this endpoint under way at once;
	// one more fails at once with ErrBusy rather than queue behind a slow
	// backend. Default: 100.
	MaxInFlight int

	// Headers lists the headers of the client's HTTP request (the
	// WebSocket upgrade, or the fallback transport's request) that are
	// passed to the backend, such as Cookie and Authorization. Default:
	// Cookie, Authorization, Origin, User-Agent and Accept-Language.
	Headers []string

	// StaticHeaders are set on every request, such as an API key the
	// backend checks. Default: none.
	StaticHeaders map[string]string

	// Secret, when set, signs every request: the header
	// X-Duplex-Signature is "t=T,v1=S", T the Unix time in seconds and S
	// the hex HMAC-SHA256 under Secret of T, ".", and the body, so the
	// backend can tell that a request came from the gateway and is fresh
	// (see Verify). Default: none, unsigned.
	Secret string

	// MaxReplySize caps the reply's body; a larger one is ErrBadReply.
	// Default: 1 MiB.
	MaxReplySize int64

	// Transport makes the requests. Default: one of its own, keeping up to
	// MaxInFlight connections to the backend alive.
	Transport http.RoundTripper

	// Metrics, when set, counts the requests and their durations.
	// Default: none.
	Metrics *Metrics
}

// Defaults of Options.
const (
	DefaultTimeout      = time.Second
	DefaultMaxInFlight  = 100
	DefaultMaxReplySize = 1 << 20
)

// DefaultHeaders is Options.Headers' default.
var DefaultHeaders = []string{"Cookie", "Authorization", "Origin", "User-Agent", "Accept-Language"}

// SignatureHeader is the header that carries a request's signature.
const SignatureHeader = "X-Duplex-Signature"

// Proxy sends requests to one endpoint of the backend. Its methods are
// safe for concurrent use.
type Proxy struct {
	opts   Options
	url    string
	client *http.Client
	own    *http.Transport // closed by Close; nil with Options.Transport
	sem    chan struct{}
}

// New returns a Proxy for opts.
func New(opts Options) (*Proxy, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("proxy: the URL %q is not an http:// or https:// URL", opts.URL)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxReplySize <= 0 {
		opts.MaxReplySize = DefaultMaxReplySize
	}
	if opts.Headers == nil {
		opts.Headers = DefaultHeaders
	}
	p := &Proxy{opts: opts, url: u.String(), sem: make(chan struct{}, opts.MaxInFlight)}
	rt := opts.Transport
	if rt == nil {
		p.own = &http.Transport{
			Proxy:               nil, // the backend is the app's own: never through HTTP_PROXY
			DialContext:         (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        opts.MaxInFlight,
			MaxIdleConnsPerHost: opts.MaxInFlight,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: opts.Timeout,
			ForceAttemptHTTP2:   true,
		}
		rt = p.own
	}
	p.client = &http.Client{
		Transport: rt,
		// A redirect would send the client's cookies elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// Close closes the connections the Proxy keeps alive. Calls under way
// finish; later calls open new connections.
func (p *Proxy) Close() {
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
}

// Client is what a request tells the backend of the client it is about.
type Client struct {
	ID        string          // the client's id, "client" in the body
	Transport string          // "websocket", "http_stream" or "sse"
	Protocol  string          // the wire protocol: "json"
	User      string          // the user id, once known; "" before connect
	Meta      json.RawMessage // what the connect reply attached; nil for none
	Header    http.Header     // the client's HTTP request headers; only Options.Headers are passed
	RemoteIP  string          // the client's address, passed as X-Real-IP
}

// The requests' bodies.
type (
	common struct {
		Client    string          `json:"client"`
		Transport string          `json:"transport"`
		Protocol  string          `json:"protocol"`
		Encoding  string          `json:"encoding"`
		User      string          `json:"user,omitempty"`
		Meta      json.RawMessage `json:"meta,omitempty"`
	}
	connectBody struct {
		common
		*ConnectRequest
	}
	subscribeBody struct {
		common
		*SubscribeRequest
	}
	publishBody struct {
		common
		*PublishRequest
	}
	channelBody struct {
		common
		Channel string `json:"channel"`
	}
	rpcBody struct {
		common
		*RPCRequest
	}
)

// ConnectRequest is what the client sent with its connect command.
type ConnectRequest struct {
	Name     string          `json:"name,omitempty"`     // the client's name, as it says
	Version  string          `json:"version,omitempty"`  // the client's version, as it says
	Data     json.RawMessage `json:"data,omitempty"`     // the connect command's data
	Channels []string        `json:"channels,omitempty"` // the channels it asks to be subscribed to
}

// ConnectResult is the backend's answer to a connect request.
type ConnectResult struct {
	User     string          `json:"user"`               // the user id; "" for anonymous
	ExpireAt int64           `json:"expire_at"`          // Unix seconds when the session ends unless refreshed; 0 for never
	Info     json.RawMessage `json:"info,omitempty"`     // connection info, shown to others in presence and publications
	Data     json.RawMessage `json:"data,omitempty"`     // sent to the client in the connect reply
	Channels []string        `json:"channels,omitempty"` // channels to subscribe the client to, server-side
	Meta     json.RawMessage `json:"meta,omitempty"`     // kept with the connection and sent with its later requests; never to the client
}

// RefreshResult is the backend's answer to a refresh or sub_refresh
// request.
type RefreshResult struct {
	Expired  bool            `json:"expired"`        // end the session (or subscription) now
	ExpireAt int64           `json:"expire_at"`      // the new end, Unix seconds; 0 for never
	Info     json.RawMessage `json:"info,omitempty"` // new info, when set
}

// SubscribeRequest is the client's subscribe command.
type SubscribeRequest struct {
	Channel string          `json:"channel"`
	Token   string          `json:"token,omitempty"` // the subscription token the client sent, if any
	Data    json.RawMessage `json:"data,omitempty"`
}

// SubscribeResult is the backend's answer to a subscribe request.
type SubscribeResult struct {
	Info     json.RawMessage `json:"info,omitempty"` // channel info of the subscriber, in presence and its publications
	Data     json.RawMessage `json:"data,omitempty"` // sent to the client in the subscribe reply
	ExpireAt int64           `json:"expire_at"`      // Unix seconds when the subscription ends unless refreshed; 0 for never
}

// PublishRequest is the client's publish command.
type PublishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// PublishResult is the backend's answer to a publish request.
type PublishResult struct {
	Data        json.RawMessage `json:"data,omitempty"` // when set, published instead of the client's data
	SkipHistory bool            `json:"skip_history"`   // publish without keeping it in history
}

// RPCRequest is the client's rpc command.
type RPCRequest struct {
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// RPCResult is the backend's answer to an rpc request.
type RPCResult struct {
	Data json.RawMessage `json:"data,omitempty"` // the rpc reply's data
}

func (c *Client) common() common {
	return common{Client: c.ID, Transport: c.Transport, Protocol: c.Protocol, Encoding: "json", User: c.User, Meta: c.Meta}
}

// Connect asks whether the client may connect, and as whom.
func (p *Proxy) Connect(ctx context.Context, c *Client, r *ConnectRequest) (*ConnectResult, error) {
	var res ConnectResult
	return &res, p.call(ctx, Connect, c, connectBody{c.common(), r}, &res)
}

// Refresh asks whether the client's session goes on, and until when.
func (p *Proxy) Refresh(ctx context.Context, c *Client) (*RefreshResult, error) {
	var res RefreshResult
	return &res, p.call(ctx, Refresh, c, c.common(), &res)
}

// Subscribe asks whether the client may subscribe to a channel.
func (p *Proxy) Subscribe(ctx context.Context, c *Client, r *SubscribeRequest) (*SubscribeResult, error) {
	var res SubscribeResult
	return &res, p.call(ctx, Subscribe, c, subscribeBody{c.common(), r}, &res)
}

// Publish asks whether the client may publish, and what.
func (p *Proxy) Publish(ctx context.Context, c *Client, r *PublishRequest) (*PublishResult, error) {
	var res PublishResult
	return &res, p.call(ctx, Publish, c, publishBody{c.common(), r}, &res)
}

// SubRefresh asks whether the client's subscription to channel goes on.
func (p *Proxy) SubRefresh(ctx context.Context, c *Client, channel string) (*RefreshResult, error) {
	var res RefreshResult
	return &res, p.call(ctx, SubRefresh, c, channelBody{c.common(), channel}, &res)
}

// RPC calls a method of the backend for the client.
func (p *Proxy) RPC(ctx context.Context, c *Client, r *RPCRequest) (*RPCResult, error) {
	var res RPCResult
	return &res, p.call(ctx, RPC, c, rpcBody{c.common(), r}, &res)
}

// retryPause is the pause before the first retry; it doubles.
const retryPause = 50 * time.Millisecond

// call sends body and decodes the reply's result into res.
func (p *Proxy) call(ctx context.Context, kind Kind, c *Client, body, res any) (err error) {
	start := time.Now()
	defer func() { p.opts.Metrics.observe(kind, err, time.Since(start)) }()
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	default:
		return ErrBusy
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("proxy: encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	pause := retryPause
	for {
		var sent bool
		sent, err = p.once(ctx, c, payload, res)
		if err == nil || !errors.Is(err, ErrUnavailable) || (sent && !kind.idempotent()) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause *= 2
	}
}

// once makes one request. sent reports whether it may have reached the
// backend.
func (p *Proxy) once(ctx context.Context, c *Client, payload []byte, res any) (sent bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(payload))
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, name := range p.opts.Headers {
		if v := c.Header.Values(name); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	for name, v := range p.opts.StaticHeaders {
		req.Header.Set(name, v)
	}
	if c.RemoteIP != "" {
		req.Header.Set("X-Real-IP", c.RemoteIP)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if p.opts.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(p.opts.Secret, time.Now(), payload))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var op *net.OpError
		sent = !(errors.As(err, &op) && op.Op == "dial")
		return sent, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.opts.MaxReplySize+1))
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("%w: status %d", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return true, fmt.Errorf("%w: status %d", ErrBadReply, resp.StatusCode)
	case err != nil:
		return true, fmt.Errorf("%w: reading the reply: %v", ErrUnavailable, err)
	case int64(len(body)) > p.opts.MaxReplySize:
		return true, fmt.Errorf("%w: the reply is over %d bytes", ErrBadReply, p.opts.MaxReplySize)
	}
	return true, decodeReply(body, res)
}

// decodeReply decodes a reply: exactly one of result, error and
// disconnect, each well-formed.
func decodeReply(body []byte, res any) error {
	var env struct {
		Result     json.RawMessage `json:"result"`
		Error      *Error          `json:"error"`
		Disconnect *Disconnect     `json:"disconnect"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	hasResult := len(env.Result) > 0 && string(env.Result) != "null"
	n := 0
	for _, has := range []bool{hasResult, env.Error != nil, env.Disconnect != nil} {
		if has {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: it must hold exactly one of result, error and disconnect", ErrBadReply)
	}
	switch {
	case env.Error != nil:
		if env.Error.Code == 0 {
			return fmt.Errorf("%w: an error without a code", ErrBadReply)
		}
		if !utf8.ValidString(env.Error.Message) {
			return fmt.Errorf("%w: an error message that is not UTF-8", ErrBadReply)
		}
		return env.Error
	case env.Disconnect != nil:
		// The code and reason go into a close frame: an application's
		// code, and a reason that fits the frame (RFC 6455 section 5.5).
		if d := env.Disconnect; d.Code < 3000 || d.Code > 4999 || len(d.Reason) > 123 || !utf8.ValidString(d.Reason) {
			return fmt.Errorf("%w: a disconnect needs a code from 3000 to 4999 and a UTF-8 reason of at most 123 bytes", ErrBadReply)
		}
		return env.Disconnect
	}
	if env.Result[0] != '{' {
		return fmt.Errorf("%w: the result is not an object", ErrBadReply)
	}
	if err := json.Unmarshal(env.Result, res); err != nil {
		return fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	return nil
}

// Sign returns the value of the X-Duplex-Signature header for a request
// made at t with body.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("proxy: the request's signature is missing, wrong or stale")

// Verify checks, for a backend written in Go, the X-Duplex-Signature of a
// request whose body is body: signed under secret, at most maxAge before
// now (and not more than maxAge after it, for clocks apart).
func Verify(secret string, header string, body []byte, now time.Time, maxAge time.Duration) error {
	var ts, sig string
	for len(header) > 0 {
		var part string
		part, header, _ = strings.Cut(header, ",")
		switch {
		case len(part) > 2 && part[:2] == "t=":
			ts = part[2:]
		case len(part) > 3 && part[:3] == "v1=":
			sig = part[3:]
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > maxAge || d < -maxAge {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(secret, ts, body)) {
		return ErrBadSignature
	}
	return nil
}
