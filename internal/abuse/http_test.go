package abuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyWatch asks /readyz every 200 ms while an attack runs; each must
// answer 200 within a second.
type readyWatch struct {
	g    *target
	stop chan struct{}
	done chan struct{}
	n    int
	bad  []string
}

func (g *target) watchReady() *readyWatch {
	w := &readyWatch{g: g, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: localDialer(healthyIP).DialContext}}
	go func() {
		defer close(w.done)
		defer client.CloseIdleConnections()
		for {
			resp, err := client.Get(g.base + "/readyz")
			w.n++
			if err != nil {
				w.bad = append(w.bad, err.Error())
			} else {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					w.bad = append(w.bad, resp.Status)
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *readyWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if len(w.bad) > 0 {
		t.Errorf("/readyz failed %d of %d times during the attack, first: %s", len(w.bad), w.n, w.bad[0])
	}
}

// holdConns opens n TCP connections to g from ip, writes first on each,
// and returns them; it stops early when ctx ends.
func holdConns(ctx context.Context, g *target, ip net.IP, n int, first func(i int) string) ([]*rawConn, error) {
	conns := make([]*rawConn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialTCP(ctx, g.addr, ip, 0)
			if err == nil && first != nil {
				_, err = io.WriteString(c, first(i))
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if c != nil {
					c.Close()
				}
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	var out []*rawConn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, firstErr
}

// awaitAll waits, within d, for the server to end every connection, and
// counts how each ended (see rawConn.awaitEnd).
func awaitAll(conns []*rawConn, d time.Duration) *codes {
	var seen codes
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen.add(c.awaitEnd(d))
			c.Close()
		}()
	}
	wg.Wait()
	return &seen
}

// TestSlowloris: connections that send their request headers a line at a
// time and never finish them are closed by the header timeout (10 s), at
// little cost each. This held before the issue.
func TestSlowloris(t *testing.T) {
	needSuite(t)
	t.Parallel()
	conns := size(300, 1000)
	for _, kind := range []string{"serve", "echo"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var g *target
			if kind == "serve" {
				g = startServe(t, baseConfig())
			} else {
				g = startEcho(t)
			}
			g.run(t, "slowloris/"+kind, attack{run: func(ctx context.Context, t *testing.T) string {
				open, err := holdConns(ctx, g, attackerIP, conns, func(int) string { return "GET / HTTP/1.1\r\nHost: x\r\n" })
				if err != nil {
					t.Logf("dial: %v", err)
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { // a header line a second, each never the last
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
						for _, c := range open {
							c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
							io.WriteString(c, "X-Slow: 1\r\n")
						}
					}
				}()
				seen := awaitAll(open, 15*time.Second)
				close(stop)
				wg.Wait()
				if n := seen.get("open"); n > 0 || len(open) < conns {
					t.Errorf("slowloris: %d of %d connections open after 15 s (%s)", n, len(open), seen)
				}
				return fmt.Sprintf("%d conns: %s", len(open), seen)
			}})
		})
	}
}

// TestSlowBody: requests whose bodies come a byte at a time, to /healthz
// and /api/publish, stayed open for minutes (5,000 of them), and 20,000
// exhausted the descriptors. Every request needs read and idle deadlines;
// /readyz must answer throughout. Waits for H's fix of defect 4.
func TestSlowBody(t *testing.T) {
	needSuite(t)
	t.Parallel()
	conns := size(300, 5000)
	g := startServe(t, baseConfig())
	g.run(t, "slow body", attack{run: func(ctx context.Context, t *testing.T) string {
		ready := g.watchReady()
		open, err := holdConns(ctx, g, attackerIP, conns, func(i int) string {
			path := "/api/publish"
			if i%2 == 0 {
				path = "/healthz"
			}
			return "POST " + path + " HTTP/1.1\r\nHost: " + g.addr + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
		})
		if err != nil {
			t.Logf("dial: %v", err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a byte of body a second
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				for _, c := range open {
					c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					io.WriteString(c, " ")
				}
			}
		}()
		// A minute is what the issue calls "for minutes"; the deadline
		// should be well under it.
		seen := awaitAll(open, 30*time.Second)
		close(stop)
		wg.Wait()
		ready.check(t)
		if n := seen.get("open"); n > 0 || len(open) < conns {
			t.Errorf("slow body: %d of %d requests still open after 30 s (%s)", n, len(open), seen)
		}
		return fmt.Sprintf("%d slow bodies: %s", len(open), seen)
	}})
}

