// Command loadgen runs the side-by-side benchmarks of peers/bench: it builds
// one server per library (peers/bench/servers), drives each with the same
// Duplex client, and writes a markdown report, the raw data as JSON and SVG
// charts. See peers/bench/README.md.
//
// Run it from the peers module:
//
//	cd peers && go run ./bench/cmd/loadgen -out ../docs/benchmarks
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duplexws/duplex/peers/bench/internal/benchsrv"
)

// config is the command line.
type config struct {
	servers       []string
	cases         []string
	duration      time.Duration
	reps          int
	echoConns     []int
	sizes         []int
	idleConns     []int
	bcastSubs     []int
	bcastWindow   int
	compressConns []int
	syscallConns  []int // echo connections of the syscalls case
	syscallSubs   []int // broadcast subscribers of the syscalls case
	out           string
	profileDir    string
	smoke         bool
}

// smokePreset is what -smoke sets, unless the flag is given too: every
// case, tiny, to prove the harness works in well under a minute.
var smokePreset = map[string]string{
	"duration":       "500ms",
	"reps":           "1",
	"echo-conns":     "16",
	"sizes":          "16,1024,65536",
	"idle-conns":     "500",
	"bcast-subs":     "100",
	"compress-conns": "200",
	"syscall-conns":  "16",
	"syscall-subs":   "100",
}

