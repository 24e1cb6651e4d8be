//go:build unix

package cli

import (
	"os/exec"
	"syscall"
	"time"
)

// errExecUnsupported is nil where duplex exec can run programs.
var errExecUnsupported error

// setProcessGroup makes the program the leader of a process group of its
// own, so that the processes it starts can be signalled with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// endProcessGroup ends the process group pgid, whose leader's Wait
// closes exited: it sends the group SIGTERM, waits up to grace for the
// leader to be reaped and every other member to be gone (or a zombie),
// sends what is left SIGKILL, and returns once the leader is reaped. A
// process that left the group (setsid, setpgid) is out of reach.
func endProcessGroup(pgid int, exited <-chan struct{}, grace time.Duration) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			if groupGone(pgid) {
				return
			}
		default:
		}
		select {
		case <-deadline.C:
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
			return
		case <-tick.C:
		}
	}
}

// groupGone reports whether no process of group pgid is left but zombies.
func groupGone(pgid int) bool {
	if gone, ok := groupGoneProc(pgid); ok {
		return gone
	}
	// ESRCH: no process has the group's id any more. EPERM would be a
	// member that may not be signalled: still there.
	return syscall.Kill(-pgid, 0) == syscall.ESRCH
}
