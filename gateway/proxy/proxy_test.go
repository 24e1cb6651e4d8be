package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duplexws/duplex/gateway/proxy"
)

// backend is a real HTTP server on loopback that answers with reply and
// records what it was sent.
type backend struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []*http.Request
	body  [][]byte
	conns atomic.Int32 // TCP connections accepted
}

func startBackend(t *testing.T, reply func(w http.ResponseWriter, r *http.Request, body []byte)) *backend {
	t.Helper()
	b := &backend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, r)
		b.body = append(b.body, body)
		b.mu.Unlock()
		reply(w, r, body)
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) last(t *testing.T) (*http.Request, map[string]any) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the backend got no request")
	}
	var m map[string]any
	if err := json.Unmarshal(b.body[len(b.body)-1], &m); err != nil {
		t.Fatalf("request body %q: %v", b.body[len(b.body)-1], err)
	}
	return b.reqs[len(b.reqs)-1], m
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

func answer(s string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, s)
	}
}

func newProxy(t *testing.T, opts proxy.Options) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func client() *proxy.Client {
	h := http.Header{}
	h.Set("Cookie", "session=abc")
	h.Set("Authorization", "Bearer t")
	h.Set("X-Secret-Internal", "not for the backend")
	return &proxy.Client{ID: "c1", Transport: "websocket", Protocol: "json", Header: h, RemoteIP: "203.0.113.9"}
}

// TestConnect: the request carries the client, its allowed headers, its
// IP, static headers and a signature the backend can verify; the result
// comes back whole.
func TestConnect(t *testing.T) {
	const secret = "s3cret"
	b := startBackend(t, answer(`{"result":{"user":"56","expire_at":1900000000,"info":{"name":"Ann"},"data":{"hello":1},"channels":["news","user:56"],"meta":{"plan":"pro"},"b64info":"ignored"}}`))
	p := newProxy(t, proxy.Options{URL: b.srv.URL + "/connect", Secret: secret, StaticHeaders: map[string]string{"X-Api-Key": "k"}})
	res, err := p.Connect(context.Background(), client(), &proxy.ConnectRequest{Name: "js", Version: "1.0", Data: json.RawMessage(`{"want":"x"}`), Channels: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.User != "56" || res.ExpireAt != 1900000000 || string(res.Info) != `{"name":"Ann"}` || string(res.Data) != `{"hello":1}` ||
		strings.Join(res.Channels, ",") != "news,user:56" || string(res.Meta) != `{"plan":"pro"}` {
		t.Errorf("result %+v", res)
	}
	r, body := b.last(t)
	if r.Method != http.MethodPost || r.URL.Path != "/connect" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	for k, want := range map[string]any{"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "name": "js", "version": "1.0"} {
		if body[k] != want {
			t.Errorf("body[%q] = %v, want %v", k, body[k], want)
		}
	}
	if d, _ := json.Marshal(body["data"]); string(d) != `{"want":"x"}` {
		t.Errorf("data %s", d)
	}
	if _, ok := body["user"]; ok {
		t.Errorf("user sent before connect: %v", body["user"])
	}
	if r.Header.Get("Cookie") != "session=abc" || r.Header.Get("Authorization") != "Bearer t" {
		t.Errorf("allowed headers not passed: %v", r.Header)
	}
	if r.Header.Get("X-Secret-Internal") != "" {
		t.Error("a header outside the allow-list was passed")
	}
	if r.Header.Get("X-Real-IP") != "203.0.113.9" || r.Header.Get("X-Api-Key") != "k" {
		t.Errorf("X-Real-IP %q, X-Api-Key %q", r.Header.Get("X-Real-IP"), r.Header.Get("X-Api-Key"))
	}
	b.mu.Lock()
	raw := b.body[len(b.body)-1]
	b.mu.Unlock()
	sig := r.Header.Get(proxy.SignatureHeader)
	if err := proxy.Verify(secret, sig, raw, time.Now(), time.Minute); err != nil {
		t.Errorf("signature %q: %v", sig, err)
	}
	for name, err := range map[string]error{
		"another secret": proxy.Verify("other", sig, raw, time.Now(), time.Minute),
		"another body":   proxy.Verify(secret, sig, append([]byte(" "), raw...), time.Now(), time.Minute),
		"too old":        proxy.Verify(secret, sig, raw, time.Now().Add(2*time.Minute), time.Minute),
		"no signature":   proxy.Verify(secret, "", raw, time.Now(), time.Minute),
	} {
		if !errors.Is(err, proxy.ErrBadSignature) {
			t.Errorf("Verify with %s: %v, want ErrBadSignature", name, err)
		}
	}
}

// TestRefusals: the backend's error and disconnect reach the caller as
// *Error and *Disconnect, with their fields.
func TestRefusals(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.Contains(string(body), `"channel":"secret"`) {
			io.WriteString(w, `{"error":{"code":403,"message":"permission denied","temporary":false}}`)
			return
		}
		io.WriteString(w, `{"disconnect":{"code":4501,"reason":"banned"}}`)
	})
	p := newProxy(t, proxy.Options{URL: b.srv.URL})
	c := client()
	c.User = "56"
	c.Meta = json.RawMessage(`{"plan":"pro"}`)
	_, err := p.Subscribe(context.Background(), c, &proxy.SubscribeRequest{Channel: "secret", Token: "tok"})
	var refused *proxy.Error
	if !errors.As(err, &refused) || refused.Code != 403 || refused.Message != "permission denied" {
		t.Errorf("Subscribe: %v, want the backend's error 403", err)
	}
	_, body := b.last(t)
	if body["user"] != "56" || body["channel"] != "secret" || body["token"] != "tok" {
		t.Errorf("subscribe body %v", body)
	}
	if m, _ := json.Marshal(body["meta"]); string(m) != `{"plan":"pro"}` {
		t.Errorf("meta %s", m)
	}
	_, err = p.Refresh(context.Background(), c)
	var disc *proxy.Disconnect
	if !errors.As(err, &disc) || disc.Code != 4501 || disc.Reason != "banned" {
		t.Errorf("Refresh: %v, want the backend's disconnect 4501", err)
	}
}

