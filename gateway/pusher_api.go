package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
)

// Pusher's HTTP API, as its server SDKs call it: every request signed with
// the app's secret (auth_key, auth_timestamp, auth_version, body_md5,
// auth_signature in the query).

// pusherAPIMaxBody bounds a request body of the HTTP API; pusherMaxData
// the data of one event, Pusher's 10 KB.
const (
	pusherAPIMaxBody = 256 << 10
	pusherMaxData    = 10 << 10
	// pusherMaxChannels is how many channels one event may name, as on
	// Pusher.
	pusherMaxChannels = 100
	// pusherTimestampWindow is how far auth_timestamp may be from the
	// server's clock.
	pusherTimestampWindow = 600 * time.Second
)

// pusherEvent is the body of POST /apps/{id}/events, and an item of
// batch_events (with Channel).
type pusherEvent struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	// Info asks for attributes of the channels in the reply:
	// "user_count", "subscription_count", comma-separated.
	Info string `json:"info"`
}

// pusherMaxBatch is how many events one batch_events request may hold, as
// on Pusher.
const pusherMaxBatch = 10

// pusherAPIRequest reads and checks a request of the app the path names:
// its signature and body. It answers refusals itself, and returns nil.
func (s *Server) pusherAPIRequest(w http.ResponseWriter, r *http.Request) (*pusherApp, []byte) {
	app := s.pusherByID[r.PathValue("id")]
	if app == nil {
		pusherAPIError(w, http.StatusNotFound, "Unknown app "+strconv.Quote(truncateReason(r.PathValue("id"))))
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, pusherAPIMaxBody))
	if err != nil {
		pusherAPIError(w, http.StatusRequestEntityTooLarge, "Request body over "+strconv.Itoa(pusherAPIMaxBody)+" bytes")
		return nil, nil
	}
	if status, msg := app.checkRequest(r, body, time.Now()); status != 0 {
		pusherAPIError(w, status, msg)
		return nil, nil
	}
	if app.Disabled {
		pusherAPIError(w, http.StatusForbidden, "App "+app.ID+" is disabled")
		return nil, nil
	}
	return app, body
}

// servePusherEvents triggers an event on up to 100 channels of the app.
func (s *Server) servePusherEvents(w http.ResponseWriter, r *http.Request) {
	app, body := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	var ev pusherEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		pusherAPIError(w, http.StatusBadRequest, "Body is not a JSON object of an event")
		return
	}
	s.pusherEvents(r.Context(), w, app, []pusherEvent{ev}, false)
}

