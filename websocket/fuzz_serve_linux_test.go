package websocket

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
)

// socketFor returns one end of a Unix socket pair, which a Conn served
// with Serve reads in an epoll set, and wait. The other end is fc's
// stand-in: fc's input is written to it in fc's chunks, then its write
// side is shut, and what the Conn sends is copied from it into fc. wait
// closes the stand-in once the Conn has closed its end and waits for both
// copies to end.
func socketFor(t *testing.T, fc *fuzzConn) (net.Conn, func()) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "fuzz-socket")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	sock, peer := conns[0], conns[1].(*net.UnixConn)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := fc.Read(buf)
			if n > 0 {
				if _, werr := peer.Write(buf[:n]); werr != nil {
					return // the Conn has closed
				}
			}
			if err != nil {
				peer.CloseWrite()
				return
			}
		}
	})
	wg.Go(func() { io.Copy(fc, peer) }) // until the Conn closes its end
	var once sync.Once
	return sock, func() {
		once.Do(func() {
			wg.Wait()
			peer.Close()
		})
	}
}