// TestIdleFlood: TCP connections that send nothing, from one address,
// until the server's descriptors would run out. Connections that have
// not upgraded need a cap per address and in total, and /readyz must
// answer throughout. Waits for H's fix of defect 4.
func TestIdleFlood(t *testing.T) {
	needSuite(t)
	conns := size(3000, 18000)
	g := startServe(t, baseConfig())
	g.run(t, "idle connection flood", attack{
		rssDuring: uint64(conns)*8<<10 + 32*mib,
		run: func(ctx context.Context, t *testing.T) string {
			ready := g.watchReady()
			open, err := holdConns(ctx, g, attackerIP, conns, nil)
			if err != nil {
				t.Logf("dial: %v", err)
			}
			time.Sleep(2 * time.Second)
			// Which has the server closed already?
			seen := awaitAll(open, 100*time.Millisecond)
			ready.check(t)
			// Generous: one address holding a thousand connections that
			// say nothing is already a lot.
			if n := seen.get("open"); n > 1000 {
				t.Errorf("idle flood: the server holds %d of %d connections from one address that sent nothing", n, len(open))
			}
			return fmt.Sprintf("%d idle conns: %s", len(open), seen)
		}})
}

// TestBigUpgradeHeader: upgrade requests with a header of nearly 1 MiB
// were accepted (101) and the header held until connect (1,000 of them:
// 1.69 GB). Header bytes must be capped (about 16 KiB, 431 over it).
// Waits for H's fix of defect 3.
func TestBigUpgradeHeader(t *testing.T) {
	needSuite(t)
	conns := size(50, 1000)
	big := "X-Big: " + strings.Repeat("b", 1000<<10) + "\r\n"
	g := startServe(t, baseConfig())
	g.run(t, "1 MiB upgrade header", attack{
		rssDuring:  uint64(conns)*64<<10 + 32*mib,
		heapDuring: uint64(conns)*64<<10 + 16*mib,
		run: func(ctx context.Context, t *testing.T) string {
			var seen codes
			var mu sync.Mutex
			var open []*rawConn
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for range conns {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, status, err := dialWS(ctx, g, attackerIP, big, 0)
					if err != nil && status == 0 {
						// net/http answers 431, closes its side and, half a
						// second later, the connection, which resets one
						// still being written to: under load the answer
						// can be lost with it. Refused all the same.
						if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) {
							seen.add("reset")
						} else {
							seen.add("error")
						}
						return
					}
					seen.add(strconv.Itoa(status))
					if c != nil {
						mu.Lock()
						open = append(open, c)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			time.Sleep(time.Second) // what was accepted is held meanwhile
			for _, c := range open {
				c.Close()
			}
			// Every request refused, and answered 431: a client that
			// keeps writing after the answer may see only the reset
			// (a full run on a quiet machine: 431×687, reset×313).
			if n := seen.get("431"); n+seen.get("reset") != conns || n == 0 {
				t.Errorf("big headers: statuses %s, want 431 for all %d (some may be lost to a reset)", &seen, conns)
			}
			return fmt.Sprintf("%d upgrades with a 1000 KiB header: %s", conns, &seen)
		}})
}

// TestHandshakeFlood: handshakes as fast as one address can make them,
// with handshake_rate configured: 429 for all but the burst and the rate.
// This held before the issue.
func TestHandshakeFlood(t *testing.T) {
	needSuite(t)
	cfg := baseConfig()
	cfg.limits()["handshake_rate"] = 10
	cfg.limits()["handshake_burst"] = 20
	d := time.Duration(size(2, 10)) * time.Second
	g := startServe(t, cfg)
	g.run(t, "handshake flood", attack{run: func(ctx context.Context, t *testing.T) string {
		var seen codes
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && ctx.Err() == nil {
					c, status, err := dialWS(ctx, g, attackerIP, "", 0)
					if err != nil && status == 0 {
						seen.add("error")
						continue
					}
					seen.add(strconv.Itoa(status))
					c.Close()
				}
			}()
		}
		wg.Wait()
		allowed := 20 + int(10*d.Seconds()) + 5
		if n := seen.get("101"); n > allowed || seen.get("429") == 0 {
			t.Errorf("handshake flood: %s; want at most %d upgraded and the rest 429", &seen, allowed)
		}
		if n := seen.total() - seen.get("101") - seen.get("429"); n > 0 {
			t.Errorf("handshake flood: %d handshakes ended otherwise: %s", n, &seen)
		}
		return fmt.Sprintf("%d handshakes: %s", seen.total(), &seen)
	}})
}

