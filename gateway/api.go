package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/websocket"
)

// maxAPIBody caps the body of a backend API request.
const maxAPIBody = 1 << 20

// apiRequest is every backend API request; fields not used by the method
// are ignored.
type apiRequest struct {
	Channel  string           `json:"channel"`
	Channels []string         `json:"channels"`
	Data     json.RawMessage  `json:"data"`
	User     string           `json:"user"`
	Code     int              `json:"code"`
	Reason   string           `json:"reason"`
	Limit    *int             `json:"limit"`
	Since    *broker.Position `json:"since"`
	Reverse  bool             `json:"reverse"`
	Prefix   string           `json:"prefix"`
}

type apiBroadcastItem struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

type apiChannel struct {
	Subscribers int `json:"subscribers"`
}

// serveAPI serves POST /api/<method> for backends.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		apiError(w, http.StatusMethodNotAllowed, &Error{ErrBadRequest.Code, "use POST"})
		return
	}
	if !s.apiAuthorized(r) {
		apiError(w, http.StatusUnauthorized, &Error{ErrPermissionDenied.Code, "invalid or missing API key"})
		return
	}
	if s.cfg.APIKey == "" {
		if status, e := browserShaped(r); status != 0 {
			s.metrics.limitHits.With(limitAPIBrowser).Inc()
			apiError(w, status, e)
			return
		}
	}
	var req apiRequest
	body := http.MaxBytesReader(w, r.Body, maxAPIBody)
	dec := json.NewDecoder(body)
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, badRequest("body is not a JSON object"))
		return
	}
	// One object and nothing after it: a second would be ignored silently.
	if _, err := dec.Token(); err != io.EOF {
		apiError(w, http.StatusBadRequest, badRequest("body has more than one JSON value"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	result, err := s.apiCall(ctx, method, &req)
	if err != nil {
		e := asError(err)
		status := http.StatusBadRequest
		switch e.Code {
		case ErrInternal.Code:
			status = http.StatusInternalServerError
		case ErrUnavailable.Code:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		case ErrMethodNotFound.Code:
			status = http.StatusNotFound
		case ErrPermissionDenied.Code:
			status = http.StatusForbidden
		}
		apiError(w, status, e)
		return
	}
	s.metrics.apiRequests.With(method).Inc()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(result)
}

// maxBroadcastConcurrency bounds the publications of one broadcast in
// flight at once.
const maxBroadcastConcurrency = 32

func (s *Server) apiCall(ctx context.Context, method string, req *apiRequest) (any, error) {
	switch method {
	case "publish":
		pos, err := s.Publish(ctx, req.Channel, req.Data)
		if err != nil {
			return nil, err
		}
		return publishResult{Offset: pos.Offset, Epoch: pos.Epoch}, nil
	case "broadcast":
		if len(req.Channels) == 0 {
			return nil, badRequest("channels is required")
		}
		data, err := compactJSON(req.Data)
		if err != nil {
			return nil, err
		}
		// The channels are published to concurrently: over a networked
		// broker each publication is a round trip, and one after another
		// a broadcast to 100 channels waited for 100 of them.
		results := make([]apiBroadcastItem, len(req.Channels))
		var wg sync.WaitGroup
		slots := make(chan struct{}, maxBroadcastConcurrency)
		for i, ch := range req.Channels {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				ns, err := s.namespace(ch)
				if err == nil {
					var pos broker.Position
					pos, err = s.publish(ctx, ns, ch, data, nil)
					results[i] = apiBroadcastItem{Offset: pos.Offset, Epoch: pos.Epoch}
				}
				if err != nil {
					results[i].Error = asError(err)
				}
			})
		}
		wg.Wait()
		return struct {
			Results []apiBroadcastItem `json:"results"`
		}{results}, nil
	case "presence", "presence_stats":
		ns, err := s.namespace(req.Channel)
		if err != nil {
			return nil, err
		}
		if !ns.Presence {
			return nil, ErrNotAvailable
		}
		return s.presenceOf(ctx, req.Channel, method == "presence_stats")
	case "history":
		ns, err := s.namespace(req.Channel)
		if err != nil {
			return nil, err
		}
		return s.historyOf(ctx, ns, req.Channel, req.Limit, req.Since, req.Reverse)
	case "disconnect":
		if req.User == "" {
			return nil, badRequest("user is required")
		}
		n, err := s.Disconnect(ctx, req.User, websocket.StatusCode(req.Code), req.Reason)
		if err != nil {
			return nil, err
		}
		return struct {
			Disconnected int `json:"disconnected"`
		}{n}, nil
	case "unsubscribe":
		if req.User == "" || req.Channel == "" {
			return nil, badRequest("user and channel are required")
		}
		n, err := s.Unsubscribe(ctx, req.User, req.Channel, req.Reason)
		if err != nil {
			return nil, err
		}
		return struct {
			Unsubscribed int `json:"unsubscribed"`
		}{n}, nil
	case "channels":
		out := make(map[string]apiChannel)
		s.hub.channels(func(name string, n int) {
			if strings.HasPrefix(name, req.Prefix) {
				out[name] = apiChannel{Subscribers: n}
			}
		})
		return struct {
			Channels map[string]apiChannel `json:"channels"`
		}{out}, nil
	}
	return nil, ErrMethodNotFound
}

// apiAuthorized checks the API key, or, with none configured, that the
// request comes from this machine.
func (s *Server) apiAuthorized(r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return s.loopbackClient(r)
	}
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "apikey ")
	return ok && subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) == 1
}

// limitAPIBrowser labels duplex_limit_hits_total for API requests refused
// because a browser may have made them.
const limitAPIBrowser = "api_browser"

// browserShaped refuses, for an API without a key, what a web page could
// make a browser send to a gateway on the page viewer's machine: a request
// with an Origin (a page's fetch or form), one whose Host is not loopback
// (a site's name rebound to 127.0.0.1), and one whose body is not declared
// JSON (text/plain and form bodies are sent cross-origin without a
// preflight; application/json is not). It returns 0 for a request a
// backend on this machine would make.
func browserShaped(r *http.Request) (int, *Error) {
	if r.Header.Get("Origin") != "" {
		return http.StatusForbidden, &Error{ErrPermissionDenied.Code, "requests from web pages are refused (Origin) without an API key"}
	}
	if !loopbackHost(r.Host) {
		return http.StatusForbidden, &Error{ErrPermissionDenied.Code, "the Host must be loopback without an API key"}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, badRequest("Content-Type must be application/json")
	}
	return 0, nil
}

func apiError(w http.ResponseWriter, status int, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error *Error `json:"error"`
	}{e})
}
