// Package floor measures the floor of a WebSocket delivery on the machine
// it runs on: what the kernel alone charges to move one frame from a
// server's socket to a client's over loopback, a write(2) on one end and a
// read(2) on the other, with no WebSocket, JSON, broker or scheduler work
// around them.
//
// Every library and every gateway pays at least this per delivery, so it
// bounds from below what the benchmarks measure: a server's CPU per echoed
// message (a read and a write), per broadcast delivery (a write), and how
// soon the 99th percentile subscriber of a publication to n of them can
// have it on c cores (Floor.Fanout). The benchmarks print it beside their
// figures, so that a target below it shows as one this machine cannot
// reach.
package floor

import "time"

// MaxSize is the largest frame Measure moves: one that a fresh loopback
// connection's buffers take whole, so that a blocking write returns before
// the read on the same thread.
const MaxSize = 64 << 10

// Floor is what Measure found: CPU time per frame of the write and of the
// read.
type Floor struct {
	Write, Read time.Duration
}

// Delivery is the cost of both ends of one delivery.
func (f Floor) Delivery() time.Duration { return f.Write + f.Read }

// Fanout is the least time in which q·n deliveries can be made on cores
// cores: with both ends of each on this machine (as in loopback
// benchmarks), or with only the server's writes.
func (f Floor) Fanout(n int, q float64, cores int, bothEnds bool) time.Duration {
	per := f.Write
	if bothEnds {
		per = f.Delivery()
	}
	return time.Duration(q * float64(n) * float64(per) / float64(cores))
}
