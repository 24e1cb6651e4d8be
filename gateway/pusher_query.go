package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The HTTP API's queries: which channels are occupied, how many subscribe
// to one, who is in a presence channel, and the info attributes of a
// trigger's reply. Counts are read from the broker, so they are the
// channel's on every node.

// pusherInfo is the info query parameter (or trigger field): the
// attributes asked for.
type pusherInfo struct {
	userCount, subscriptionCount bool
}

// parsePusherInfo reads a comma-separated info list; an attribute other
// than user_count and subscription_count is refused, as is user_count
// where presence is false.
func parsePusherInfo(s string, presence bool) (pusherInfo, string) {
	var info pusherInfo
	if s == "" {
		return info, ""
	}
	for _, a := range strings.Split(s, ",") {
		switch strings.TrimSpace(a) {
		case "user_count":
			if !presence {
				return info, "user_count may only be requested for presence channels"
			}
			info.userCount = true
		case "subscription_count":
			info.subscriptionCount = true
		default:
			return info, "Unsupported info attribute " + strconv.Quote(truncateReason(a)) + ": user_count and subscription_count are served"
		}
	}
	return info, ""
}

// pusherChannelInfo is a channel's attributes in the API's replies.
type pusherChannelInfo struct {
	Occupied          *bool `json:"occupied,omitempty"`
	UserCount         *int  `json:"user_count,omitempty"`
	SubscriptionCount *int  `json:"subscription_count,omitempty"`
}

// pusherAttributes reads the attributes info asks for of the app's channel.
func (s *Server) pusherAttributes(ctx context.Context, app *pusherApp, name string, info pusherInfo, occupied bool) (pusherChannelInfo, error) {
	var out pusherChannelInfo
	if !occupied && !info.userCount && !info.subscriptionCount {
		return out, nil
	}
	st, err := s.pusherChannelStats(ctx, app, name)
	if err != nil {
		return out, err
	}
	if occupied {
		o := st.Clients > 0
		out.Occupied = &o
	}
	if info.userCount {
		out.UserCount = &st.Users
	}
	if info.subscriptionCount {
		out.SubscriptionCount = &st.Clients
	}
	return out, nil
}

// servePusherChannels answers GET /apps/{id}/channels: the occupied
// channels, filter_by_prefix selecting by name, with the attributes of
// info (user_count only when the prefix is presence-, as on Pusher).
func (s *Server) servePusherChannels(w http.ResponseWriter, r *http.Request) {
	app, _ := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	q := r.URL.Query()
	prefix := q.Get("filter_by_prefix")
	info, msg := parsePusherInfo(q.Get("info"), strings.HasPrefix(prefix, "presence-"))
	if msg != "" {
		pusherAPIError(w, http.StatusBadRequest, msg)
		return
	}
	names, err := s.pusherOccupiedChannels(r.Context(), app, prefix)
	if err != nil {
		pusherAPIError(w, http.StatusServiceUnavailable, "The broker did not answer: "+err.Error())
		return
	}
	channels := make(map[string]pusherChannelInfo, len(names))
	for _, name := range names {
		if channels[name], err = s.pusherAttributes(r.Context(), app, name, info, false); err != nil {
			pusherAPIError(w, http.StatusServiceUnavailable, "The broker did not answer: "+err.Error())
			return
		}
	}
	pusherAPIReply(w, struct {
		Channels map[string]pusherChannelInfo `json:"channels"`
	}{channels})
}

// servePusherChannel answers GET /apps/{id}/channels/{name}: whether it is
// occupied, and the attributes of info.
func (s *Server) servePusherChannel(w http.ResponseWriter, r *http.Request) {
	app, _ := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	name := r.PathValue("name")
	if !validPusherChannel(name) {
		pusherAPIError(w, http.StatusBadRequest, "Invalid channel name "+strconv.Quote(truncateReason(name)))
		return
	}
	info, msg := parsePusherInfo(r.URL.Query().Get("info"), strings.HasPrefix(name, "presence-"))
	if msg != "" {
		pusherAPIError(w, http.StatusBadRequest, msg)
		return
	}
	out, err := s.pusherAttributes(r.Context(), app, name, info, true)
	if err != nil {
		pusherAPIError(w, http.StatusServiceUnavailable, "The broker did not answer: "+err.Error())
		return
	}
	pusherAPIReply(w, out)
}

// servePusherUsers answers GET /apps/{id}/channels/{name}/users: the
// distinct users of a presence channel, on every node.
func (s *Server) servePusherUsers(w http.ResponseWriter, r *http.Request) {
	app, _ := s.pusherAPIRequest(w, r)
	if app == nil {
		return
	}
	name := r.PathValue("name")
	if !strings.HasPrefix(name, "presence-") || !validPusherChannel(name) {
		pusherAPIError(w, http.StatusBadRequest, "Users may only be listed for presence channels, not "+strconv.Quote(truncateReason(name)))
		return
	}
	members, err := s.broker.Presence(r.Context(), app.pusherChannel(name))
	if err != nil {
		pusherAPIError(w, http.StatusServiceUnavailable, "The broker did not answer: "+err.Error())
		return
	}
	type user struct {
		ID string `json:"id"`
	}
	users := []user{}
	for id := range usersOf(members) {
		users = append(users, user{id})
	}
	pusherAPIReply(w, struct {
		Users []user `json:"users"`
	}{users})
}

// pusherTriggerInfo is the reply to a trigger whose events asked for info:
// the attributes of each channel (events) or of each event's channel
// (batch_events), read after the events were published.
func (s *Server) pusherTriggerInfo(ctx context.Context, app *pusherApp, events []pusherEvent, batch bool) (any, error) {
	if !batch {
		ev := events[0]
		if ev.Info == "" {
			return struct{}{}, nil
		}
		channels := make(map[string]pusherChannelInfo, len(ev.Channels))
		for _, c := range ev.Channels {
			info, _ := parsePusherInfo(ev.Info, strings.HasPrefix(c, "presence-"))
			var err error
			if channels[c], err = s.pusherAttributes(ctx, app, c, info, false); err != nil {
				return nil, err
			}
		}
		return struct {
			Channels map[string]pusherChannelInfo `json:"channels"`
		}{channels}, nil
	}
	asked := false
	out := make([]pusherChannelInfo, len(events))
	for i, ev := range events {
		if ev.Info == "" {
			continue
		}
		asked = true
		info, _ := parsePusherInfo(ev.Info, strings.HasPrefix(ev.Channels[0], "presence-"))
		var err error
		if out[i], err = s.pusherAttributes(ctx, app, ev.Channels[0], info, false); err != nil {
			return nil, err
		}
	}
	if !asked {
		return struct{}{}, nil
	}
	return struct {
		Batch []pusherChannelInfo `json:"batch"`
	}{out}, nil
}

// checkTriggerInfo refuses an event's info that names an unknown
// attribute, or user_count for a channel that is not a presence channel.
func checkTriggerInfo(ev *pusherEvent) string {
	for _, c := range ev.Channels {
		if _, msg := parsePusherInfo(ev.Info, strings.HasPrefix(c, "presence-")); msg != "" {
			return msg
		}
	}
	return ""
}

// pusherAPIReply answers a request of the HTTP API with v as JSON.
func pusherAPIReply(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
