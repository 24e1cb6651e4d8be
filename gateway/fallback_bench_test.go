package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The fallback transports against WebSocket: deliveries per second to 100
// subscribers, and the server's memory per idle session. Clients and
// server share the process (and the machine's cores), so the figures
// compare the transports rather than measure the gateway alone.
//
//	go test -run '^$' -bench 'Fallback' -benchtime 3s ./gateway/

func benchServer(b *testing.B) (*Server, string) {
	b.Helper()
	srv, err := New(Config{
		Namespaces: testNamespaces(),
		Auth:       Auth{AllowAnonymous: true},
		// The clients all come from 127.0.0.1: no per-address limit.
		Limits: Limits{MessageRate: -1, MaxConnectionsPerIP: -1, FallbackSendRate: -1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() {
		srv.Shutdown(context.Background())
		hs.Close()
	})
	return srv, hs.URL
}

// benchSubscriber opens a session over transport ("websocket",
// "http_stream" or "sse"), subscribes it to channel, and counts the
// publications it receives until ctx ends.
func benchSubscriber(b *testing.B, ctx context.Context, base, transport, channel string, count *atomic.Int64, wg *sync.WaitGroup) {
	b.Helper()
	cmds := `{"id":1,"method":"connect"}` + "\n" + `{"id":2,"method":"subscribe","channel":"` + channel + `"}`
	if transport == "websocket" {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			b.Fatal(err)
		}
		conn.SetReadLimit(-1)
		if err := conn.Write(ctx, websocket.MessageText, []byte(cmds)); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.CloseNow()
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					return
				}
				count.Add(int64(bytes.Count(data, []byte(`"push":"pub"`))))
			}
		}()
		return
	}
	path := "/fallback/stream"
	if transport == "sse" {
		path = "/fallback/sse"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	first = strings.TrimPrefix(strings.TrimSpace(first), "data: ")
	var hello struct{ Session string }
	if err := json.Unmarshal([]byte(first), &hello); err != nil {
		b.Fatalf("first line %q: %v", first, err)
	}
	post, err := http.Post(base+"/fallback/send?seq=0&session="+hello.Session, "text/plain", strings.NewReader(cmds))
	if err != nil {
		b.Fatal(err)
	}
	post.Body.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer resp.Body.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := rd.Read(buf)
			count.Add(int64(bytes.Count(buf[:n], []byte(`"push":"pub"`))))
			if err != nil {
				return
			}
		}
	}()
}

// BenchmarkFallbackFanout: one op is a publication delivered to 100
// subscribers over each transport; deliveries/s is the op rate times 100.
func BenchmarkFallbackFanout(b *testing.B) {
	for _, transport := range []string{"websocket", "http_stream", "sse"} {
		b.Run(transport, func(b *testing.B) {
			const subscribers, window = 100, 64
			srv, base := benchServer(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			received := make([]atomic.Int64, subscribers)
			for i := range received {
				benchSubscriber(b, ctx, base, transport, "feed:bench", &received[i], &wg)
			}
			// base holds what each had before the timed publications.
			base0 := make([]int64, subscribers)
			waitAll := func(n int64) {
				for i := range received {
					for received[i].Load()-base0[i] < n {
						if ctx.Err() != nil {
							b.Fatalf("subscriber %d has %d of %d publications", i, received[i].Load()-base0[i], n)
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
			// Every subscription in place: publications reach all.
			data := json.RawMessage(fmt.Sprintf(`{"text":%q}`, strings.Repeat("x", 100)))
			for start := time.Now(); ; {
				srv.Publish(ctx, "feed:bench", data)
				done := true
				for i := range received {
					done = done && received[i].Load() > 0
				}
				if done {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatal("the subscribers did not all subscribe")
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // the last of those delivered
			for i := range received {
				base0[i] = received[i].Load()
			}
			b.ResetTimer()
			start := time.Now()
			sent := publishWindowed(b, srv, data, window, waitAll)
			b.ReportMetric(float64(sent*subscribers)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFallbackIdleMemory measures the server's heap and stacks per
// idle session (connected, one subscription) over each transport, with
// 1,000 sessions whose clients are raw TCP connections that read nothing
// after their handshake: what the clients hold is a socket each.
// Run with -benchtime 1x.
func BenchmarkFallbackIdleMemory(b *testing.B) {
	for _, transport := range []string{"websocket", "http_stream", "sse"} {
		b.Run(transport, func(b *testing.B) {
			const sessions = 1000
			srv, base := benchServer(b)
			addr := strings.TrimPrefix(base, "http://")
			conns := make([]net.Conn, 0, sessions)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			used := func() uint64 {
				runtime.GC()
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc + m.StackInuse
			}
			before := used()
			buf := make([]byte, 4096)
			poster := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			cmds := `{"id":1,"method":"connect"}` + "\n" + `{"id":2,"method":"subscribe","channel":"chat:idle"}`
			for range sessions {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
				switch transport {
				case "websocket":
					fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
						"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", addr, Subprotocol)
					if _, err := readUntil(c, buf, "\r\n\r\n"); err != nil {
						b.Fatal(err)
					}
					// One masked text frame, mask 0: the payload as is.
					frame := append([]byte{0x81, 0x80 | byte(len(cmds)), 0, 0, 0, 0}, cmds...)
					if _, err := c.Write(frame); err != nil {
						b.Fatal(err)
					}
				default:
					path := "/fallback/stream"
					if transport == "sse" {
						path = "/fallback/sse"
					}
					fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
					got, err := readUntil(c, buf, `"}`)
					if err != nil {
						b.Fatal(err)
					}
					_, after, _ := strings.Cut(got, `{"session":"`)
					id, _, _ := strings.Cut(after, `"`)
					resp, err := poster.Post(base+"/fallback/send?seq=0&session="+id, "text/plain", strings.NewReader(cmds))
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			}
			for deadline := time.Now().Add(30 * time.Second); srv.Stats().Subscriptions < sessions; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d subscribed", srv.Stats().Subscriptions, sessions)
				}
			}
			poster.CloseIdleConnections()
			time.Sleep(200 * time.Millisecond) // writers done, buffers back in their pools
			after := used()
			for b.Loop() {
			}
			b.ReportMetric(float64(after-before)/sessions, "B/session")
		})
	}
}

// readUntil reads from c into buf until what it read holds marker.
func readUntil(c net.Conn, buf []byte, marker string) (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	n := 0
	for !strings.Contains(string(buf[:n]), marker) {
		m, err := c.Read(buf[n:])
		if err != nil {
			return "", err
		}
		n += m
	}
	return string(buf[:n]), nil
}
