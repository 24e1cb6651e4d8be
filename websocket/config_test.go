package websocket

import (
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/frame"
)

// Conns made with equal options point to one configuration, with the
// write buffers' pool set; different options get a configuration of their
// own.
func TestSharedConfig(t *testing.T) {
	a := sharedConfig(newConnConfig(0, 0, 0, 0, 0))
	b := sharedConfig(newConnConfig(0, 0, 0, 0, 0))
	if a != b {
		t.Error("two Conns of equal options hold two configurations")
	}
	if a.writePool == nil || a.writePool.size != a.writeBufferSize+frame.MaxHeaderSize || a.readPool == nil || a.readPool.size != a.readBufferSize {
		t.Errorf("pools of the shared configuration: write %v, read %v", a.writePool, a.readPool)
	}
	c := sharedConfig(newConnConfig(0, 0, time.Second, 0, 0))
	if c == a || c.pingInterval != time.Second {
		t.Errorf("options with a ping interval got %+v, the default's is %p", c, a)
	}
}
