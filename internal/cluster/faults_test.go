package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
	"github.com/duplexws/duplex/websocket"
)

// TestNodeKilledMidStream: node C is killed (SIGKILL) while 10,000
// publications flow through node A's API and a client on node B; every
// subscriber on A and B gets all of them, once each and in order. The
// killed node's members leave presence within the presence TTL, and so do
// its connections from the per-user count.
func TestNodeKilledMidStream(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:kill"
		const each = 5000
		subs := c.subscribeOn(channel, 2, 0, 1)
		doomed := c.subscribeOn(channel, 2, 2)
		var limited []*testgateway.Client
		for node := range userLimit {
			limited = append(limited, c.dial(node, "lim"))
		}
		publisher := c.dial(1, "pat")
		if n := len(c.presenceOf(0, channel)); n != 6 {
			t.Fatalf("%d members before the kill, want 6", n)
		}

		pubs := newPublished()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := time.Now()
		wg.Go(func() { errs[0] = pubs.publishAll(c.ctx, "api-a", each, 4, 0, c.apiPublisher(0, channel)) })
		wg.Go(func() { errs[1] = pubs.publishAll(c.ctx, "client-b", each, 4, 0, clientPublisher(publisher, channel)) })
		c.eventually(30*time.Second, "3,000 publications before the kill", func() error {
			pubs.mu.Lock()
			n := len(pubs.acked)
			pubs.mu.Unlock()
			if n < 3000 {
				return fmt.Errorf("%d published", n)
			}
			return nil
		})
		c.nodes[2].Kill()
		killedAt := time.Now()
		t.Logf("node C (PID %d) killed after %v", c.nodes[2].PID(), killedAt.Sub(start).Round(time.Millisecond))
		// Its connection of user lim counts until the presence TTL expires it.
		if _, err := c.tryDial(0, "lim"); websocket.CloseStatus(err) != 4006 {
			t.Errorf("user lim right after the kill: %v, want 4006 while the dead node's entry lives", err)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range c.verifySubscribers(subs, channel, 0, pubs, 30*time.Second) {
			if r.pubs != 2*each || len(r.gaps) != 0 {
				t.Errorf("subscriber %d on node %d: %s, want %d publications and no gap", i, subs[i].node, r.summary(), 2*each)
			}
		}
		t.Logf("%d publications delivered to the %d subscribers of the surviving nodes in %v", len(pubs.acked), len(subs), time.Since(start).Round(time.Millisecond))
		for _, d := range doomed {
			<-d.cl.Done()
		}

		c.eventually(presenceTTL+3*time.Second, "the killed node's members leaving presence", func() error {
			if n := len(c.presenceOf(0, channel)); n != 4 {
				return fmt.Errorf("%d members", n)
			}
			return nil
		})
		c.eventually(presenceTTL+3*time.Second, "user lim connecting again", func() error {
			cl, err := c.tryDial(0, "lim")
			if err == nil {
				limited[2] = cl
			}
			return err
		})
		t.Logf("the dead node's members left within %v", time.Since(killedAt).Round(time.Millisecond))
	})
}

