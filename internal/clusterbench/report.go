package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/duplexws/duplex/internal/floor"
)

// report is every result of a run, printed as markdown.
type report struct {
	opts    options
	started time.Time
	setups  []setupResult
	storms  []storm
	errors  int         // setups that could not finish
	floor   floor.Floor // of a delivery on this machine; zero if not measured
}

func (r report) failed() bool {
	if r.errors > 0 {
		return true
	}
	for _, s := range r.setups {
		for _, p := range s.phases {
			if p.failed() {
				return true
			}
		}
	}
	for _, s := range r.storms {
		if s.failed() {
			return true
		}
	}
	return false
}

func (r report) print(w io.Writer) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "\n%s, %s, %d CPUs, load average at start %s; %v of publishing per phase, %d API requests in flight per node\n",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(),
		strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "),
		r.opts.duration, r.opts.inflight)

	if d := r.floor.Delivery(); d > 0 {
		fmt.Fprintf(w, "\nThe floor of a delivery here: %.1f µs of CPU for the write(2) of a %d-byte frame on one loopback socket and its read(2) on another (%.1f + %.1f µs), with no other work (the cheapest of %d rounds over %d socket pairs, on each of three sets of them).\n",
			us(d), floorFrame, us(r.floor.Write), us(r.floor.Read), floorRounds, floorPairs)
	}

	fmt.Fprintf(w, "\n| setup | connections | connected in | RSS per connection |\n|---|---|---|---|\n")
	for _, s := range r.setups {
		fmt.Fprintf(w, "| %v | %d | %.1f s | %.1f KiB |\n", s.setup, s.connected.Clients, s.connected.Seconds, s.rssPerConn/1024)
	}

	fmt.Fprintf(w, "\n| setup | case | publishing | deliveries/s | per node | p50 | p99 | max | CPU (cores): gateways / broker / load | lost / in gaps / repeated | late |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.setups {
		for _, p := range s.phases {
			pace := "as fast as delivered"
			if p.paced {
				pace = fmt.Sprintf("paced, %.3g/s", p.pubRate)
			}
			if p.retries > 0 {
				pace += fmt.Sprintf(" (%d retried after 503)", p.retries)
			}
			fmt.Fprintf(w, "| %v | %s | %s | %.0f | %.0f | %v | %v | %v | %.2f / %.2f / %.2f | %d / %d / %d%s | %d |\n",
				s.setup, p.name, pace, p.rate, p.rate/float64(s.setup.nodes),
				ms(p.p50), ms(p.p99), ms(p.maxLatency),
				p.cpu.gateways, p.cpu.broker, p.cpu.load, p.lost, p.gapped, p.duplicated, disconnects(p.disconnects), p.late)
		}
	}

	if len(r.storms) > 0 {
		fmt.Fprintf(w, "\n| connect storm | clients | connected and subscribed | in | presence complete on every node | join/leave/count pushes | one publication: delivered, slowest |\n|---|---|---|---|---|---|---|\n")
		for _, s := range r.storms {
			fmt.Fprintf(w, "| %v | %d | %d (%d failed) | %.1f s | %d members after %.1f s | %d | %d of %d, %v%s |\n",
				s.setup, s.clients, s.connected.Clients, s.connected.Failed, s.connected.Seconds,
				s.presence, s.presenceSeconds, s.pushes, s.delivered, s.clients, ms(s.fanout), disconnects(s.disconnects))
			for _, e := range s.connected.Errors {
				fmt.Fprintf(w, "  - %s\n", e)
			}
		}
	}
	r.printTargets(w)
}

// printTargets compares the run with the targets of issue 11.
func (r report) printTargets(w io.Writer) {
	fmt.Fprintf(w, "\nTargets:\n")
	reference := map[string]phase{} // the memory broker's unpaced phases, by case
	for _, s := range r.setups {
		if s.setup.broker == "memory" {
			for _, p := range s.phases {
				if !p.paced {
					reference[p.name] = p
				}
			}
		}
	}
	for _, s := range r.setups {
		if s.setup.broker != "redis" {
			continue
		}
		for _, p := range s.phases {
			ref, ok := reference[p.name]
			if p.paced || !ok || ref.rate == 0 {
				continue
			}
			share := p.rate / float64(s.setup.nodes) / ref.rate
			fmt.Fprintf(w, "- %v, %s: %.0f deliveries/s per node, %.0f%% of the memory broker's %.0f on one node (target ≥ 70%%): %s",
				s.setup, p.name, p.rate/float64(s.setup.nodes), 100*share, ref.rate, verdict(share >= 0.7))
			// The broker's server runs on the nodes' cores here, where it
			// would have a machine of its own: per CPU-second of the
			// gateways, the figure leaves its share out.
			if p.cpu.gateways > 0 && ref.cpu.gateways > 0 {
				fmt.Fprintf(w, "; per gateway CPU-second %.0f%% of the memory broker's (Redis's own %.2f cores share these)",
					100*(p.rate/p.cpu.gateways)/(ref.rate/ref.cpu.gateways), p.cpu.broker)
			}
			fmt.Fprintln(w)
		}
	}
	var most int
	for _, s := range r.setups {
		most = max(most, s.connected.Clients)
	}
	for _, s := range r.setups {
		if s.connected.Clients != most || s.setup.broker == "memory" {
			continue
		}
		for _, p := range s.phases {
			fmt.Fprintf(w, "- %v, %s, %s: p99 %v at %d connections (target < 200 ms): %s",
				s.setup, p.name, map[bool]string{true: "paced", false: "as fast as delivered"}[p.paced],
				ms(p.p99), s.connected.Clients, verdict(p.p99 < p99Target))
			if least := r.floor.Fanout(s.connected.Clients, 0.99, runtime.NumCPU(), true); p.name == oneChannel && least > 0 {
				// Each publication is a delivery to every client.
				fmt.Fprintf(w, "; the floor puts the 99th percentile client of one publication at %v or later on these %d cores (%v with only the writes)%s",
					ms(least), runtime.NumCPU(), ms(r.floor.Fanout(s.connected.Clients, 0.99, runtime.NumCPU(), false)),
					map[bool]string{true: ": not reachable on this machine", false: ""}[least >= p99Target])
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "- lost or repeated publications, disconnected clients: %s\n", verdict(!r.failed()))
}

// The floor a run measures: frames of floorFrame bytes, about a push of
// this benchmark's publications (a stamp and 32 bytes of payload, in
// JSON), over floorPairs socket pairs, the cheapest of floorRounds rounds.
const (
	floorFrame  = 128
	floorPairs  = 1000
	floorRounds = 20
)

// p99Target is issue 11's bound on publish-to-receive p99.
const p99Target = 200 * time.Millisecond

func verdict(ok bool) string {
	if ok {
		return "holds"
	}
	return "DOES NOT HOLD"
}

func disconnects(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d clients disconnected", n)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ms rounds d for a table: to 0.1 ms below a second.
func ms(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(10 * time.Millisecond).String()
}
