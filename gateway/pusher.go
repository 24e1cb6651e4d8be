package gateway

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Pusher configures the Pusher Channels protocol (version 7), which
// pusher-js, Laravel Echo and Pusher's other clients speak: see
// docs/pusher.md for what is served and what is not.
type Pusher struct {
	// Apps are the applications served, each isolated from the others:
	// its channels are its own in the hub and at the broker.
	Apps []PusherApp
}

// PusherApp is one Pusher application: its clients connect to
// /app/{Key}, sign with Secret, and its backend calls /apps/{ID}/….
type PusherApp struct {
	// ID names the app in the HTTP API: 1 to 64 letters, digits, "-" or
	// "_".
	ID string
	// Key is the public key clients connect with. Required, unique.
	Key string
	// Secret signs channel authorizations and HTTP API requests.
	// Required.
	Secret string
	// ClientEvents lets clients trigger "client-" events on the private
	// and presence channels they are subscribed to. Default: off, as on
	// Pusher.
	ClientEvents bool
	// ClientEventRate caps the client events of one connection per
	// second (the burst is the same number); over it an event is refused
	// with pusher:error 4301. Default: 10, Pusher's.
	ClientEventRate float64
	// MaxPresenceMembers caps the distinct users of one presence channel
	// (Pusher's is 100); a subscriber over it gets
	// pusher:subscription_error. Default: 1000.
	MaxPresenceMembers int
	// Webhooks receive the app's webhooks: see PusherWebhook. Default:
	// none.
	Webhooks []PusherWebhook
	// MaxConnections caps the app's connections, counted on every node
	// at the broker; a connection over it is refused with pusher:error
	// 4004, as on Pusher. Default: 0, no cap but the gateway's.
	MaxConnections int
	// Origins, when not empty, replaces Config.OriginPatterns for the
	// app's clients: the hosts (path.Match patterns such as
	// "*.example.com"), besides the gateway's own, whose web pages may
	// connect. A page of another origin is refused with pusher:error
	// 4009. Default: Config.OriginPatterns, refused at the handshake.
	Origins []string
	// Disabled refuses the app's connections with pusher:error 4003 and
	// its HTTP API requests with 403. Default: false.
	Disabled bool
	// HistorySize is how many events each channel of the app keeps for
	// the recovery extension (docs/pusher.md): a client that subscribes
	// with the id of the last event it got receives those it missed.
	// Default: 0, no history and no recovery, as on Pusher.
	HistorySize int
	// HistoryTTL is how long an event stays in history. Default: 0,
	// only HistorySize bounds it.
	HistoryTTL time.Duration
}

// pusherActivityTimeout is the activity_timeout, in seconds, told to
// clients: after that long without a message they send pusher:ping.
// Pusher's own value.
const pusherActivityTimeout = 120

func (p *Pusher) check() error {
	ids, keys := make(map[string]bool), make(map[string]bool)
	for _, a := range p.Apps {
		if a.ID == "" || len(a.ID) > 64 || strings.Trim(a.ID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return fmt.Errorf("gateway: pusher app id %q: 1 to 64 letters, digits, - or _", a.ID)
		}
		if a.Key == "" || a.Secret == "" {
			return fmt.Errorf("gateway: pusher app %q: key and secret are required", a.ID)
		}
		if !validPusherName(a.Key) {
			return fmt.Errorf("gateway: pusher app %q: invalid key %q", a.ID, a.Key)
		}
		if ids[a.ID] || keys[a.Key] {
			return fmt.Errorf("gateway: pusher app %q: id or key configured twice", a.ID)
		}
		ids[a.ID], keys[a.Key] = true, true
		for _, h := range a.Webhooks {
			if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("gateway: pusher app %q: webhook URL %q is not an http or https URL", a.ID, h.URL)
			}
			for _, name := range h.Events {
				if !slices.Contains(pusherWebhookEvents, name) {
					return fmt.Errorf("gateway: pusher app %q: unknown webhook event %q (known: %s)", a.ID, name, strings.Join(pusherWebhookEvents, ", "))
				}
			}
		}
		for _, o := range a.Origins {
			if _, err := path.Match(o, ""); err != nil {
				return fmt.Errorf("gateway: pusher app %q: malformed origin pattern %q", a.ID, o)
			}
		}
		if a.ClientEventRate < 0 || a.MaxPresenceMembers < 0 || a.MaxConnections < 0 || a.HistorySize < 0 || a.HistoryTTL < 0 {
			return fmt.Errorf("gateway: pusher app %q: negative client event rate or member cap", a.ID)
		}
	}
	return nil
}