// servePusherBatch triggers up to 10 events, each on one channel.
func (s *Server) servePusherBatch(w http.ResponseWriter, r *http.Request) {
	app, body := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	var req struct {
		Batch []pusherEvent `json:"batch"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		pusherAPIError(w, http.StatusBadRequest, `Body is not a JSON object {"batch": [events]}`)
		return
	}
	if len(req.Batch) == 0 || len(req.Batch) > pusherMaxBatch {
		pusherAPIError(w, http.StatusBadRequest, "A batch holds 1 to 10 events")
		return
	}
	for _, ev := range req.Batch {
		if len(ev.Channels) > 0 || ev.Channel == "" {
			pusherAPIError(w, http.StatusBadRequest, "Each event of a batch names one channel, in \"channel\"")
			return
		}
	}
	s.pusherEvents(r.Context(), w, app, req.Batch, true)
}

// pusherEvents checks every event, then triggers them in order, and
// answers, with the attributes the events' info asked for.
func (s *Server) pusherEvents(ctx context.Context, w http.ResponseWriter, app *pusherApp, events []pusherEvent, batch bool) {
	envelopes := make([][]byte, len(events))
	for i := range events {
		ev := &events[i]
		if ev.Channel != "" {
			ev.Channels = append(ev.Channels, ev.Channel)
		}
		switch {
		case ev.Name == "" || len(ev.Name) > 200:
			pusherAPIError(w, http.StatusBadRequest, "Event name must be 1 to 200 characters")
			return
		case len(ev.Channels) == 0 || len(ev.Channels) > pusherMaxChannels:
			pusherAPIError(w, http.StatusBadRequest, "An event goes to 1 to 100 channels")
			return
		case len(ev.Data) == 0:
			pusherAPIError(w, http.StatusBadRequest, "Event data is required")
			return
		case len(ev.Data) > pusherMaxData:
			pusherAPIError(w, http.StatusRequestEntityTooLarge, "Event data over 10 KB")
			return
		}
		for _, c := range ev.Channels {
			if !validPusherChannel(c) {
				pusherAPIError(w, http.StatusBadRequest, "Invalid channel name "+strconv.Quote(truncateReason(c)))
				return
			}
		}
		if msg := checkTriggerInfo(ev); msg != "" {
			pusherAPIError(w, http.StatusBadRequest, msg)
			return
		}
		var err error
		if envelopes[i], err = json.Marshal(pusherEnvelope{Event: ev.Name, Data: ev.Data}); err != nil {
			pusherAPIError(w, http.StatusBadRequest, "Event data is not valid JSON")
			return
		}
	}
	for i, ev := range events {
		var info *broker.ClientInfo
		if ev.SocketID != "" {
			info = &broker.ClientInfo{Client: ev.SocketID} // not delivered to that connection
		}
		if err := s.pusherTrigger(ctx, &app.PusherApp, ev.Channels, envelopes[i], info); err != nil {
			pusherAPIError(w, http.StatusServiceUnavailable, asError(err).Message)
			return
		}
	}
	reply, err := s.pusherTriggerInfo(ctx, app, events, batch)
	if err != nil {
		pusherAPIError(w, http.StatusServiceUnavailable, "The events were triggered; reading the channels' info failed: "+err.Error())
		return
	}
	pusherAPIReply(w, reply)
}

// servePusherTerminate closes every connection of a signed-in user of the
// app, on every node, with 4009 (Pusher clients do not reconnect).
func (s *Server) servePusherTerminate(w http.ResponseWriter, r *http.Request) {
	app, _ := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	user := r.PathValue("user")
	if !validPusherName(user) {
		pusherAPIError(w, http.StatusBadRequest, "Invalid user id "+strconv.Quote(truncateReason(user)))
		return
	}
	if _, err := s.Disconnect(r.Context(), app.pusherUser(user), CloseDisconnected, "connections terminated by the server"); err != nil {
		pusherAPIError(w, http.StatusServiceUnavailable, asError(err).Message)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

// pusherTrigger publishes an event, its envelope, to the app's channels.
func (s *Server) pusherTrigger(ctx context.Context, app *PusherApp, channels []string, envelope []byte, info *broker.ClientInfo) error {
	for _, c := range channels {
		channel := app.pusherChannel(c)
		ns, err := s.namespace(channel)
		if err != nil {
			return err
		}
		if _, err := s.publish(ctx, ns, channel, envelope, info); err != nil {
			return err
		}
	}
	return nil
}

// PusherTrigger triggers event with data (JSON, most often a string holding
// JSON, as Pusher's SDKs send it) on channels of the app with id appID, as
// POST /apps/{appID}/events does, from the program embedding the gateway.
func (s *Server) PusherTrigger(ctx context.Context, appID, event string, channels []string, data json.RawMessage) error {
	app := s.pusherByID[appID]
	if app == nil {
		return badRequest("unknown Pusher app " + strconv.Quote(appID))
	}
	for _, c := range channels {
		if !validPusherChannel(c) {
			return badRequest("invalid Pusher channel name " + strconv.Quote(c))
		}
	}
	envelope, err := json.Marshal(pusherEnvelope{Event: event, Data: data})
	if err != nil {
		return badRequest("data is not valid JSON")
	}
	return s.pusherTrigger(ctx, &app.PusherApp, channels, envelope, nil)
}

// checkRequest checks a request's signature, Pusher's: auth_signature is
// the hex HMAC-SHA256, with the app's secret, of "METHOD\nPATH\n" and the
// other query parameters sorted by name as name=value joined by "&";
// auth_timestamp is within 600 seconds of now and body_md5 the hex MD5 of
// a body. It returns the HTTP status and message of a refusal, or 0.
func (a *PusherApp) checkRequest(r *http.Request, body []byte, now time.Time) (int, string) {
	q := r.URL.Query()
	for name, vs := range q {
		if len(vs) != 1 {
			return http.StatusBadRequest, "Query parameter " + strconv.Quote(truncateReason(name)) + " given more than once"
		}
	}
	if q.Get("auth_key") != a.Key {
		return http.StatusUnauthorized, "Unknown auth_key"
	}
	if v := q.Get("auth_version"); v != "1.0" {
		return http.StatusUnauthorized, "auth_version must be 1.0"
	}
	ts, err := strconv.ParseInt(q.Get("auth_timestamp"), 10, 64)
	if err != nil {
		return http.StatusUnauthorized, "auth_timestamp is required, in Unix seconds"
	}
	if d := now.Sub(time.Unix(ts, 0)); d > pusherTimestampWindow || d < -pusherTimestampWindow {
		return http.StatusUnauthorized, "Timestamp expired: auth_timestamp " + strconv.FormatInt(ts, 10) +
			" is not within 600s of the server's time " + strconv.FormatInt(now.Unix(), 10)
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		if got := q.Get("body_md5"); !hmac.Equal([]byte(strings.ToLower(got)), []byte(hex.EncodeToString(sum[:]))) {
			return http.StatusUnauthorized, "body_md5 does not match the body"
		}
	}
	sig, err := hex.DecodeString(q.Get("auth_signature"))
	if err != nil || !hmac.Equal(sig, a.sign(pusherStringToSign(r.Method, r.URL.Path, q))) {
		return http.StatusUnauthorized, "Invalid signature: expected HMAC-SHA256 of the method, path and sorted query with the app's secret"
	}
	return 0, ""
}

// pusherStringToSign is what a request's auth_signature signs.
func pusherStringToSign(method, path string, q url.Values) string {
	names := make([]string, 0, len(q))
	for name := range q {
		if name != "auth_signature" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(method + "\n" + path + "\n")
	for i, name := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ToLower(name) + "=" + q.Get(name))
	}
	return b.String()
}

// pusherAPIError answers a refused request of the HTTP API, as Pusher
// does, with a plain-text message.
func pusherAPIError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
