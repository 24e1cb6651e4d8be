package floor

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// clockThreadCPUTime is CLOCK_THREAD_CPUTIME_ID, which package syscall
// does not name.
const clockThreadCPUTime = 3

// Measure opens pairs connected loopback sockets and, rounds times, writes
// a frame of size bytes to each server end and then reads it from each
// client end, on one locked thread, timing the writes and the reads by the
// thread's CPU time (not the wall clock, which other processes on a shared
// machine would lengthen). The sockets are blocking and left out of the
// runtime's netpoller, so each write and read is one system call. It does
// so on three sets of fresh sockets in turn, as the cost varies from one
// set to the next (by up to half on the machine this was written on), and
// returns the cheapest round's costs: a floor errs low.
func Measure(pairs, rounds, size int) (Floor, error) {
	if pairs < 1 || rounds < 1 || size < 1 || size > MaxSize {
		return Floor{}, fmt.Errorf("floor: %d pairs, %d rounds, %d bytes: want at least 1 of each, and at most %d bytes", pairs, rounds, size, MaxSize)
	}
	best := Floor{Write: math.MaxInt64, Read: math.MaxInt64}
	for range sets {
		f, err := measureSet(pairs, rounds, size)
		if err != nil {
			return Floor{}, err
		}
		best = Floor{Write: min(best.Write, f.Write), Read: min(best.Read, f.Read)}
	}
	return best, nil
}

// sets is how many sets of sockets Measure times.
const sets = 3

// measureSet is Measure on one set of sockets.
func measureSet(pairs, rounds, size int) (Floor, error) {
	servers, clients, err := socketPairs(pairs)
	defer func() {
		for _, f := range append(servers, clients...) {
			f.Close()
		}
	}()
	if err != nil {
		return Floor{}, err
	}
	// The descriptors, taken once: File.Fd is not what is being timed.
	sfds, cfds := make([]int, pairs), make([]int, pairs)
	for i := range pairs {
		sfds[i], cfds[i] = int(servers[i].Fd()), int(clients[i].Fd())
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	frame, buf := make([]byte, size), make([]byte, size)
	write, read := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range rounds {
		t := threadCPU()
		for _, fd := range sfds {
			if n, err := syscall.Write(fd, frame); err != nil || n != len(frame) {
				return Floor{}, fmt.Errorf("floor: write: %d bytes, %v", n, err)
			}
		}
		u := threadCPU()
		for _, fd := range cfds {
			// A large frame may take more than one read.
			for got := 0; got < size; {
				n, err := syscall.Read(fd, buf[got:])
				if err != nil || n <= 0 {
					return Floor{}, fmt.Errorf("floor: read: %d bytes, %v", n, err)
				}
				got += n
			}
		}
		v := threadCPU()
		write, read = min(write, u-t), min(read, v-u)
	}
	n := time.Duration(pairs)
	return Floor{Write: write / n, Read: read / n}, nil
}

// socketPairs connects pairs loopback TCP sockets and returns both ends of
// each as blocking files of their own (net's descriptors closed).
func socketPairs(pairs int) (servers, clients []*os.File, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	detach := func(c net.Conn) (*os.File, error) {
		defer c.Close()
		f, err := c.(*net.TCPConn).File() // a duplicate, out of the netpoller
		if err != nil {
			return nil, err
		}
		if err := errors.Join(c.(*net.TCPConn).SetNoDelay(true), syscall.SetNonblock(int(f.Fd()), false)); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	for range pairs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return servers, clients, err
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return servers, clients, err
		}
		sf, serr := detach(s)
		cf, cerr := detach(c)
		if err := errors.Join(serr, cerr); err != nil {
			for _, f := range []*os.File{sf, cf} {
				if f != nil {
					f.Close()
				}
			}
			return servers, clients, err
		}
		servers, clients = append(servers, sf), append(clients, cf)
	}
	return servers, clients, nil
}

// threadCPU is the calling thread's CPU time so far, to the nanosecond
// (getrusage's for a thread counts in scheduler ticks).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
