package cli

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// memoryLimitSupported reports whether --max-memory is enforced here.
const memoryLimitSupported = true

// groupGoneProc reports whether no process of group pgid is left but
// zombies, from /proc; ok is false when /proc cannot be read. A zombie is
// gone for this purpose: in a container whose init does not reap orphans,
// the program's children stay zombies for ever once it is gone, and
// signalling the group (kill -pgid 0) would find them.
func groupGoneProc(pgid int) (gone, ok bool) {
	dir, err := os.Open("/proc")
	if err != nil {
		return false, false
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return false, false
	}
	want := strconv.Itoa(pgid)
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) >= 3 && fields[2] == want && fields[0] != "Z" {
			return false, true
		}
	}
	return true, true
}
