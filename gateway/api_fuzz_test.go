package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// apiMethods are the methods of PROTOCOL.md's backend API.
var apiMethods = []string{"publish", "broadcast", "presence", "presence_stats", "history", "disconnect", "unsubscribe", "channels"}

// apiStatuses are the HTTP statuses PROTOCOL.md gives the API: 200, 400,
// 401 (key), 403, 404 (unknown method), 415 (not JSON, without a key).
// 500 is documented too but means a bug with the memory broker, and 503
// needs a broker that is down, so the fuzzer takes either as a failure.
var apiStatuses = []int{200, 400, 401, 403, 404, 415}

const fuzzAPIKey = "fuzz-api-key"

// FuzzAPIRequest sends arbitrary requests to the backend API through the
// gateway's handler (httptest, in process): any HTTP method, path,
// Content-Type, Origin, Host, Authorization and body, to a server with an
// API key and to one without, from a loopback peer or another. It checks
// that nothing panics, that the status is one PROTOCOL.md documents (405
// only for a method other than POST, with Allow), that each refusal comes
// from the rule that should refuse it (key, loopback, browser-shaped
// requests), that the body is JSON with an error code of PROTOCOL.md when
// the status is not 200, and that what a publish stores is valid UTF-8
// JSON, as the text frames that carry it to subscribers must be.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct{ method, body string }{
		{"publish", `{"channel":"chat:a","data":{"text":"hi"}}`},
		{"broadcast", `{"channels":["chat:a","b","nope:c",""],"data":[1,"x"]}`},
		{"presence", `{"channel":"chat:a"}`},
		{"presence_stats", `{"channel":"chat:a"}`},
		{"history", `{"channel":"chat:a","limit":2,"since":{"offset":1,"epoch":"AAAA"},"reverse":true}`},
		{"disconnect", `{"user":"alice","code":4502,"reason":"bye"}`},
		{"disconnect", `{"user":"alice","code":1000,"reason":"` + strings.Repeat("r", 200) + `"}`},
		{"unsubscribe", `{"user":"alice","channel":"chat:a","reason":"out"}`},
		{"channels", `{"prefix":"chat:"}`},
		{"publish", `{"channel":"chat:a","data":"\u00e9\ud800"}`},
		{"publish", "{\"channel\":\"chat:a\",\"data\":\"\xff\xfe\"}"},
		{"publish", `{"channel":"chat:a","data":}`},
		{"publish", `{"channel":"` + strings.Repeat("x", 300) + `","data":1}`},
		{"history", `{"channel":"chat:a","limit":-5}`},
		{"channels", `[]`},
		{"channels", `null`},
		{"publish", ``},
		{"publish", `{"channel":"chat:a","data":1}{"channel":"chat:b","data":2}`},
		{"publish", `{"channel":"chat:a","data":1} 0`},
		{"publish", "{\"channel\":\"chat:a\",\"data\":1}\r\n\t "},
	}
	for i, seed := range seeds {
		f.Add(uint8(i&1), "POST", seed.method, "application/json", "", "127.0.0.1:8080", "apikey "+fuzzAPIKey, []byte(seed.body))
	}
	body := []byte(seeds[0].body)
	f.Add(uint8(0), "GET", "publish", "", "", "localhost", "", []byte(nil))
	f.Add(uint8(0), "POST", "publish", "text/plain", "", "localhost", "", body)
	f.Add(uint8(0), "POST", "publish", "application/json; charset=utf-8", "https://evil.example", "localhost", "", body)
	f.Add(uint8(0), "POST", "publish", "application/json", "", "evil.example", "", body)
	f.Add(uint8(2), "POST", "publish", "application/json", "", "localhost", "", body)
	f.Add(uint8(1), "POST", "publish", "application/json", "", "gw.example", "apikey wrong", body)
	f.Add(uint8(1), "POST", "nope", "application/json", "", "gw.example", "apikey "+fuzzAPIKey, []byte(`{}`))

	f.Fuzz(func(t *testing.T, sel uint8, method, name, contentType, origin, host, auth string, body []byte) {
		keyed := sel&1 != 0
		remote := sel&2 != 0
		if name == "." || name == ".." {
			return // the mux redirects these paths before the API sees them
		}
		target := "http://gateway/api/" + url.PathEscape(name)
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil {
			return // not a request line net/http would parse
		}
		req.Host = host
		req.RemoteAddr = "127.0.0.1:40000"
		if remote {
			req.RemoteAddr = "192.0.2.7:40000" // a documentation address; no traffic is sent
		}
		for k, v := range map[string]string{"Content-Type": contentType, "Origin": origin, "Authorization": auth} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}

		srv := newFuzzAPIServer(t, keyed)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		status := rec.Code

		var out struct {
			Error *Error `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("status %d with a body that is not JSON (%v, %q): %q", status, err, rec.Header().Get("Content-Type"), rec.Body.Bytes())
		}
		switch {
		case status == http.StatusMethodNotAllowed:
			if method == http.MethodPost || rec.Header().Get("Allow") != "POST" {
				t.Fatalf("405 to %s, Allow %q", method, rec.Header().Get("Allow"))
			}
		case method != http.MethodPost:
			t.Fatalf("%s answered %d, want 405", method, status)
		case !slices.Contains(apiStatuses, status):
			t.Fatalf("status %d is not one PROTOCOL.md gives the API: %s", status, rec.Body.Bytes())
		}
		if status != http.StatusOK && (out.Error == nil || !slices.Contains(protocolErrorCodes, out.Error.Code)) {
			t.Fatalf("status %d without an error of PROTOCOL.md: %s", status, rec.Body.Bytes())
		}
		if method != http.MethodPost {
			return
		}

		// Which rule refuses the request, in the order the API applies them.
		authorized := auth == "apikey "+fuzzAPIKey
		if !keyed {
			authorized = !remote
		}
		if !authorized {
			if status != http.StatusUnauthorized {
				t.Fatalf("unauthorized request (keyed %v, remote %v, %q) answered %d", keyed, remote, auth, status)
			}
			return
		}
		if status == http.StatusUnauthorized {
			t.Fatalf("authorized request (keyed %v, remote %v) answered 401", keyed, remote)
		}
		if !keyed {
			ct := strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
			browser := origin != "" || !loopbackHost(host)
			switch {
			case browser && status != http.StatusForbidden:
				t.Fatalf("keyless request with Origin %q, Host %q answered %d, want 403", origin, host, status)
			case !browser && ct != "application/json" && status != http.StatusUnsupportedMediaType:
				t.Fatalf("keyless request of Content-Type %q answered %d, want 415", contentType, status)
			}
			if browser || ct != "application/json" {
				return
			}
		}
		if status == http.StatusUnsupportedMediaType {
			t.Fatalf("415 to a request with a key")
		}
		// A body the API takes: a JSON object (null too, as
		// json.Decoder takes it), checked before the method; and for
		// the methods that publish, data in UTF-8, which they check
		// (compactJSON), so an unknown method is 404 whatever its data.
		var pub apiRequest
		isJSON := json.Unmarshal(body, &pub) == nil
		known := slices.Contains(apiMethods, name)
		publishes := name == "publish" || name == "broadcast"
		taken := isJSON && (!publishes || utf8.Valid(pub.Data))
		if status == http.StatusOK && (!taken || !known) {
			t.Fatalf("200 to %q with body %q", name, body)
		}
		if isJSON && !known && status != http.StatusNotFound {
			t.Fatalf("unknown method %q with body %q answered %d, want 404", name, body, status)
		}
		if !isJSON && status != http.StatusBadRequest {
			t.Fatalf("body %q answered %d, want 400", body, status)
		}
		if known && !taken && status != http.StatusBadRequest {
			t.Fatalf("%s with data %q answered %d, want 400", name, pub.Data, status)
		}

		// What a publish stored goes to subscribers in text frames: it must
		// be valid UTF-8 JSON.
		if status != http.StatusOK || name != "publish" {
			return
		}
		ns, err := srv.namespace(pub.Channel)
		if err != nil || ns.HistorySize == 0 {
			return
		}
		res, err := srv.historyOf(context.Background(), ns, pub.Channel, nil, nil, false)
		if err != nil {
			t.Fatalf("history after a publish: %v", err)
		}
		for _, p := range res.(historyResult).Publications {
			if !utf8.Valid(*p) || !json.Valid(*p) {
				t.Fatalf("a publication the API accepted is not valid UTF-8 JSON: %q", *p)
			}
		}
	})
}

// newFuzzAPIServer is a gateway, with fuzzAPIKey when keyed, shut down when
// the fuzz call ends.
func newFuzzAPIServer(t *testing.T, keyed bool) *Server {
	cfg := Config{
		Namespaces: []Namespace{
			{Name: "", Anonymous: true},
			{Name: "chat", Anonymous: true, HistorySize: 3, Presence: true, JoinLeave: true},
		},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		DrainWindow: time.Millisecond,
	}
	if keyed {
		cfg.APIKey = fuzzAPIKey
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}
