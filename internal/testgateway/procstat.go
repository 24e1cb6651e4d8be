package testgateway

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcStat is what Linux's /proc says of a process's use of the machine.
type ProcStat struct {
	CPU time.Duration // user and system time since it started
	RSS int64         // resident memory, bytes
}

// clockTick is the unit of /proc/<pid>/stat's times, USER_HZ, which is 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ReadProcStat reads the CPU time and resident memory of process pid.
func ReadProcStat(pid int) (ProcStat, error) {
	var st ProcStat
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing one. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return st, fmt.Errorf("testgateway: /proc/%d/stat: %q", pid, stat)
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 13 {
		return st, fmt.Errorf("testgateway: /proc/%d/stat: %q", pid, stat)
	}
	utime, _ := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, _ := strconv.ParseInt(string(fields[12]), 10, 64)
	st.CPU = time.Duration(utime+stime) * clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for line := range bytes.SplitSeq(status, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			st.RSS = kb << 10
		}
	}
	return st, nil
}

// Stat reads the node's CPU time and resident memory.
func (n *Node) Stat() (ProcStat, error) { return ReadProcStat(n.PID()) }
