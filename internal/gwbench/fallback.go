package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// fallbackClient is a client of the gateway's fallback transports: a GET
// of /fallback/stream (HTTP streaming) or /fallback/sse (Server-Sent
// Events) on a TCP connection of its own whose response stays open, and
// its commands as POSTs to /fallback/send.
type fallbackClient struct {
	conn net.Conn
	done chan struct{}
}

func (c *fallbackClient) close() {
	c.conn.Close()
	<-c.done
}

// runFallbackIdle starts a gateway, opens n fallback sessions over kind
// ("http_stream" or "sse"), each connected and subscribed to a channel of
// its own, and reports the gateway's memory per idle session, measured
// from this process as runCase does for WebSocket.
func runFallbackIdle(bin, kind string, n int) string {
	g := startGateway(bin)
	defer g.stop()
	warm := g.connectFallback(kind, 10, func(int) string { return "bench:warm" })
	for _, c := range warm {
		c.close()
	}
	time.Sleep(time.Second)
	before := g.memory()
	start := time.Now()
	clients := g.connectFallback(kind, n, func(i int) string { return fmt.Sprintf("bench:c%d", i) })
	connectTime := time.Since(start)
	time.Sleep(2 * time.Second)
	after := g.memory()
	for _, c := range clients {
		c.close()
	}
	return fmt.Sprintf("| idle (%s) | %d | connected in %v; RSS %.1f KiB/session, Go heap objects %.1f KiB/session, stacks %.1f KiB/session, goroutines %.2f/session |",
		kind, n, connectTime.Round(time.Millisecond),
		(after.rss-before.rss)/float64(n)/1024, (after.heap-before.heap)/float64(n)/1024,
		(after.stacks-before.stacks)/float64(n)/1024, (after.goroutines-before.goroutines)/float64(n))
}

// connectFallback opens n fallback sessions, 64 at a time, over several
// loopback source addresses; each sends connect and subscribe in one POST
// and waits for both replies on its stream.
func (g *gateway) connectFallback(kind string, n int, channel func(i int) string) []*fallbackClient {
	path := "/fallback/stream"
	if kind == "sse" {
		path = "/fallback/sse"
	}
	addr := strings.TrimPrefix(g.base, "http://")
	// The POSTs share a few kept-alive connections, closed before the
	// memory is read.
	var src atomic.Uint32
	posts := &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+src.Add(1)%8))}}
			return d.DialContext(ctx, network, a)
		},
	}
	defer posts.CloseIdleConnections()
	httpc := &http.Client{Transport: posts, Timeout: 30 * time.Second}
	clients := make([]*fallbackClient, n)
	inParallel(n, func(i int) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}, Timeout: 30 * time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			log.Fatalf("dial %d: %v", i, err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			log.Fatalf("fallback client %d: GET %s: %v %v", i, path, resp.Status, err)
		}
		lines := bufio.NewReader(resp.Body)
		next := func() []byte {
			for {
				line, err := lines.ReadBytes('\n')
				if err != nil {
					log.Fatalf("fallback client %d: %v", i, err)
				}
				line = bytes.TrimSpace(line)
				if kind == "sse" {
					var ok bool
					if line, ok = bytes.CutPrefix(line, []byte("data: ")); !ok {
						continue // the blank line ending an event, a comment
					}
				}
				if len(line) > 0 {
					return line
				}
			}
		}
		var hello struct{ Session string }
		if err := json.Unmarshal(next(), &hello); err != nil || hello.Session == "" {
			log.Fatalf("fallback client %d: no session line: %v", i, err)
		}
		cmds := subscribeCommands(channel(i))
		pr, err := httpc.Post(g.base+"/fallback/send?seq=0&session="+hello.Session, "text/plain", strings.NewReader(cmds))
		if err != nil {
			log.Fatalf("fallback client %d: POST: %v", i, err)
		}
		io.Copy(io.Discard, pr.Body)
		pr.Body.Close()
		if pr.StatusCode != http.StatusNoContent {
			log.Fatalf("fallback client %d: POST: %s", i, pr.Status)
		}
		for replies := 0; replies < 2; {
			line := next()
			if bytes.Contains(line, []byte(`"error"`)) {
				log.Fatalf("fallback client %d: %s", i, line)
			}
			replies += bytes.Count(line, []byte(`"id":`))
		}
		conn.SetDeadline(time.Time{})
		c := &fallbackClient{conn: conn, done: make(chan struct{})}
		clients[i] = c
		go func() {
			// Keepalives until the session ends.
			defer close(c.done)
			io.Copy(io.Discard, lines)
		}()
	})
	return clients
}
