// Command backend is a tiny application backend for the gateway's proxy:
// it logs users in with a cookie, and tells the gateway who a connecting
// client is, which channels it may join, what it may publish, and what
// its rpc calls return.
//
//	go run ./examples/backend -listen 127.0.0.1:9000 -secret S
//
// It answers POST /duplex/connect, /refresh, /subscribe, /sub_refresh, /publish and /rpc
// in the proxy format of gateway/proxy (docs/proxy.md), and POST /login
// (form field user) and /logout for the cookie.
//
// Its rules: a logged-in user may subscribe to every chat: channel and to
// user:NAME, their own; publish text of up to 500 characters to chat:
// channels, which the backend stamps with the author; and call "whoami".
package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duplexws/duplex/gateway/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on; port 0 picks a free one")
	secret := flag.String("secret", "", "the gateway's proxy secret; when set, unsigned requests are refused")
	flag.Parse()
	// Listening before saying where, so that port 0 picks a free port and
	// the first line names it.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backend on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: newBackend(*secret), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

// backend holds the key its session cookies are signed with.
type backend struct {
	key         []byte
	proxySecret string
}

func newBackend(proxySecret string) http.Handler {
	b := &backend{key: make([]byte, 32), proxySecret: proxySecret}
	rand.Read(b.key)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", b.login)
	mux.HandleFunc("POST /logout", b.logout)
	mux.HandleFunc("POST /duplex/{kind}", b.proxy)
	return mux
}

// login sets the session cookie of the user named in the form.
func (b *backend) login(w http.ResponseWriter, r *http.Request) {
	user := r.FormValue("user")
	if user == "" || len(user) > 64 || strings.ContainsAny(user, ".;, ") || !utf8.ValidString(user) {
		http.Error(w, "a user name of 1 to 64 characters, without . ; , or spaces", http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "session", Value: user + "." + b.sign(user), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	io.WriteString(w, "logged in as "+user+"\n")
}

func (b *backend) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: "session", Path: "/", MaxAge: -1})
}

func (b *backend) sign(user string) string {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

// user returns the user the request's session cookie names, or "".
func (b *backend) user(r *http.Request) string {
	c, err := r.Cookie("session")
	if err != nil {
		return ""
	}
	user, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(b.sign(user))) {
		return ""
	}
	return user
}

// request is the fields of the gateway's requests this backend reads.
type request struct {
	User    string          `json:"user"`
	Channel string          `json:"channel"`
	Method  string          `json:"method"`
	Data    json.RawMessage `json:"data"`
}

// proxy answers the gateway's requests.
func (b *backend) proxy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if b.proxySecret != "" {
		if err := proxy.Verify(b.proxySecret, r.Header.Get(proxy.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	refuse := func(code int, msg string) {
		enc.Encode(map[string]any{"error": proxy.Error{Code: uint32(code), Message: msg}})
	}
	result := func(v any) { enc.Encode(map[string]any{"result": v}) }

	switch r.PathValue("kind") {
	case "connect":
		user := b.user(r)
		if user == "" {
			refuse(4401, "log in first")
			return
		}
		result(proxy.ConnectResult{User: user, Info: mustJSON(map[string]string{"name": user}), Channels: []string{"user:" + user}})
	case "refresh":
		result(proxy.RefreshResult{ExpireAt: time.Now().Add(time.Hour).Unix()})
	case "sub_refresh":
		// Still allowed? Ask again in an hour.
		result(proxy.RefreshResult{Expired: !b.maySubscribe(req.User, req.Channel), ExpireAt: time.Now().Add(time.Hour).Unix()})
	case "subscribe":
		if !b.maySubscribe(req.User, req.Channel) {
			refuse(403, "permission denied")
			return
		}
		result(proxy.SubscribeResult{})
	case "publish":
		var text string
		if !strings.HasPrefix(req.Channel, "chat:") || json.Unmarshal(req.Data, &text) != nil || text == "" || utf8.RuneCountInString(text) > 500 {
			refuse(400, "publish text of 1 to 500 characters to chat: channels")
			return
		}
		result(proxy.PublishResult{Data: mustJSON(map[string]string{"from": req.User, "text": text})})
	case "rpc":
		if req.Method != "whoami" {
			refuse(404, "no method "+req.Method)
			return
		}
		result(proxy.RPCResult{Data: mustJSON(map[string]string{"user": req.User})})
	default:
		http.NotFound(w, r)
	}
}

func (b *backend) maySubscribe(user, channel string) bool {
	return user != "" && (strings.HasPrefix(channel, "chat:") || channel == "user:"+user)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