// TestPublishAndRPC: the backend transforms a publication and answers an
// rpc.
func TestPublishAndRPC(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req struct {
			Channel, Method string
			Data            json.RawMessage
		}
		json.Unmarshal(body, &req)
		switch r.URL.Path {
		case "/publish":
			fmt.Fprintf(w, `{"result":{"data":{"by":"56","text":%s},"skip_history":true}}`, req.Data)
		case "/rpc":
			fmt.Fprintf(w, `{"result":{"data":{"method":%q,"echo":%s}}}`, req.Method, req.Data)
		case "/sub_refresh":
			fmt.Fprintf(w, `{"result":{"expired":false,"expire_at":1900000001,"info":{"ch":%q}}}`, req.Channel)
		}
	})
	pub := newProxy(t, proxy.Options{URL: b.srv.URL + "/publish"})
	c := client()
	res, err := pub.Publish(context.Background(), c, &proxy.PublishRequest{Channel: "chat", Data: json.RawMessage(`"hi"`)})
	if err != nil || string(res.Data) != `{"by":"56","text":"hi"}` || !res.SkipHistory {
		t.Errorf("Publish: %+v, %v", res, err)
	}
	rpc := newProxy(t, proxy.Options{URL: b.srv.URL + "/rpc"})
	rr, err := rpc.RPC(context.Background(), c, &proxy.RPCRequest{Method: "whoami", Data: json.RawMessage(`[1,2]`)})
	if err != nil || string(rr.Data) != `{"method":"whoami","echo":[1,2]}` {
		t.Errorf("RPC: %s, %v", rr.Data, err)
	}
	sr := newProxy(t, proxy.Options{URL: b.srv.URL + "/sub_refresh"})
	ref, err := sr.SubRefresh(context.Background(), c, "chat")
	if err != nil || ref.Expired || ref.ExpireAt != 1900000001 || string(ref.Info) != `{"ch":"chat"}` {
		t.Errorf("SubRefresh: %+v, %v", ref, err)
	}
}

// TestMalformedReplies: every reply the gateway cannot use is
// ErrBadReply, never a panic or a half-read result.
func TestMalformedReplies(t *testing.T) {
	var current atomic.Value
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		c := current.Load().([2]string)
		if c[0] == "404" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, c[1])
	})
	p := newProxy(t, proxy.Options{URL: b.srv.URL, MaxReplySize: 4096})
	for _, c := range [][2]string{
		{"empty", ``},
		{"not JSON", `<html>oops</html>`},
		{"truncated", `{"result":{"user":"5`},
		{"none of the three", `{}`},
		{"null result", `{"result":null}`},
		{"result and error", `{"result":{"user":"1"},"error":{"code":1,"message":"x"}}`},
		{"error and disconnect", `{"error":{"code":1,"message":"x"},"disconnect":{"code":4000,"reason":""}}`},
		{"result not an object", `{"result":"56"}`},
		{"user a number", `{"result":{"user":56}}`},
		{"expire_at a string", `{"result":{"user":"1","expire_at":"soon"}}`},
		{"channels not strings", `{"result":{"channels":[1,2]}}`},
		{"error without a code", `{"error":{"message":"x"}}`},
		{"error code negative", `{"error":{"code":-1,"message":"x"}}`},
		{"disconnect 1000", `{"disconnect":{"code":1000,"reason":"x"}}`},
		{"disconnect 5000", `{"disconnect":{"code":5000,"reason":"x"}}`},
		{"disconnect reason too long", `{"disconnect":{"code":4000,"reason":"` + strings.Repeat("x", 124) + `"}}`},
		{"too large", `{"result":{"user":"` + strings.Repeat("x", 5000) + `"}}`},
		{"404", ``},
	} {
		current.Store(c)
		res, err := p.Connect(context.Background(), client(), nil)
		if !errors.Is(err, proxy.ErrBadReply) {
			t.Errorf("%s: %+v, %v; want ErrBadReply", c[0], res, err)
		}
	}
	if n := b.count(); n != 18 {
		t.Errorf("%d requests for 18 bad replies: a bad reply is not retried", n)
	}
}

