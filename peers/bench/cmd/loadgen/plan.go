package main

import (
	"fmt"
	"slices"
	"strconv"
)

// The cases.
const (
	caseEcho        = "echo"
	caseIdle        = "idle"
	caseBroadcast   = "broadcast"
	caseCompression = "compression"
	caseSyscalls    = "syscalls"
)

// point is one configuration of a case, run against every library.
type point struct {
	kind    string
	of      string // for the syscalls case, the case it counts: echo or broadcast
	label   string // as the report shows it: "1,000 conns × 1 KiB"
	conns   int    // connections, or subscribers
	size    int    // echo message size
	results map[string]*result
}

// result is what one library did at one point.
type result struct {
	Library string        `json:"library"`
	Reps    []measurement `json:"reps,omitempty"`
	Errors  []string      `json:"errors,omitempty"`
	Skip    string        `json:"skip,omitempty"` // why it was not run
	Note    string        `json:"note,omitempty"` // as runPoint's
}

func (p *point) result(library string) *result {
	r, ok := p.results[library]
	if !ok {
		r = &result{Library: library}
		p.results[library] = r
	}
	return r
}

func (p *point) slug() string {
	if p.kind == caseEcho || p.of == caseEcho {
		return fmt.Sprintf("%s%s-%dx%d", p.kind, p.of, p.conns, p.size)
	}
	if p.of != "" {
		return fmt.Sprintf("%s%s-%d", p.kind, p.of, p.conns)
	}
	return fmt.Sprintf("%s-%d", p.kind, p.conns)
}

// fdHeadroom is the descriptors a process needs besides its connections.
const fdHeadroom = 100

// plan lists the points the configuration asks for, in report order, with
// the ones this machine cannot run marked skipped. fdLimit is the soft
// RLIMIT_NOFILE after raising it, which the servers inherit.
func plan(cfg *config, fdLimit uint64) []*point {
	var points []*point
	var noPerf string
	if slices.Contains(cfg.cases, caseSyscalls) {
		noPerf = perfMissing()
	}
	add := func(kind, label string, conns, size int) *point {
		p := &point{kind: kind, label: label, conns: conns, size: size, results: map[string]*result{}}
		for _, name := range cfg.servers {
			r := p.result(name)
			lib, _ := libraryByName(name)
			switch {
			case kind == caseSyscalls && noPerf != "":
				r.Skip = noPerf
			case uint64(conns+fdHeadroom) > fdLimit:
				r.Skip = fmt.Sprintf("needs %d file descriptors per process; RLIMIT_NOFILE allows %d (raising the hard limit needs CAP_SYS_RESOURCE)", conns+fdHeadroom, fdLimit)
			case kind == caseCompression && !lib.contextTakeover:
				r.Skip = lib.noTakeoverWhy
			}
		}
		points = append(points, p)
		return p
	}
	if slices.Contains(cfg.cases, caseEcho) {
		for _, conns := range cfg.echoConns {
			for _, size := range cfg.sizes {
				add(caseEcho, count(conns)+" conns × "+sizeLabel(size), conns, size)
			}
		}
	}
	if slices.Contains(cfg.cases, caseIdle) {
		for _, conns := range cfg.idleConns {
			add(caseIdle, count(conns)+" conns", conns, 0)
		}
	}
	if slices.Contains(cfg.cases, caseBroadcast) {
		for _, subs := range cfg.bcastSubs {
			add(caseBroadcast, count(subs)+" subscribers", subs, broadcastSize)
		}
	}
	if slices.Contains(cfg.cases, caseCompression) {
		for _, conns := range cfg.compressConns {
			add(caseCompression, count(conns)+" conns", conns, 0)
		}
	}
	if slices.Contains(cfg.cases, caseSyscalls) {
		for _, conns := range cfg.syscallConns {
			add(caseSyscalls, "echo "+count(conns)+" conns × 1 KiB", conns, 1024).of = caseEcho
		}
		for _, subs := range cfg.syscallSubs {
			add(caseSyscalls, "broadcast to "+count(subs)+" subscribers", subs, broadcastSize).of = caseBroadcast
		}
	}
	return points
}

// count formats n with thousands separators: 10000 is "10,000".
func count(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	default:
		return strconv.Itoa(n) + " B"
	}
}