func (a *PusherApp) withDefaults() {
	if a.ClientEventRate == 0 {
		a.ClientEventRate = 10
	}
	if a.MaxPresenceMembers == 0 {
		a.MaxPresenceMembers = 1000
	}
}

// The namespaces of an app's channels: presence channels in one with
// member events, cache channels in ones whose history keeps the last event for
// pusherCacheTTL, the others in one without either. Their permissions
// keep duplex clients out; the Pusher protocol grants subscriptions by its
// own rules (subscribeRequest.Granted).
func (a *PusherApp) namespaces() []Namespace {
	// Every channel keeps a presence set, without join and leave events,
	// in which the HTTP API counts its subscriptions on every node.
	plain := Namespace{Name: "$pusher." + a.ID, Subscribe: PermissionServer, Publish: PermissionServer,
		SlowConsumer: SlowDisconnect, Presence: true, HistorySize: a.HistorySize, HistoryTTL: a.HistoryTTL}
	presence := plain
	presence.Name += ".presence"
	presence.Presence, presence.JoinLeave, presence.PresenceCountAbove, presence.perUserEvents = true, true, -1, true
	cache, presenceCache := plain, presence
	cache.Name += ".cache"
	presenceCache.Name = "$pusher." + a.ID + ".presence-cache"
	for _, ns := range []*Namespace{&cache, &presenceCache} {
		ns.HistorySize, ns.HistoryTTL = max(1, a.HistorySize), pusherCacheTTL
	}
	return []Namespace{plain, presence, cache, presenceCache}
}

// pusherCacheTTL is how long a cache channel keeps its last event, as on
// Pusher.
const pusherCacheTTL = 30 * time.Minute

// isCacheChannel reports whether name is one of Pusher's cache channels,
// which give a subscriber the last event or pusher:cache_miss.
func isCacheChannel(name string) bool {
	for _, p := range []string{"cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// pusherChannel is the gateway's name of the app's channel name: the
// channel in the app's namespace of its kind.
func (a *PusherApp) pusherChannel(name string) string {
	ns := "$pusher." + a.ID
	switch {
	case strings.HasPrefix(name, "presence-cache-"):
		ns += ".presence-cache"
	case strings.HasPrefix(name, "presence-"):
		ns += ".presence"
	case isCacheChannel(name):
		ns += ".cache"
	}
	return ns + ":" + name
}

// pusherUserChannel begins the name of the channel of events to one user
// (Pusher's sendToUser).
const pusherUserChannel = "#server-to-user-"

// pusherUser is the gateway's user of the app's signed-in user id: users
// of different apps, and of duplex tokens, never meet.
func (a *PusherApp) pusherUser(id string) string { return "$pusher." + a.ID + ":" + id }

// validPusherChannel reports whether name may name a channel of an app:
// a name of validPusherName, or the channel of a user's events.
func validPusherChannel(name string) bool {
	if id, ok := strings.CutPrefix(name, pusherUserChannel); ok {
		return validPusherName(id)
	}
	return validPusherName(name)
}

// pusherName is the app's name of a channel of the gateway that
// pusherChannel named.
func pusherName(channel string) string {
	_, name, _ := strings.Cut(channel, ":")
	return name
}

// validPusherName reports whether name may name a Pusher channel (or app
// key): up to 164 of the characters Pusher allows.
func validPusherName(name string) bool {
	if name == "" || len(name) > 164 {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("_-=@,.;", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// newSocketID returns a Pusher socket id, "digits.digits", random.
func newSocketID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:4])), 10) + "." +
		strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[4:])), 10)
}

