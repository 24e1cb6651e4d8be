//go:build !linux

package websocket

// parkState is empty: only Linux has the poller.
type parkState struct{}

// park reports that c cannot wait in a poller: Await's goroutine waits.
func (c *Conn) park() bool { return false }

func (c *Conn) unpark() {}