// TestBackendDown: a backend that is away, slow or failing is
// ErrUnavailable within the timeout. A connect is retried, and succeeds
// when the backend recovers; a publish, which must not happen twice, is
// not sent again once it may have arrived.
func TestBackendDown(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		p := newProxy(t, proxy.Options{URL: "http://" + addr, Timeout: 300 * time.Millisecond})
		start := time.Now()
		_, err = p.Publish(context.Background(), client(), &proxy.PublishRequest{Channel: "c", Data: json.RawMessage(`1`)})
		if !errors.Is(err, proxy.ErrUnavailable) {
			t.Errorf("Publish to a closed port: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Publish to a closed port took %v with a 300 ms timeout", d)
		}
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		b := startBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		p := newProxy(t, proxy.Options{URL: b.srv.URL, Timeout: 200 * time.Millisecond})
		start := time.Now()
		_, err := p.Connect(context.Background(), client(), nil)
		if !errors.Is(err, proxy.ErrUnavailable) {
			t.Errorf("Connect to a slow backend: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Connect to a slow backend took %v with a 200 ms timeout", d)
		}
	})
	t.Run("recovers", func(t *testing.T) {
		var calls atomic.Int32
		b := startBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			if calls.Add(1) <= 2 {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, `{"result":{"user":"1"}}`)
		})
		p := newProxy(t, proxy.Options{URL: b.srv.URL, Timeout: 5 * time.Second})
		res, err := p.Connect(context.Background(), client(), nil)
		if err != nil || res.User != "1" || calls.Load() != 3 {
			t.Errorf("Connect while the backend starts: %+v, %v after %d calls; want user 1 after 3", res, err, calls.Load())
		}
		calls.Store(0)
		_, err = p.Publish(context.Background(), client(), &proxy.PublishRequest{Channel: "c", Data: json.RawMessage(`1`)})
		if !errors.Is(err, proxy.ErrUnavailable) || calls.Load() != 1 {
			t.Errorf("Publish to a failing backend: %v after %d calls; want ErrUnavailable after 1", err, calls.Load())
		}
	})
}

// TestInFlightCap: over MaxInFlight requests at once, one more fails at
// once with ErrBusy and reaches nobody; the metrics count every result.
func TestInFlightCap(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(2)
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		arrived.Done()
		<-release
		io.WriteString(w, `{"result":{}}`)
	})
	reg := prometheus.NewRegistry()
	m, err := proxy.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, proxy.Options{URL: b.srv.URL, MaxInFlight: 2, Timeout: 10 * time.Second, Metrics: m})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := p.RPC(context.Background(), client(), &proxy.RPCRequest{Method: "wait"}); err != nil {
				t.Errorf("RPC: %v", err)
			}
		})
	}
	arrived.Wait()
	start := time.Now()
	if _, err := p.RPC(context.Background(), client(), &proxy.RPCRequest{Method: "third"}); !errors.Is(err, proxy.ErrBusy) {
		t.Errorf("a third RPC: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ErrBusy took %v", d)
	}
	close(release)
	wg.Wait()
	if n := b.count(); n != 2 {
		t.Errorf("the backend got %d requests, want 2", n)
	}
	got := map[string]float64{}
	durations := 0
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "duplex_proxy_requests_total":
				got[labels["proxy"]+"/"+labels["result"]] = metric.GetCounter().GetValue()
			case "duplex_proxy_request_duration_seconds":
				durations++
				if labels["proxy"] == "rpc" && metric.GetHistogram().GetSampleCount() != 2 {
					t.Errorf("rpc durations: %d observed, want 2 (a busy call is not timed)", metric.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	for _, k := range proxy.Kinds {
		for _, r := range proxy.Results {
			want := 0.0
			switch {
			case k == proxy.RPC && r == "ok":
				want = 2
			case k == proxy.RPC && r == "busy":
				want = 1
			}
			if v, ok := got[string(k)+"/"+r]; !ok || v != want {
				t.Errorf("duplex_proxy_requests_total{proxy=%q,result=%q} = %v (present %v), want %v", k, r, v, ok, want)
			}
		}
	}
	if durations != len(proxy.Kinds) {
		t.Errorf("%d duration series, want one per kind", durations)
	}
}

// TestKeepAlive: a node's requests to the backend reuse its connections.
func TestKeepAlive(t *testing.T) {
	b := startBackend(t, answer(`{"result":{"user":"1"}}`))
	p := newProxy(t, proxy.Options{URL: b.srv.URL})
	for range 50 {
		if _, err := p.Connect(context.Background(), client(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("50 requests in turn opened %d connections, want 1", n)
	}
}

// TestNew refuses a URL that is not http or https.
func TestNew(t *testing.T) {
	for _, u := range []string{"", "ftp://x/", "localhost:8080", "http://", "://x"} {
		if _, err := proxy.New(proxy.Options{URL: u}); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
}
