package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The syscalls case runs echo and broadcast again with perf stat attached
// to the server over the measured window, counting its system calls
// through the kernel's tracepoints (no ptrace, so the server runs at
// nearly full speed), per echoed message or per delivery. Kernel time is
// most of every server's CPU here; this shows where it goes.

// The metrics of the syscalls case, per operation.
const (
	metricSyscalls = "syscalls_per_op"
	metricWrites   = "writes_per_op" // write and writev
	metricReads    = "reads_per_op"  // read
	metricPolls    = "polls_per_op"  // epoll_wait, epoll_pwait, epoll_pwait2
	metricFutex    = "futex_per_op"
	metricOther    = "other_per_op"
)

// syscallEvents are the tracepoints counted, and the metric each adds to.
var syscallEvents = []struct{ event, metric string }{
	{"raw_syscalls:sys_enter", metricSyscalls},
	{"syscalls:sys_enter_write", metricWrites},
	{"syscalls:sys_enter_writev", metricWrites},
	{"syscalls:sys_enter_read", metricReads},
	{"syscalls:sys_enter_epoll_wait", metricPolls},
	{"syscalls:sys_enter_epoll_pwait", metricPolls},
	{"syscalls:sys_enter_epoll_pwait2", metricPolls},
	{"syscalls:sys_enter_futex", metricFutex},
}

// perfMissing says why the syscalls case cannot run here, or "".
func perfMissing() string {
	if _, err := exec.LookPath("perf"); err != nil {
		return "perf is not installed (Debian's linux-perf)"
	}
	args := []string{"stat", "-x,", "-o", os.DevNull}
	for _, e := range syscallEvents {
		args = append(args, "-e", e.event)
	}
	if out, err := exec.Command("perf", append(args, "--", "true")...).CombinedOutput(); err != nil {
		return "perf cannot count system calls here: " + strings.TrimSpace(string(out))
	}
	return ""
}

// probe is told when a run's measured window starts and ends.
type probe interface {
	start()
	stop()
}

// perfProbe counts the system calls of process pid between start and stop.
type perfProbe struct {
	pid    int
	out    string
	cmd    *exec.Cmd
	err    error
	counts map[string]float64 // by metric
}

func newPerfProbe(pid int, dir string) *perfProbe {
	return &perfProbe{pid: pid, out: filepath.Join(dir, fmt.Sprintf("perf-%d.csv", pid))}
}

func (p *perfProbe) start() {
	args := []string{"stat", "-x,", "-o", p.out, "-p", strconv.Itoa(p.pid)}
	for _, e := range syscallEvents {
		args = append(args, "-e", e.event)
	}
	p.cmd = exec.Command("perf", args...)
	if p.err = p.cmd.Start(); p.err != nil {
		p.cmd = nil
		return
	}
	// perf opens its counters on every thread of the process before it
	// counts; give it the time to.
	time.Sleep(50 * time.Millisecond)
}

func (p *perfProbe) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
		p.err = errors.New("perf stat did not stop on SIGINT; killed")
		return
	}
	p.counts, p.err = readPerfCSV(p.out)
	os.Remove(p.out)
}

// readPerfCSV sums perf stat -x, output by metric.
func readPerfCSV(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]float64{}
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("perf stat: %q counted nothing (%s)", fields[2], fields[0])
		}
		for _, e := range syscallEvents {
			if e.event == fields[2] {
				counts[e.metric] += v
				seen++
			}
		}
	}
	if seen != len(syscallEvents) {
		return nil, fmt.Errorf("perf stat: %d of %d counts in its output", seen, len(syscallEvents))
	}
	return counts, sc.Err()
}

// perOp turns the counts into metrics per operation, ops of them.
func (p *perfProbe) perOp(ops float64) (measurement, error) {
	if p.err != nil {
		return nil, p.err
	}
	if ops <= 0 {
		return nil, errors.New("syscalls: no operation in the window")
	}
	m := measurement{}
	rest := p.counts[metricSyscalls]
	for _, metric := range []string{metricSyscalls, metricWrites, metricReads, metricPolls, metricFutex} {
		m[metric] = p.counts[metric] / ops
		if metric != metricSyscalls {
			rest -= p.counts[metric]
		}
	}
	m[metricOther] = rest / ops
	return m, nil
}
