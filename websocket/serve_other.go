//go:build !linux

package websocket

// Only Linux has the loops: elsewhere Serve reads in a goroutine.
type serveLoop struct{}

type loopState struct{ loop *serveLoop }

func loopsAvailable() bool         { return false }
func scratchOf(*serveLoop) *[]byte { return new([]byte) }
func (c *Conn) enterLoop() bool    { return false }
func (c *Conn) unserve()           {}
