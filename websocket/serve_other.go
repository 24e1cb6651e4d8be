//go:build !linux

package websocket

// Only Linux has the loops: elsewhere Serve reads in a goroutine.
type loopState struct{}

func loopsAvailable() bool      { return false }
func (c *Conn) enterLoop() bool { return false }
func (c *Conn) unserve()        {}
