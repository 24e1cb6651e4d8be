package websocket

import (
	"context"
	"slices"
	"sync"

	"github.com/duplexws/duplex/internal/frame"
)

// PreparedMessage is a message encoded once for any number of connections,
// for broadcasting. A server writes the frame bytes, header included, that
// the first WritePrepared encoded and cached, so sending to many
// connections costs one encoding instead of one per connection; with
// compression, one compression for all connections that agreed on no
// context takeover with the same window and level (with context takeover
// each connection's history differs, so each compresses on its own). A
// client masks every frame with a fresh key, so it writes the payload
// through its masking copy. A PreparedMessage is safe for concurrent use;
// the data passed to NewPreparedMessage must not change afterwards.
type PreparedMessage struct {
	typ   MessageType
	plain bool // marked Uncompressed
	data  []byte

	plainOnce  sync.Once
	plainFrame []byte // the server frame, unmasked and uncompressed

	mu         sync.Mutex
	compressed []preparedFrame // server frames compressed without context takeover
}

// preparedFrame is a compressed server frame for one window and level.
type preparedFrame struct {
	bits, level int
	frame       []byte
}

// NewPreparedMessage prepares data as a message of type typ, which may be
// marked Uncompressed.
func NewPreparedMessage(typ MessageType, data []byte) (*PreparedMessage, error) {
	typ, plain := splitType(typ)
	if typ != MessageText && typ != MessageBinary {
		return nil, errBadMessageType
	}
	return &PreparedMessage{typ: typ, plain: plain, data: data}, nil
}

// serverFrame returns the message as one unmasked frame.
func (pm *PreparedMessage) serverFrame() []byte {
	pm.plainOnce.Do(func() {
		pm.plainFrame = appendServerFrame(nil, pm.typ, 0, pm.data)
	})
	return pm.plainFrame
}

// compressedServerFrame returns the message as one unmasked frame
// compressed for comp, which compresses without context takeover. The
// caller holds the msgMu of comp's connection.
func (pm *PreparedMessage) compressedServerFrame(comp *compression) []byte {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, f := range pm.compressed {
		if f.bits == comp.outBits && f.level == comp.level {
			return f.frame
		}
	}
	f := appendServerFrame(nil, pm.typ, frame.RSV1, comp.out.Compress(nil, pm.data))
	pm.compressed = append(pm.compressed, preparedFrame{comp.outBits, comp.level, f})
	return f
}

func appendServerFrame(b []byte, typ MessageType, rsv byte, payload []byte) []byte {
	h := frame.Header{Fin: true, RSV: rsv, Opcode: frame.Opcode(typ), Length: int64(len(payload))}
	b = frame.AppendHeader(slices.Grow(b, h.Size()+len(payload)), h)
	return append(b, payload...)
}

// WritePrepared writes pm as one message, as Write would write its data,
// and with the same handling of ctx.
func (c *Conn) WritePrepared(ctx context.Context, pm *PreparedMessage) error {
	if err := c.lock(ctx, &c.msgMu); err != nil {
		return err
	}
	defer c.msgMu.unlock()
	op := frame.Opcode(pm.typ)
	compress := c.comp != nil && !pm.plain && len(pm.data) >= c.comp.threshold
	if c.client || compress && !c.comp.shared {
		if compress {
			return c.writeCompressed(ctx, op, pm.data)
		}
		return c.writeFrame(ctx, op, true, 0, pm.data)
	}
	encoded := pm.serverFrame()
	if compress {
		encoded = pm.compressedServerFrame(c.comp)
	}
	if err := c.beginFrame(ctx, op); err != nil {
		return err
	}
	_, err := c.netConn.Write(encoded)
	return c.endFrame(ctx, err)
}
