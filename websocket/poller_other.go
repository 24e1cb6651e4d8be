//go:build !linux

package websocket

// havePoller: only Linux has the poller; Await's goroutine waits.
const havePoller = false

// park reports that c cannot wait in a poller.
func (c *Conn) park(*awaitState) bool { return false }

func (c *Conn) unpark() {}