// TestSpoofedProxyHeader: with client_ip_header set, the header was
// trusted from any peer and its leftmost value taken, so a rotated
// X-Real-IP escaped every per-address limit and a victim's address could
// be locked out. Only trusted_proxies may set it. Waits for H's fix of
// defect 9.
func TestSpoofedProxyHeader(t *testing.T) {
	needSuite(t)
	cfg := baseConfig()
	cfg.limits()["client_ip_header"] = "X-Real-IP"
	cfg.limits()["max_connections_per_ip"] = 5
	// The proxy is elsewhere: loopback peers are not trusted.
	cfg.limits()["trusted_proxies"] = []string{"10.0.0.0/8"}
	victim := net.IPv4(127, 0, 0, 3)
	g := startServe(t, cfg)
	g.run(t, "spoofed proxy header", attack{run: func(ctx context.Context, t *testing.T) string {
		var seen codes
		var open []*rawConn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		// Rotating the header: all of these come from the attacker's
		// address, so 5 are admitted and the others closed with 4006.
		for i := range 20 {
			c, status, err := dialWS(ctx, g, attackerIP, fmt.Sprintf("X-Real-IP: 203.0.113.%d\r\n", i+1), 0)
			if err != nil || status != 101 {
				seen.add(fmt.Sprintf("handshake %d", status))
				continue
			}
			open = append(open, c)
			c.Write(appendFrame(nil, true, false, opText, len(`{"id":1,"method":"connect"}`), []byte(`{"id":1,"method":"connect"}`)))
		}
		rotated := awaitCloses(open, time.Second)
		if rotated.get("4006") != 15 || rotated.get("open") != 5 {
			t.Errorf("rotated X-Real-IP from one peer: %s; want 5 admitted and 15 closed with 4006", rotated)
		}
		// Naming the victim's address does not count against it.
		for range 5 {
			c, status, err := dialWS(ctx, g, attackerIP, "X-Real-IP: "+victim.String()+"\r\n", 0)
			if err == nil && status == 101 {
				open = append(open, c)
			}
		}
		c, status, err := dialWS(ctx, g, victim, "", 0)
		if err != nil || status != 101 {
			t.Fatalf("victim: handshake %d %v", status, err)
		}
		open = append(open, c)
		victimEnd := c.awaitClose(500 * time.Millisecond)
		if victimEnd != "open" {
			t.Errorf("the victim, whose address the attacker named in X-Real-IP, was closed: %s", victimEnd)
		}
		seen.add("victim " + victimEnd)
		return fmt.Sprintf("rotated: %s; %s", rotated, &seen)
	}})
}

// awaitCloses waits d on each WebSocket connection for a close and counts
// the codes ("open" for those still open).
func awaitCloses(conns []*rawConn, d time.Duration) *codes {
	var seen codes
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen.add(c.awaitClose(d))
		}()
	}
	wg.Wait()
	return &seen
}

