package main

import (
	"os"
	"time"

	"github.com/duplexws/duplex/internal/testgateway"
)

// cpuShares is the CPU the processes of a setup used during a phase, each
// as a share of one core (1.0 is one core busy throughout). The machine's
// cores are shared by all of them.
type cpuShares struct {
	gateways float64 // all nodes together
	broker   float64
	load     float64 // the workers and this coordinator, which publishes
}

// cpuStart is the processes' CPU times at the start of a phase.
type cpuStart struct {
	gateways, broker, load []int // pids
	before                 map[int]time.Duration
}

func startCPU(c *cluster, workers []*workerProc) *cpuStart {
	s := &cpuStart{load: append(pids(workers), os.Getpid()), before: make(map[int]time.Duration)}
	for _, n := range c.nodes {
		s.gateways = append(s.gateways, n.PID())
	}
	if c.brokerPID != 0 {
		s.broker = []int{c.brokerPID}
	}
	for _, group := range [][]int{s.gateways, s.broker, s.load} {
		for _, pid := range group {
			s.before[pid] = cpuTime(pid)
		}
	}
	return s
}

// stop returns the shares used since the start, over elapsed.
func (s *cpuStart) stop(elapsed time.Duration) cpuShares {
	share := func(group []int) float64 {
		var used time.Duration
		for _, pid := range group {
			used += cpuTime(pid) - s.before[pid]
		}
		return used.Seconds() / elapsed.Seconds()
	}
	return cpuShares{gateways: share(s.gateways), broker: share(s.broker), load: share(s.load)}
}

// cpuTime is a process's user and system time so far, or 0 when it is gone.
func cpuTime(pid int) time.Duration {
	st, err := testgateway.ReadProcStat(pid)
	if err != nil {
		return 0
	}
	return st.CPU
}
