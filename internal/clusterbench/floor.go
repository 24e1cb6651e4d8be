package main

import "time"

// The floor of a delivery on this machine: what the kernel alone charges
// for moving one small frame from a server's socket to a client's over
// loopback, a write(2) on one end and a read(2) on the other, with no
// WebSocket, JSON, broker or scheduler work around them. Every library and
// every gateway pays at least this per delivery, so a publication to n
// subscribers of one channel cannot reach its 99th percentile subscriber
// before 0.99·n deliveries' worth of it has run on the machine's cores
// (floor.fanout).

// floorFrame is the size of the frames it moves: about a push of this
// benchmark's publications (a stamp and 32 bytes of payload, in JSON).
const floorFrame = 128

// floor is what measureFloor found: CPU time per delivery, the write's
// share and the read's.
type floor struct {
	write, read time.Duration
}

func (f floor) delivery() time.Duration { return f.write + f.read }

// fanout is the least time in which q·n deliveries can be made on cores
// cores, both ends of each on this machine (as in this benchmark) or only
// the server's write (clients on other machines).
func (f floor) fanout(n int, q float64, cores int, bothEnds bool) time.Duration {
	per := f.write
	if bothEnds {
		per = f.delivery()
	}
	return time.Duration(q * float64(n) * float64(per) / float64(cores))
}