// TestAPIFromBrowsers: without an API key the backend API served any
// loopback request: a text/plain POST from a foreign page (no preflight)
// or a request for a foreign Host (DNS rebinding) published and
// disconnected. Without a key it must require application/json and
// refuse requests with an Origin or a non-loopback Host. Waits for H's
// fix of defect 10.
func TestAPIFromBrowsers(t *testing.T) {
	needSuite(t)
	g := startServe(t, baseConfig())
	g.run(t, "API from browsers", attack{run: func(ctx context.Context, t *testing.T) string {
		body := `{"channel":"big:api","data":{"evil":true}}`
		var seen codes
		for _, tc := range []struct {
			name, header string
			want         int
		}{
			{"text/plain", "Host: " + g.addr + "\r\nContent-Type: text/plain\r\n", http.StatusUnsupportedMediaType},
			{"origin", "Host: " + g.addr + "\r\nContent-Type: application/json\r\nOrigin: http://evil.example\r\n", http.StatusForbidden},
			{"rebinding", "Host: evil.example:" + portOf(g.addr) + "\r\nContent-Type: application/json\r\n", http.StatusForbidden},
		} {
			c, err := dialTCP(ctx, g.addr, attackerIP, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /api/publish HTTP/1.1\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s", tc.header, len(body), body)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			status, err := c.readResponseHead()
			c.Close()
			seen.add(fmt.Sprintf("%s:%d", tc.name, status))
			if err != nil || status != tc.want {
				t.Errorf("%s publish: status %d %v, want %s", tc.name, status, err, statusText(tc.want))
			}
		}
		// Nothing was published.
		if n := g.historyLen(t, "big:api"); n != 0 {
			t.Errorf("%d publications reached big:api from browser-shaped requests", n)
		}
		return seen.String()
	}})
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// historyLen reads a channel's offset through the API, as the backend.
func (g *target) historyLen(t *testing.T, channel string) int {
	t.Helper()
	resp, err := g.http.Post(g.base+"/api/history", "application/json", strings.NewReader(`{"channel":"`+channel+`","limit":0}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`"offset":(\d+)`).FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("history of %s: %s %s", channel, resp.Status, b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestDemoKeepsAuth: demo: true forced anonymous access even with
// auth.anonymous: false. An anonymous connect must be closed with 4501.
// Waits for H's fix of defect 11.
func TestDemoKeepsAuth(t *testing.T) {
	needSuite(t)
	cfg := baseConfig()
	cfg["demo"] = true
	cfg["auth"] = map[string]any{"anonymous": false, "algorithm": "HS256", "secret": strings.Repeat("k", 32)}
	g := startServe(t, cfg)
	g.run(t, "demo keeps auth", attack{noProbe: true, run: func(ctx context.Context, t *testing.T) string {
		c, status, err := dialWS(ctx, g, attackerIP, "", 0)
		if err != nil || status != 101 {
			t.Fatalf("handshake %d %v", status, err)
		}
		defer c.Close()
		connect := []byte(`{"id":1,"method":"connect"}`)
		c.Write(appendFrame(nil, true, false, opText, len(connect), connect))
		how := c.awaitClose(5 * time.Second)
		if how != "4501" {
			t.Errorf("anonymous connect with demo: true and auth.anonymous: false ended %s, want 4501", how)
		}
		return "anonymous connect: " + how
	}})
}

// TestDefaultsProtect: the default configuration had no per-address cap
// and no handshake rate. One address opening connections as fast as it
// can must meet a limit (429 or 4006) under the defaults, or the server
// must warn at start. Waits for H's fix of defect 12.
func TestDefaultsProtect(t *testing.T) {
	needSuite(t)
	conns := size(500, 2000)
	g := startServe(t, nil)
	g.probeChannel = "demo:probe"
	g.run(t, "protective defaults", attack{run: func(ctx context.Context, t *testing.T) string {
		var seen codes
		var mu sync.Mutex
		var open []*rawConn
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		connect := appendFrame(nil, true, false, opText, len(`{"id":1,"method":"connect"}`), []byte(`{"id":1,"method":"connect"}`))
		for range conns {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, status, err := dialWS(ctx, g, attackerIP, "", 0)
				if err != nil && status == 0 {
					seen.add("error")
					return
				}
				if status != 101 {
					seen.add(strconv.Itoa(status))
					c.Close()
					return
				}
				c.Write(connect)
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
			}()
		}
		wg.Wait()
		closes := awaitCloses(open, time.Second)
		for _, c := range open {
			c.Close()
		}
		warned := regexp.MustCompile(`(?i)level=WARN.*(per.?ip|handshake|limit)`).MatchString(g.stderr.String())
		if seen.get("429") == 0 && closes.get("4006") == 0 && !warned {
			t.Errorf("defaults: %d connections from one address, all admitted (%s, %s), and no warning at start", conns, &seen, closes)
		}
		return fmt.Sprintf("%d conns: %s %s; warned at start: %v", conns, &seen, closes, warned)
	}})
}

// TestToolchain: the binary is built with the approved toolchain, which
// fixes the vulnerabilities of defect 14 (go1.27.3 or later).
func TestToolchain(t *testing.T) {
	needSuite(t)
	out, err := exec.Command("go", "version", duplexBin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`go1\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("go version: %s", out)
	}
	minor, _ := strconv.Atoi(string(m[1]))
	patch, _ := strconv.Atoi(string(m[2]))
	result := "pass"
	if minor < 27 || minor == 27 && patch < 3 {
		t.Errorf("duplex built with %s, want go1.27.3 or later", m[0])
		result = "FAIL"
	}
	addSummary(fmt.Sprintf("| toolchain | %s: %s | – | – | – |", result, m[0]))
	ranCase(t)
}