// Pusher's close codes (and pusher:error codes): 4000–4099 tell the client
// not to reconnect, 4100–4199 to reconnect after a pause, 4200–4299 at
// once.
const (
	pusherCloseRefused        websocket.StatusCode = 4000 // a bad request: do not reconnect
	pusherCloseAppUnknown     websocket.StatusCode = 4001
	pusherCloseBadVersion     websocket.StatusCode = 4006
	pusherCloseUnsupported    websocket.StatusCode = 4007
	pusherCloseNoVersion      websocket.StatusCode = 4008
	pusherCloseAppDisabled    websocket.StatusCode = 4003
	pusherCloseOverQuota      websocket.StatusCode = 4004
	pusherCloseUnauthorized   websocket.StatusCode = 4009
	pusherCloseOverCapacity   websocket.StatusCode = 4100
	pusherCloseReconnect      websocket.StatusCode = 4200
	pusherErrClientEventsRate                      = 4301
)

// servePusher accepts a Pusher client of the app whose key the path names.
// The handshake does not check the key or the protocol version: as with
// Pusher, the client learns what is wrong from a pusher:error and the
// close code.
func (s *Server) servePusher(w http.ResponseWriter, r *http.Request) {
	key, version := r.PathValue("key"), r.URL.Query().Get("protocol")
	opts, originOK := &s.pusherAccept, true
	if app := s.pusherApps[key]; app != nil && len(app.Origins) > 0 {
		// The app's own origins: checked here, so that a page of another
		// is told why with Pusher's code rather than an HTTP 403.
		opts, originOK = &s.pusherAcceptAnyOrigin, app.allowsOrigin(r)
	}
	s.acceptWebSocket(w, r, opts, func(tr *wsTransport, ip string) {
		s.startPusher(tr, ip, key, version, originOK)
	})
}

// allowsOrigin reports whether r comes from no web page, a page of the
// gateway's own host, or one of the app's Origins.
func (a *PusherApp) allowsOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pattern := range a.Origins {
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// startPusher starts the session of a Pusher client, or refuses it with
// pusher:error and the close code that says why.
func (s *Server) startPusher(tr *wsTransport, ip, key, version string, originOK bool) {
	refuse := func(code websocket.StatusCode, msg, metricReason string) {
		s.metrics.disconnects.With(metricReason).Inc()
		tr.close(code, msg, encodePusherError(int(code), msg))
		s.connWG.Done()
	}
	app := s.pusherApps[key]
	switch {
	case app == nil:
		refuse(pusherCloseAppUnknown, "App key "+truncateReason(key)+" does not exist", reasonUnauthorized)
		return
	case version == "":
		refuse(pusherCloseNoVersion, "No protocol version supplied", reasonBadRequest)
		return
	case strings.Trim(version, "0123456789") != "":
		refuse(pusherCloseBadVersion, "Invalid version string format", reasonBadRequest)
		return
	case version != "7":
		refuse(pusherCloseUnsupported, "Unsupported protocol version "+truncateReason(version)+": 7 is served", reasonBadRequest)
		return
	case app.Disabled:
		refuse(pusherCloseAppDisabled, "App "+app.ID+" is disabled", reasonUnauthorized)
		return
	case !originOK:
		refuse(pusherCloseUnauthorized, "The origin is not allowed to connect to app "+app.ID, reasonUnauthorized)
		return
	}
	id := newSocketID()
	if ok, err := s.admitPusherConn(app, id); !ok {
		if err != nil {
			refuse(pusherCloseOverCapacity, "The broker did not answer: try again later", reasonServerError)
		} else {
			refuse(pusherCloseOverQuota, "Application is over connection quota", reasonConnLimit)
		}
		return
	}
	sess := newSession(s, tr, app.protocol, ip, nil)
	sess.id = id
	tr.serve(sess)
}

// closing maps the gateway's close codes (PROTOCOL.md) to Pusher's, and
// tells the client why in a pusher:error first, as Pusher does.
func (*pusherProtocol) closing(code websocket.StatusCode, reason string) (websocket.StatusCode, string, []byte) {
	switch code {
	case CloseServerError, CloseSlowConsumer, CloseTooManyRequests, CloseConnectionLimit:
		code = pusherCloseOverCapacity
	case CloseReconnect, websocket.StatusGoingAway:
		code = pusherCloseReconnect
	case CloseUnauthorized, CloseDisconnected, CloseTokenExpired:
		code = pusherCloseUnauthorized
	default:
		code = pusherCloseRefused
	}
	return code, reason, encodePusherError(int(code), reason)
}
