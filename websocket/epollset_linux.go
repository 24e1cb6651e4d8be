package websocket

import (
	"os"
	"syscall"
)

// An epollSet is an epoll set whose owner's goroutine waits for it
// through the runtime's netpoller (an epoll set is a pollable descriptor),
// so that it holds no thread while nothing is ready, with a pipe in it to
// wake that goroutine. The poller (Await) and the serve loops (Serve) each
// own one. Only the owner's goroutine calls wait.
type epollSet struct {
	epfd    int
	file    *os.File        // epfd, kept open: its finalizer would close it
	set     syscall.RawConn // file, waited on through the runtime
	wake    [2]int          // a pipe in the set, under wakeToken
	events  []syscall.EpollEvent
	n       int                   // events the last collect found
	collect func(fd uintptr) bool // bound once: a non-blocking epoll_wait
}

const wakeToken = 0 // the pipe's token; connections' start at 1

// open makes the set, for up to size events a wait; name names its file.
func (s *epollSet) open(name string, size int) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return err
	}
	// A non-blocking descriptor given to os.NewFile joins the netpoller.
	file := os.NewFile(uintptr(epfd), name)
	set, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return err
	}
	var wake [2]int
	if err := syscall.Pipe2(wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		file.Close()
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // token wakeToken
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wake[0], &ev); err != nil {
		file.Close()
		syscall.Close(wake[0])
		syscall.Close(wake[1])
		return err
	}
	s.epfd, s.file, s.set, s.wake = epfd, file, set, wake
	s.events = make([]syscall.EpollEvent, size)
	s.collect = func(fd uintptr) bool {
		n, err := syscall.EpollWait(int(fd), s.events, 0)
		if err != nil { // EINTR; nothing else with valid arguments
			n = 0
		}
		s.n = n
		return n > 0 // none ready: wait for the set to become readable
	}
	return nil
}

// wait waits until some descriptor of the set is ready, or the set is
// woken, and returns the events of the ready connections (the wake pipe
// drained and left out; none when only it was ready). The slice is the
// set's until the next wait.
func (s *epollSet) wait() []syscall.EpollEvent {
	if err := s.set.Read(s.collect); err != nil {
		s.n = 0 // cannot happen: the set is never closed
	}
	ready := s.events[:0]
	for _, ev := range s.events[:s.n] {
		if eventToken(ev) == wakeToken {
			var drain [64]byte
			for {
				if k, _ := syscall.Read(s.wake[0], drain[:]); k <= 0 {
					break
				}
			}
			continue
		}
		ready = append(ready, ev)
	}
	return ready
}

// wakeUp makes the owner's wait return.
func (s *epollSet) wakeUp() { syscall.Write(s.wake[1], []byte{0}) }

// eventToken is the token an event carries in its data.
func eventToken(ev syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