// TestBrokerRestartMidStream: the broker restarts while publications flow
// through two nodes' APIs, with its data and without. Every subscriber, on
// each of the three nodes, ends at the stream's end with every publication
// that was acknowledged, or with a gap or reset push covering exactly the
// ones it lacks; with the data kept, none is lacking. While the broker is
// down the API answers 503 (error 113) and nothing else.
func TestBrokerRestartMidStream(t *testing.T) {
	for _, persist := range []bool{true, false} {
		name := "persistent"
		if !persist {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			forEachBroker(t, func(t *testing.T, kind brokerKind) {
				c := startCluster(t, kind, 3)
				const channel = "room:restart"
				const each = 1500
				subs := c.subscribeOn(channel, 2, 0, 1, 2)

				pubs := newPublished()
				var wg sync.WaitGroup
				errs := make([]error, 2)
				wg.Go(func() { errs[0] = pubs.publishAll(c.ctx, "api-a", each, 2, 20*time.Second, c.apiPublisher(0, channel)) })
				wg.Go(func() { errs[1] = pubs.publishAll(c.ctx, "api-b", each, 2, 20*time.Second, c.apiPublisher(1, channel)) })
				c.eventually(30*time.Second, "1,000 publications before the restart", func() error {
					pubs.mu.Lock()
					n := len(pubs.acked)
					pubs.mu.Unlock()
					if n < 1000 {
						return fmt.Errorf("%d published", n)
					}
					return nil
				})
				began := time.Now()
				c.broker.restart(t, persist)
				t.Logf("broker restarted in %v", time.Since(began).Round(time.Millisecond))
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				c.waitReady(200, 20*time.Second)
				pubs.mu.Lock()
				failures := fmt.Sprint(pubs.failures)
				for kind := range pubs.failures {
					if kind != "HTTP 503 error 113" && !strings.Contains(kind, "timeout") {
						t.Errorf("publish failed with %s during the restart, want only 503 with error 113", kind)
					}
				}
				pubs.mu.Unlock()
				reports := c.verifySubscribers(subs, channel, 2, pubs, 30*time.Second)
				for i, r := range reports {
					if persist && len(r.gaps) != 0 {
						t.Errorf("subscriber %d on node %d: %s: a gap though the broker kept its data", i, subs[i].node, r.summary())
						for _, g := range r.gaps {
							var h struct {
								Publications []testgateway.Event `json:"publications"`
							}
							c.api(2, "history", map[string]any{"channel": channel, "since": position{Offset: g.From - 1, Epoch: g.Epoch}, "limit": g.To - g.From + 1}, &h)
							_, acked := pubs.acked[position{Offset: g.From, Epoch: g.Epoch}]
							t.Logf("DEBUG gap %d-%d: history holds %+v; acked %v", g.From, g.To, h.Publications, acked)
						}
					}
				}
				t.Logf("%d acknowledged, failures %s; subscriber 0: %s", len(pubs.acked), failures, reports[0].summary())
			})
		})
	}
}