func parseFlags() (*config, error) {
	cfg := &config{}
	var servers, cases, echoConns, sizes, idleConns, bcastSubs, compressConns, syscallConns, syscallSubs string
	flag.StringVar(&servers, "servers", "duplex,duplex-handler,gorilla,coder,gws,gobwas,nbio", "comma-separated `libraries` to run")
	flag.StringVar(&cases, "cases", "echo,idle,broadcast,compression,syscalls", "comma-separated `cases` to run")
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "measured time of each echo and broadcast run, after a warm-up of a tenth of it")
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions of every run; the report shows medians")
	flag.StringVar(&echoConns, "echo-conns", "64,1000", "echo: connection `counts`")
	flag.StringVar(&sizes, "sizes", "16,1024,65536", "echo: message `sizes` in bytes")
	flag.StringVar(&idleConns, "idle-conns", "10000,50000", "idle memory: connection `counts`")
	flag.StringVar(&bcastSubs, "bcast-subs", "1000,10000", "broadcast: subscriber `counts`")
	flag.IntVar(&cfg.bcastWindow, "bcast-window", 1, "broadcast: messages in flight at once; 1 makes the latency that of one fan-out")
	flag.StringVar(&compressConns, "compress-conns", "10000", "compression memory: connection `counts`")
	flag.StringVar(&syscallConns, "syscall-conns", "64,1000", "system calls per operation (perf stat): echo connection `counts`, 1 KiB messages")
	flag.StringVar(&syscallSubs, "syscall-subs", "1000", "system calls per operation (perf stat): broadcast subscriber `counts`")
	conns := flag.String("conns", "", "connection `counts` for every case whose own -*-conns or -bcast-subs flag is not given")
	flag.StringVar(&cfg.out, "out", "", "`directory` for results.md, results.json and the SVG charts (required)")
	flag.StringVar(&cfg.profileDir, "profile", "", "`directory` for server CPU profiles, and heap profiles of the memory cases with the connections open; first repetition only")
	flag.BoolVar(&cfg.smoke, "smoke", false, "every case with tiny numbers (flags given explicitly still apply)")
	flag.Parse()

	// Presets apply to the flags not given explicitly; flag.Set updates the
	// variables bound above.
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	preset := map[string]string{}
	if cfg.smoke {
		preset = smokePreset
	}
	if *conns != "" {
		preset = maps.Clone(preset)
		for _, name := range []string{"echo-conns", "idle-conns", "bcast-subs", "compress-conns", "syscall-conns", "syscall-subs"} {
			preset[name] = *conns
		}
	}
	for name, value := range preset {
		if !explicit[name] {
			if err := flag.Set(name, value); err != nil {
				return nil, err
			}
		}
	}
	if cfg.out == "" {
		return nil, fmt.Errorf("-out is required")
	}
	cfg.servers = splitList(servers)
	for _, name := range cfg.servers {
		if _, ok := libraryByName(name); !ok {
			return nil, fmt.Errorf("unknown server %q", name)
		}
	}
	cfg.cases = splitList(cases)
	for _, c := range cfg.cases {
		if !slices.Contains([]string{caseEcho, caseIdle, caseBroadcast, caseCompression, caseSyscalls}, c) {
			return nil, fmt.Errorf("unknown case %q", c)
		}
	}
	var err error
	for _, l := range []struct {
		dst *[]int
		src string
	}{{&cfg.echoConns, echoConns}, {&cfg.sizes, sizes}, {&cfg.idleConns, idleConns}, {&cfg.bcastSubs, bcastSubs}, {&cfg.compressConns, compressConns},
		{&cfg.syscallConns, syscallConns}, {&cfg.syscallSubs, syscallSubs}} {
		if *l.dst, err = parseInts(l.src); err != nil {
			return nil, err
		}
	}
	if cfg.reps < 1 || cfg.duration <= 0 {
		return nil, fmt.Errorf("-reps and -duration must be positive")
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count or size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	log.SetFlags(log.Ltime)
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func run(cfg *config) error {
	if err := benchsrv.RaiseFileLimit(); err != nil {
		log.Printf("raising RLIMIT_NOFILE: %v", err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	ctx := context.Background()
	binDir, err := os.MkdirTemp("", "duplex-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	log.Printf("building %d servers", len(cfg.servers))
	if err := buildServers(ctx, binDir, cfg.servers); err != nil {
		return err
	}

	started := time.Now()
	machine := describeMachine()
	points := plan(cfg, lim.Cur)
	// Before any server runs, on a machine this run has not loaded yet.
	floors, err := measureFloors(points)
	if err != nil {
		log.Printf("the floor: %v", err)
	}
	for rep := range cfg.reps {
		for _, p := range points {
			for i := range cfg.servers {
				// Rotate the order each repetition, so that no library always
				// runs right after the same one.
				name := cfg.servers[(i+rep)%len(cfg.servers)]
				r := p.result(name)
				if r.Skip != "" {
					continue
				}
				m, note, err := runPoint(ctx, cfg, binDir, p, name, rep)
				if err != nil {
					log.Printf("rep %d %s %s: %v", rep+1, name, p.label, err)
					r.Errors = append(r.Errors, fmt.Sprintf("rep %d: %v", rep+1, err))
					continue
				}
				log.Printf("rep %d %-7s %-12s %-22s %s", rep+1, name, p.kind, p.label, m)
				r.Reps = append(r.Reps, m)
				if note != "" {
					r.Note = note
				}
			}
		}
	}
	rep := &report{
		cfg:      cfg,
		points:   points,
		started:  started,
		elapsed:  time.Since(started),
		fdLimit:  lim.Cur,
		command:  "cd peers && go run ./bench/cmd/loadgen " + strings.Join(os.Args[1:], " "),
		machine:  machine,
		libNames: cfg.servers,
		floors:   floors,
	}
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	log.Printf("done in %v; wrote %s", time.Since(started).Round(time.Second), filepath.Join(cfg.out, "results.md"))
	return nil
}

// runPoint runs one repetition of one point against a fresh server. The
// note, when there is one, says something the numbers do not, such as the
// compression parameters agreed.
func runPoint(ctx context.Context, cfg *config, binDir string, p *point, name string, rep int) (m measurement, note string, err error) {
	var args []string
	if p.kind == caseCompression {
		args = append(args, "-compress")
	}
	if cfg.profileDir != "" && rep == 0 {
		base := filepath.Join(cfg.profileDir, name+"-"+p.slug())
		args = append(args, "-cpuprofile", base+".cpu.pprof")
		if p.kind == caseIdle || p.kind == caseCompression {
			args = append(args, "-memprofile", base+".heap.pprof")
		}
	}
	// Every run ends within twice its measured time plus time to open (and,
	// for the compression case, exercise) its connections.
	ctx, cancel := context.WithTimeout(ctx, cfg.duration*2+3*time.Minute)
	defer cancel()
	s, err := startServer(ctx, name, filepath.Join(binDir, name), args...)
	if err != nil {
		return nil, "", err
	}
	defer s.stop()
	switch p.kind {
	case caseEcho:
		m, err = runEcho(ctx, s, p.conns, p.size, cfg.duration, nil)
	case caseIdle:
		m, _, err = runMemory(ctx, s, p.conns, "/idle", false)
	case caseCompression:
		m, note, err = runMemory(ctx, s, p.conns, "/echo", true)
	case caseBroadcast:
		m, err = runBroadcast(ctx, s, p.conns, cfg.duration, cfg.bcastWindow, nil)
	case caseSyscalls:
		pr := newPerfProbe(s.cmd.Process.Pid, binDir)
		var run measurement
		if p.of == caseEcho {
			if run, err = runEcho(ctx, s, p.conns, p.size, cfg.duration, pr); err == nil {
				m, err = pr.perOp(run[metricMessages])
			}
		} else {
			if run, err = runBroadcast(ctx, s, p.conns, cfg.duration, cfg.bcastWindow, pr); err == nil {
				m, err = pr.perOp(run[metricDeliveries])
			}
		}
	default:
		err = fmt.Errorf("unknown case %q", p.kind)
	}
	return m, note, err
}

// String shows a measurement in the log, metrics in name order.
func (m measurement) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%.4g ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}
