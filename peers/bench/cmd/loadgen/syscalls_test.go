package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadPerfCSV reads perf stat -x, output as perf 6.1 writes it, sums
// the counts by metric, and refuses output that lacks a count.
func TestReadPerfCSV(t *testing.T) {
	const out = `# started on Mon Dec  7 04:44:05 2026

3000,,raw_syscalls:sys_enter,501234567,100.00,,
800,,syscalls:sys_enter_write,501234567,100.00,,
100,,syscalls:sys_enter_writev,501234567,100.00,,
1700,,syscalls:sys_enter_read,501234567,100.00,,
0,,syscalls:sys_enter_epoll_wait,501234567,100.00,,
150,,syscalls:sys_enter_epoll_pwait,501234567,100.00,,
30,,syscalls:sys_enter_epoll_pwait2,501234567,100.00,,
60,,syscalls:sys_enter_futex,501234567,100.00,,
`
	path := filepath.Join(t.TempDir(), "perf.csv")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	counts, err := readPerfCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &perfProbe{counts: counts}
	m, err := p.perOp(1000)
	if err != nil {
		t.Fatal(err)
	}
	want := measurement{metricSyscalls: 3, metricWrites: 0.9, metricReads: 1.7, metricPolls: 0.18, metricFutex: 0.06, metricOther: 0.16}
	for k, v := range want {
		if d := m[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, err := p.perOp(0); err == nil {
		t.Error("perOp(0): no error")
	}

	short := filepath.Join(t.TempDir(), "short.csv")
	os.WriteFile(short, []byte("3000,,raw_syscalls:sys_enter,1,100.00,,\n"), 0o644)
	if _, err := readPerfCSV(short); err == nil {
		t.Error("output without every count: no error")
	}
	notCounted := filepath.Join(t.TempDir(), "nc.csv")
	os.WriteFile(notCounted, []byte("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"), 0o644)
	if _, err := readPerfCSV(notCounted); err == nil {
		t.Error("a count perf could not take: no error")
	}
}
