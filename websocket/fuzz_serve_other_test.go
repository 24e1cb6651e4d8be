//go:build !linux

package websocket

import (
	"net"
	"testing"
)

// socketFor: only Linux has the epoll sets Serve's fuzzing is for.
func socketFor(*testing.T, *fuzzConn) (net.Conn, func()) { return nil, nil }
