//go:build !unix

package websocket

import "errors"

// writeFD is never called where connections are not read raw.
func writeFD(fd uintptr, p []byte) (int, error) { return 0, errors.ErrUnsupported }
