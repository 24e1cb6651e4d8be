//go:build !unix

package websocket

import "errors"

// Elsewhere connections read through net.Conn and keep their buffer.
const canReadRaw = false

var errWouldBlock = errors.New("websocket: would block")

func readFD(fd uintptr, p []byte) (int, error) { return 0, errors.ErrUnsupported }

// writeFD is never called where connections are not read raw.
func writeFD(fd uintptr, p []byte) (int, error) { return 0, errors.ErrUnsupported }
