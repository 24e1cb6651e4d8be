package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/internal/floor"
	"github.com/duplexws/duplex/peers/bench/internal/svgchart"
)

// report writes what a run measured.
type report struct {
	cfg      *config
	points   []*point
	started  time.Time
	elapsed  time.Duration
	fdLimit  uint64
	command  string
	machine  machine
	libNames []string
	floors   map[floorKey]floor.Floor // floor.go
}

// machine describes where the run happened.
type machine struct {
	CPUs       int      `json:"cpus"`
	CPUModel   string   `json:"cpuModel"`
	MemoryGiB  float64  `json:"memoryGiB"`
	Kernel     string   `json:"kernel"`
	Go         string   `json:"go"`
	LoadAvg    string   `json:"loadAverageAtStart"`
	LoadAvgEnd string   `json:"loadAverageAtEnd"`
	Modules    []string `json:"modules"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil {
		m.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
	}
	m.Kernel = readTrimmed("/proc/sys/kernel/osrelease")
	m.LoadAvg = loadAverage()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Path}} {{.Version}}",
		"github.com/gorilla/websocket", "github.com/coder/websocket", "github.com/lxzan/gws", "github.com/gobwas/ws", "github.com/lesismal/nbio").Output()
	if err == nil {
		m.Modules = strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	return m
}

// procField returns the value of the first "name: value" line of a /proc
// file, or "".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readTrimmed(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func loadAverage() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// median returns the median of metric over the repetitions, or NaN when
// none measured it.
func (r *result) median(metric string) float64 {
	var vs []float64
	for _, m := range r.Reps {
		if v, ok := m[metric]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// metricView is how one metric is shown.
type metricView struct {
	metric string
	title  string
	unit   string
	higher bool // higher is better
	scale  float64
	format func(float64) string
}

var (
	viewMessages = metricView{metricMessagesPerSec, "messages/s", "messages/s", true, 1, formatCount}
	viewEchoP50  = metricView{metricP50, "p50 round trip", "µs", false, 1, formatMicros}
	viewEchoP99  = metricView{metricP99, "p99 round trip", "µs", false, 1, formatMicros}
	viewRSS      = metricView{metricRSSPerConn, "RSS per connection", "KiB", false, 1.0 / 1024, formatKiB}
	viewHeap     = metricView{metricHeapPerConn, "heap in use per connection", "KiB", false, 1.0 / 1024, formatKiB}
	viewStack    = metricView{metricStackPerConn, "goroutine stacks per connection", "KiB", false, 1.0 / 1024, formatKiB}
	viewOtherSys = metricView{metricOtherPerConn, "the runtime's memory outside the heap per connection", "KiB", false, 1.0 / 1024, formatKiB}
	viewRoutines = metricView{metricGoroutinesPer, "goroutines per connection", "", false, 1, formatRatio}
	viewDeliver  = metricView{metricDeliveriesPerSec, "deliveries/s", "deliveries/s", true, 1, formatCount}
	viewBcastP50 = metricView{metricP50, "p50 publish to receipt", "µs", false, 1, formatMicros}
	viewBcastP99 = metricView{metricP99, "p99 publish to receipt", "µs", false, 1, formatMicros}
	viewCPU      = metricView{metricServerCPU, "server CPU per operation", "µs", false, 1, formatCPU}
	viewSyscalls = metricView{metricSyscalls, "system calls per operation", "", false, 1, formatRatio}
	viewWrites   = metricView{metricWrites, "write and writev per operation", "", false, 1, formatRatio}
	viewReads    = metricView{metricReads, "read per operation", "", false, 1, formatRatio}
	viewPolls    = metricView{metricPolls, "epoll waits per operation", "", false, 1, formatRatio}
	viewFutex    = metricView{metricFutex, "futex per operation", "", false, 1, formatRatio}
	viewOther    = metricView{metricOther, "other system calls per operation", "", false, 1, formatRatio}
)

func formatCount(v float64) string {
	if v >= 1000 {
		return count(int(math.Round(v)))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func formatMicros(v float64) string {
	if v >= 10 {
		return count(int(math.Round(v)))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func formatCPU(v float64) string {
	if v >= 100 {
		return count(int(math.Round(v)))
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func formatKiB(v float64) string {
	if math.Abs(v) < 0.05 {
		v = 0 // not "-0.0" for a figure that fell by a few bytes
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}
func formatRatio(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// value is a library's median at a point, scaled for display.
func (v metricView) value(p *point, lib string) float64 {
	return p.result(lib).median(v.metric) * v.scale
}

func (rep *report) pointsOf(kind string) []*point {
	var out []*point
	for _, p := range rep.points {
		if p.kind == kind {
			out = append(out, p)
		}
	}
	return out
}

func (rep *report) write(dir string) error {
	rep.machine.LoadAvgEnd = loadAverage()
	var md bytes.Buffer
	rep.markdown(&md)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	if err := rep.writeJSON(filepath.Join(dir, "results.json")); err != nil {
		return err
	}
	return rep.charts(dir)
}

func (rep *report) markdown(b *bytes.Buffer) {
	cfg := rep.cfg
	fmt.Fprintf(b, "# Side-by-side WebSocket benchmarks\n\n")
	fmt.Fprintf(b, "Written by `peers/bench/cmd/loadgen`; see `peers/bench/README.md` for what each case does. ")
	fmt.Fprintf(b, "Every server runs on the same machine as the load generator, which drives all of them with the same Duplex client, ")
	fmt.Fprintf(b, "so compare the libraries with each other within this run rather than with numbers from elsewhere.\n\n")
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| Date | %s (took %s) |\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"), rep.elapsed.Round(time.Second))
	fmt.Fprintf(b, "| Command | `%s` |\n", rep.command)
	fmt.Fprintf(b, "| Machine | %d CPUs (nproc), %s, %.1f GiB, Linux %s |\n", rep.machine.CPUs, rep.machine.CPUModel, rep.machine.MemoryGiB, rep.machine.Kernel)
	fmt.Fprintf(b, "| Load average | %s at start, %s at end (the machine is shared) |\n", rep.machine.LoadAvg, rep.machine.LoadAvgEnd)
	fmt.Fprintf(b, "| Go | %s |\n", rep.machine.Go)
	fmt.Fprintf(b, "| Libraries | duplex (this tree); %s |\n", strings.Join(rep.machine.Modules, "; "))
	fmt.Fprintf(b, "| Runs | %d repetition(s), medians shown; echo and broadcast runs measure %v after a %v warm-up; broadcast keeps %d message(s) in flight; RLIMIT_NOFILE %d |\n\n",
		cfg.reps, cfg.duration, cfg.duration/10, cfg.bcastWindow, rep.fdLimit)
	fmt.Fprintf(b, "In the tables the best median is in bold; \"duplex ÷ best peer\" is above 1 where Duplex is ahead on a higher-is-better metric and below 1 where it is ahead on a lower-is-better one. ")
	fmt.Fprintf(b, "Server CPU time per operation comes from the server's /proc stat (10 ms ticks) over the measured window; it depends far less than rates do on what else the shared machine runs.\n\n")

	rep.targets(b)
	rep.floorSection(b)

	if ps := rep.pointsOf(caseEcho); len(ps) > 0 {
		fmt.Fprintf(b, "## Echo\n\nEach connection writes a binary message and waits for its echo, in a loop.\n\n")
		rep.table(b, "Echo throughput, messages/s", ps, viewMessages, true)
		rep.table(b, "Echo round trip, p99 (µs)", ps, viewEchoP99, true)
		rep.table(b, "Echo round trip, p50 (µs)", ps, viewEchoP50, true)
		rep.table(b, "Echo, server CPU time per message (µs)", ps, viewCPU, true)
	}
	if ps := rep.pointsOf(caseIdle); len(ps) > 0 {
		fmt.Fprintf(b, "## Idle memory\n\nServer memory per open, idle connection: the server's RSS with the connections open minus its RSS before, both after a garbage collection that returns freed memory to the system.\n\n")
		rep.table(b, "Idle server RSS per connection (KiB)", ps, viewRSS, true)
		rep.memoryDetail(b, ps)
	}
	if ps := rep.pointsOf(caseBroadcast); len(ps) > 0 {
		fmt.Fprintf(b, "## Broadcast\n\nOne publisher sends 64-byte messages that the server sends to every subscriber, with each library's broadcast facility: ")
		var facilities []string
		for _, name := range rep.libNames {
			lib, _ := libraryByName(name)
			facilities = append(facilities, name+" "+lib.prepared)
		}
		fmt.Fprintf(b, "%s.\n\n", strings.Join(facilities, "; "))
		rep.table(b, "Broadcast deliveries/s", ps, viewDeliver, true)
		rep.table(b, "Broadcast publish to receipt, p99 (µs)", ps, viewBcastP99, true)
		rep.table(b, "Broadcast publish to receipt, p50 (µs)", ps, viewBcastP50, true)
		rep.table(b, "Broadcast, server CPU time per delivery (µs)", ps, viewCPU, true)
	}
	if ps := rep.pointsOf(caseCompression); len(ps) > 0 {
		fmt.Fprintf(b, "## Compression memory\n\nServer memory per connection with permessage-deflate and context takeover in both directions, after each connection echoed %d KiB of similar JSON messages of about 4 KiB (enough to fill any window), measured as for idle memory. ", compressedBytes>>10)
		fmt.Fprintf(b, "Each library negotiates its default windows; what it agreed with the Duplex client, which offers client_max_window_bits, is listed under the tables.\n\n")
		rep.table(b, "Compressed connection, server RSS per connection (KiB)", ps, viewRSS, true)
		rep.memoryDetail(b, ps)
		for _, p := range ps {
			for _, name := range rep.libNames {
				if note := p.result(name).Note; note != "" {
					fmt.Fprintf(b, "- %s, %s: `Sec-WebSocket-Extensions: %s`\n", p.label, name, note)
				}
			}
		}
		b.WriteString("\n")
	}
	if ps := rep.pointsOf(caseSyscalls); len(ps) > 0 {
		fmt.Fprintf(b, "## System calls\n\nThe echo (1 KiB messages) and broadcast runs again, with `perf stat` attached to the server over the measured window, counting its system calls through the kernel's tracepoints: per echoed message, or per delivery. ")
		fmt.Fprintf(b, "Kernel time is most of every server's CPU here, so fewer calls per operation is where a lead comes from.\n\n")
		rep.table(b, "System calls per operation", ps, viewSyscalls, true)
		rep.table(b, "write and writev per operation", ps, viewWrites, true)
		rep.table(b, "read per operation", ps, viewReads, true)
		rep.table(b, "epoll waits per operation", ps, viewPolls, true)
		rep.table(b, "futex per operation", ps, viewFutex, true)
		rep.table(b, "Other system calls per operation", ps, viewOther, true)
	}
	rep.problems(b)
}

// table writes one metric for some points: a row per point, a column per
// library, the best in bold and, with ratio, how Duplex compares with the
// best peer.
func (rep *report) table(b *bytes.Buffer, title string, ps []*point, v metricView, ratio bool) {
	fmt.Fprintf(b, "### %s\n\n| Case |", title)
	for _, name := range rep.libNames {
		fmt.Fprintf(b, " %s |", name)
	}
	var ours []string // the Duplex rows that get a ratio column
	if ratio {
		for _, name := range rep.libNames {
			if isOurs(name) {
				ours = append(ours, name)
			}
		}
		if len(ours) == len(rep.libNames) {
			ours = nil // no peer to compare with
		}
	}
	for _, name := range ours {
		fmt.Fprintf(b, " %s ÷ best peer |", name)
	}
	fmt.Fprintf(b, "\n|---|")
	for range len(rep.libNames) + len(ours) {
		fmt.Fprintf(b, "---:|")
	}
	b.WriteString("\n")
	for _, p := range ps {
		best := rep.best(p, v, "")
		fmt.Fprintf(b, "| %s |", p.label)
		for _, name := range rep.libNames {
			x := v.value(p, name)
			switch {
			case p.result(name).Skip != "":
				b.WriteString(" n/a |")
			case math.IsNaN(x):
				b.WriteString(" failed |")
			case x == best:
				fmt.Fprintf(b, " **%s** |", v.format(x))
			default:
				fmt.Fprintf(b, " %s |", v.format(x))
			}
		}
		for _, name := range ours {
			d, peer := v.value(p, name), rep.best(p, v, name)
			if math.IsNaN(d) || math.IsNaN(peer) || peer == 0 {
				b.WriteString(" – |")
			} else {
				fmt.Fprintf(b, " %.2f |", d/peer)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// isOurs reports whether a server is Duplex's: duplex, or a variant of it
// such as duplex-handler.
func isOurs(name string) bool { return name == "duplex" || strings.HasPrefix(name, "duplex-") }

// best returns the best median at p among the libraries other than except,
// or NaN; when except is one of Duplex's servers, among the peers only.
func (rep *report) best(p *point, v metricView, except string) float64 {
	best := math.NaN()
	for _, name := range rep.libNames {
		x := v.value(p, name)
		if name == except || (isOurs(except) && isOurs(name)) || math.IsNaN(x) {
			continue
		}
		if math.IsNaN(best) || (v.higher && x > best) || (!v.higher && x < best) {
			best = x
		}
	}
	return best
}

// memoryDetail breaks a memory case's median down per library.
func (rep *report) memoryDetail(b *bytes.Buffer, ps []*point) {
	views := []metricView{viewRSS, viewHeap, viewStack, viewOtherSys, viewRoutines}
	fmt.Fprintf(b, "| Case | Library | RSS KiB/conn | heap KiB/conn | stacks KiB/conn | runtime off heap (OtherSys) KiB/conn | goroutines/conn |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, p := range ps {
		for _, name := range rep.libNames {
			if p.result(name).Skip != "" || len(p.result(name).Reps) == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %s |", p.label, name)
			for _, v := range views {
				fmt.Fprintf(b, " %s |", v.format(v.value(p, name)))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

// targets checks the DESIGN.md targets this run measured.
func (rep *report) targets(b *bytes.Buffer) {
	if !slices.Contains(rep.libNames, "duplex") {
		return
	}
	type row struct{ target, duplex, peer, verdict string }
	var rows []row
	versus := func(target string, p *point, v metricView) {
		if p == nil {
			return
		}
		d, peer := v.value(p, "duplex"), rep.best(p, v, "duplex")
		r := row{target: target + " (" + p.label + ")", duplex: v.format(d) + " " + v.unit, peer: v.format(peer) + " " + v.unit}
		switch {
		case math.IsNaN(d) || math.IsNaN(peer):
			r.verdict = "not measured"
		case (v.higher && d > peer) || (!v.higher && d < peer):
			r.verdict = "met"
		default:
			r.verdict = "**missed**"
		}
		rows = append(rows, r)
	}
	under := func(target string, p *point, limitKiB float64) {
		if p == nil {
			return
		}
		d := viewRSS.value(p, "duplex")
		r := row{target: target + " (" + p.label + ")", duplex: viewRSS.format(d) + " KiB", peer: "–"}
		if peer := rep.best(p, viewRSS, "duplex"); !math.IsNaN(peer) {
			r.peer = viewRSS.format(peer) + " KiB"
		}
		switch {
		case math.IsNaN(d):
			r.verdict = "not measured"
		case d < limitKiB:
			r.verdict = "met"
		default:
			r.verdict = "**missed**"
		}
		rows = append(rows, r)
	}
	find := func(kind string, conns, size int) *point {
		for _, p := range rep.pointsOf(kind) {
			if p.conns == conns && (size == 0 || p.size == size) {
				return p
			}
		}
		return nil
	}
	echo := find(caseEcho, 1000, 1024)
	versus("Echo throughput ahead of every Go peer", echo, viewMessages)
	versus("Echo p99 ahead of every Go peer", echo, viewEchoP99)
	for _, p := range rep.pointsOf(caseIdle) {
		under("Idle memory per connection under 8 KiB", p, 8)
	}
	for _, p := range rep.pointsOf(caseCompression) {
		under("Compression with context takeover under 64 KiB per connection", p, 64)
	}
	versus("Broadcast deliveries/s ahead of every peer", find(caseBroadcast, 10000, 0), viewDeliver)
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "## DESIGN.md targets\n\n| Target | duplex | best peer | |\n|---|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", r.target, r.duplex, r.peer, r.verdict)
	}
	b.WriteString("\n")
}

// problems lists what was skipped or failed.
func (rep *report) problems(b *bytes.Buffer) {
	var lines []string
	for _, p := range rep.points {
		for _, name := range rep.libNames {
			r := p.result(name)
			if r.Skip != "" {
				lines = append(lines, fmt.Sprintf("- %s, %s, %s: not run: %s", p.kind, p.label, name, r.Skip))
			}
			for _, e := range r.Errors {
				lines = append(lines, fmt.Sprintf("- %s, %s, %s: failed: %s", p.kind, p.label, name, e))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "## Not run or failed\n\n%s\n", strings.Join(lines, "\n"))
}

func (rep *report) writeJSON(path string) error {
	type jsonPoint struct {
		Case    string    `json:"case"`
		Label   string    `json:"label"`
		Conns   int       `json:"conns"`
		Size    int       `json:"size,omitempty"`
		Results []*result `json:"results"`
	}
	doc := struct {
		Date    time.Time   `json:"date"`
		Command string      `json:"command"`
		Machine machine     `json:"machine"`
		Points  []jsonPoint `json:"points"`
	}{rep.started.UTC(), rep.command, rep.machine, nil}
	for _, p := range rep.points {
		jp := jsonPoint{Case: p.kind, Label: p.label, Conns: p.conns, Size: p.size}
		if p.kind == caseEcho {
			jp.Size = p.size
		}
		for _, name := range rep.libNames {
			jp.Results = append(jp.Results, p.result(name))
		}
		doc.Points = append(doc.Points, jp)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// charts draws one SVG per metric worth a picture.
func (rep *report) charts(dir string) error {
	type chart struct {
		file, title string
		points      []*point
		view        metricView
	}
	var charts []chart
	echo := rep.pointsOf(caseEcho)
	for _, size := range rep.cfg.sizes {
		var ps []*point
		for _, p := range echo {
			if p.size == size {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			continue
		}
		slug := strings.ReplaceAll(sizeLabel(size), " ", "")
		charts = append(charts,
			chart{"echo-throughput-" + slug + ".svg", "Echo of " + sizeLabel(size) + " messages: messages/s", ps, viewMessages},
			chart{"echo-p99-" + slug + ".svg", "Echo of " + sizeLabel(size) + " messages: p99 round trip", ps, viewEchoP99})
	}
	charts = append(charts,
		chart{"idle-memory.svg", "Idle connections: server RSS per connection", rep.pointsOf(caseIdle), viewRSS},
		chart{"broadcast-deliveries.svg", "Broadcast of 64 B messages: deliveries/s", rep.pointsOf(caseBroadcast), viewDeliver},
		chart{"broadcast-p99.svg", "Broadcast of 64 B messages: p99 publish to receipt", rep.pointsOf(caseBroadcast), viewBcastP99},
		chart{"compression-memory.svg", "Context takeover: server RSS per connection", rep.pointsOf(caseCompression), viewRSS},
		chart{"syscalls.svg", "System calls per echoed message or delivery", rep.pointsOf(caseSyscalls), viewSyscalls})
	for _, c := range charts {
		if len(c.points) == 0 {
			continue
		}
		bars := &svgchart.Bars{Title: c.title, YLabel: c.view.unit, Series: rep.libNames, Better: "lower"}
		if c.view.higher {
			bars.Better = "higher"
		}
		for _, p := range c.points {
			bars.Groups = append(bars.Groups, p.label)
			row := make([]float64, len(rep.libNames))
			for i, name := range rep.libNames {
				row[i] = c.view.value(p, name)
			}
			bars.Values = append(bars.Values, row)
		}
		var buf bytes.Buffer
		if err := bars.Write(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