// TestBrokerPaused: the broker hangs (SIGSTOP) while clients keep
// publishing. Every node turns unready within seconds and answers the
// API with 503 (error 113) and subscriptions with error 113, without
// waiting long and with its memory bounded; when the broker continues,
// every node is ready again by itself and every subscriber has every
// acknowledged publication, none twice.
func TestBrokerPaused(t *testing.T) {
	forEachBroker(t, func(t *testing.T, kind brokerKind) {
		c := startCluster(t, kind, 3)
		const channel = "room:pause"
		subs := c.subscribeOn(channel, 2, 0, 1, 2)
		pubs := newPublished()
		if err := pubs.publishAll(c.ctx, "before", 200, 4, 0, c.apiPublisher(0, channel)); err != nil {
			t.Fatal(err)
		}
		var rssBefore []int64
		for _, n := range c.nodes {
			st, err := n.Stat()
			if err != nil {
				t.Fatal(err)
			}
			rssBefore = append(rssBefore, st.RSS)
		}

		// While paused: 8 publishers through the API of node A and 8
		// clients on node B keep trying.
		load, stopLoad := context.WithCancel(c.ctx)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var calls, longest = 0, time.Duration(0)
		publishers := make([]*testgateway.Client, 8)
		for i := range publishers {
			publishers[i] = c.dial(1, "")
		}
		for i := range 16 {
			wg.Go(func() {
				for n := 0; load.Err() == nil && n < 100000; n++ {
					began := time.Now()
					ctx, cancel := context.WithTimeout(load, 15*time.Second)
					var err error
					data := map[string]any{"src": fmt.Sprintf("load%d", i), "i": n}
					var pos position
					if i < 8 {
						pos, err = c.nodes[0].Publish(ctx, channel, data)
					} else {
						pos, err = publishers[i-8].Publish(ctx, channel, data)
					}
					cancel()
					took := time.Since(began)
					mu.Lock()
					calls++
					if load.Err() == nil {
						longest = max(longest, took)
					}
					mu.Unlock()
					pubs.record(data, pos, err)
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		time.Sleep(200 * time.Millisecond)
		c.broker.pause(t)
		paused := time.Now()
		resumed := false
		defer func() {
			if !resumed {
				c.broker.resume(t)
			}
		}()
		c.waitReady(503, 10*time.Second)
		detected := time.Since(paused)
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		probe := map[string]any{"probe": 1}
		pos, err := c.nodes[2].Publish(ctx, channel, probe)
		pubs.record(probe, pos, err)
		if !isUnavailable(err) {
			t.Errorf("API publish while the broker is paused: %v, want 503 with error 113", err)
		}
		late := c.dial(2, "")
		_, err = late.Subscribe(ctx, "room:pause-late", nil)
		if e, ok := err.(*testgateway.Error); !ok || e.Code != 113 {
			t.Errorf("subscribe while the broker is paused: %v, want error 113", err)
		}
		time.Sleep(3 * time.Second)
		var growth []string
		for i, n := range c.nodes {
			st, err := n.Stat()
			if err != nil {
				t.Fatal(err)
			}
			grew := st.RSS - rssBefore[i]
			growth = append(growth, fmt.Sprintf("%+.1f MiB", float64(grew)/(1<<20)))
			if grew > 64<<20 {
				t.Errorf("node %d grew by %d MiB while the broker was paused", i, grew>>20)
			}
		}
		c.broker.resume(t)
		resumed = true
		pausedFor := time.Since(paused)
		c.waitReady(200, 20*time.Second)
		back := time.Since(paused) - pausedFor
		stopLoad()
		wg.Wait()
		if longest > 12*time.Second {
			t.Errorf("a publish call took %v while the broker was paused", longest)
		}
		if err := pubs.publishAll(c.ctx, "after", 100, 4, 10*time.Second, c.apiPublisher(2, channel)); err != nil {
			t.Fatal(err)
		}
		for i, r := range c.verifySubscribers(subs, channel, 2, pubs, 30*time.Second) {
			if len(r.gaps) != 0 {
				t.Errorf("subscriber %d on node %d: %s: a gap though the broker lost nothing", i, subs[i].node, r.summary())
			}
		}
		pubs.mu.Lock()
		defer pubs.mu.Unlock()
		t.Logf("unready %v after SIGSTOP; paused %v; ready %v after SIGCONT; %d publish calls, longest %v, failures %v; RSS %s",
			detected.Round(time.Millisecond), pausedFor.Round(time.Millisecond), back.Round(time.Millisecond),
			calls, longest.Round(time.Millisecond), pubs.failures, strings.Join(growth, " "))
	})
}

// TestBrokerUnreachableAtStart: duplex serve with a broker that refuses
// connections, or one that accepts them and never answers, exits with a
// non-zero status and an error naming the broker, within the broker start
// timeout, instead of hanging.
func TestBrokerUnreachableAtStart(t *testing.T) {
	bin := duplexBinary(t)
	cases := map[string]string{
		"redis":         fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t)),
		"redis-cluster": fmt.Sprintf("redis://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", freePort(t), freePort(t), freePort(t)),
		"nats":          fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)),
	}
	run := func(t *testing.T, url string, within time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), within+10*time.Second)
		defer cancel()
		began := time.Now()
		cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--broker", url)
		out, err := cmd.CombinedOutput()
		took := time.Since(began)
		exit, ok := err.(*exec.ExitError)
		switch {
		case ctx.Err() != nil:
			t.Fatalf("still running after %v", took)
		case !ok || exit.ExitCode() <= 0:
			t.Fatalf("exit %v, want a non-zero status; output:\n%s", err, out)
		case took > within:
			t.Errorf("exited after %v, want within %v", took, within)
		}
		host := strings.TrimPrefix(strings.SplitN(strings.SplitN(url, "://", 2)[1], ",", 2)[0], "")
		host = strings.SplitN(host, "/", 2)[0]
		if msg := string(out); !strings.Contains(msg, "broker") || !strings.Contains(msg, host) || strings.Contains(msg, "listening on") {
			t.Errorf("output does not name the broker and %s (or it listened):\n%s", host, out)
		}
		t.Logf("exit status %d after %v: %s", exit.ExitCode(), took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	}
	for _, kind := range brokerKinds {
		t.Run(kind.name+"/refused", func(t *testing.T) { run(t, cases[kind.name], 5*time.Second) })
	}
	// A broker that hangs: the start timeout (10 s) ends the wait.
	for _, kind := range brokerKinds {
		if kind.name == "redis-cluster" {
			continue // a Cluster's nodes hang the same way as one server
		}
		t.Run(kind.name+"/paused", func(t *testing.T) {
			b := kind.start(t)
			b.pause(t)
			defer b.resume(t)
			run(t, b.url, 15*time.Second)
		})
	}
}
