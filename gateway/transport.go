package gateway

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// A transport is how bytes reach one client, and its messages the node:
// today a WebSocket connection; HTTP streaming and Server-Sent Events
// (with commands as POSTs) will be others. It knows nothing of the
// protocol spoken over it or of the session's state: its reading side
// hands each message to the session's protocol (protocol.handleMessage)
// and ends the session when reading ends (session.finish); the session's
// writer hands it batches that the protocol spelled.
//
// The writer calls write and writeShared from one goroutine at a time;
// close, closeNow and abortOnClose may be called from any goroutine, at
// any time, also after the connection ended, and while the writer writes.
type transport interface {
	// write writes msg, one message of the protocol holding one or more
	// of its lines, and reports whether it went out.
	write(msg []byte) error
	// writeShared writes one line that many clients receive unchanged (a
	// publication): the transport may encode it once for all of them.
	writeShared(line *sharedLine) error
	// close ends the connection in order, telling the client code and
	// reason; last, when not nil, is a line of the protocol written just
	// before (within a second, or not at all). It may block for the
	// closing handshake.
	close(code websocket.StatusCode, reason string, last []byte)
	// closeNow ends the connection without telling the client.
	closeNow()
	// abortOnClose makes the closing of the connection discard what the
	// client did not read rather than leave the kernel holding it (a slow
	// consumer's); it reports whether it could.
	abortOnClose() bool
	// kind names the transport, for logs.
	kind() string
}

// A tryWriter is a transport that can write a shared line without waiting
// when it can go out at once (wsTransport over a TCP or Unix socket), so
// that a fan-out writes inline rather than starting a writer per session.
type tryWriter interface {
	// tryWriteShared writes line if it can go out now, never waiting, and
	// reports whether it did; an error means the connection failed.
	tryWriteShared(line *sharedLine) (sent bool, err error)
}

// wsTransport is a WebSocket connection, served without a goroutine while
// the client is silent (websocket.Conn.Await).
type wsTransport struct {
	conn *websocket.Conn
	// netConn is the connection conn took over, to abort it when the
	// client is closed as a slow consumer (abort.go); nil when unknown.
	netConn net.Conn

	sess     *session // set by serve, before the first read
	resumeFn func()   // resume, bound once: Await takes it for every wait
}

func (t *wsTransport) write(msg []byte) error {
	return t.conn.Write(context.Background(), websocket.MessageText, msg)
}

func (t *wsTransport) writeShared(line *sharedLine) error {
	return t.conn.WritePrepared(context.Background(), line.frame())
}

func (t *wsTransport) tryWriteShared(line *sharedLine) (bool, error) {
	return t.conn.TryWritePrepared(line.frame())
}

// lastLineTimeout bounds the writing of a protocol's last line before a
// close: a client that does not read gets the close frame, or nothing, as
// without it.
const lastLineTimeout = time.Second

func (t *wsTransport) close(code websocket.StatusCode, reason string, last []byte) {
	if last != nil {
		ctx, cancel := context.WithTimeout(context.Background(), lastLineTimeout)
		t.conn.Write(ctx, websocket.MessageText, last)
		cancel()
	}
	t.conn.Close(code, reason)
}

func (t *wsTransport) closeNow() { t.conn.CloseNow() }

func (t *wsTransport) abortOnClose() bool { return t.netConn != nil && abortOnClose(t.netConn) }

func (t *wsTransport) kind() string { return "websocket" }

// serve admits sess, whose transport t is, and starts reading. It returns
// once the session waits for its first message; the session ends in
// finish, on whichever goroutine reads last.
func (t *wsTransport) serve(sess *session) {
	if !sess.start() {
		return
	}
	t.sess = sess
	t.resumeFn = t.resume
	t.resume()
}

// resume reads messages and hands them to the session's protocol while
// they keep coming. When none has arrived it awaits the next without a
// goroutine (websocket.Conn.Await), which calls resume again: an idle
// session holds no goroutine and no buffer. It ends the session when
// reading ends.
func (t *wsTransport) resume() {
	sess := t.sess
	for {
		ready, err := t.conn.Await(t.resumeFn)
		if err != nil {
			sess.finish(endReason(err)) // cannot happen: only this chain reads
			return
		}
		if !ready {
			return
		}
		typ, msg, err := t.conn.Read(context.Background())
		if err != nil {
			if limit, _ := readLimitHit(err); limit != "" {
				sess.srv.metrics.limitHits.With(limit).Inc()
			}
			sess.finish(endReason(err))
			return
		}
		sess.srv.metrics.bytesIn.Add(float64(len(msg)))
		if sess.isClosing() {
			continue // the close handshake is under way; read until it ends
		}
		sess.proto.handleMessage(sess, typ == websocket.MessageText, msg)
	}
}

// The disconnect reasons and limits of the per-connection read limits the
// websocket package enforces (Limits.FrameRate and ByteRate, its fragment
// cap and message timeout), each closed with 1008.
const (
	reasonReadRate       = "read_rate"
	reasonFragments      = "fragments"
	reasonMessageTimeout = "message_timeout"
	limitReadRate        = "read_rate"
	limitFragments       = "fragments"
	limitMessageTimeout  = "message_timeout"
)

// readRate is the websocket.RateLimit of l, whose defaults are filled in:
// only positive rates limit.
func readRate(l *Limits) websocket.RateLimit {
	var r websocket.RateLimit
	if l.FrameRate > 0 {
		r.Frames, r.FrameBurst = l.FrameRate, l.FrameBurst
	}
	if l.ByteRate > 0 {
		r.Bytes, r.ByteBurst = l.ByteRate, l.ByteBurst
	}
	return r
}

// readLimitHit names the limit err reports the client went past, if any.
func readLimitHit(err error) (limit, reason string) {
	var pe *websocket.ProtocolError
	switch {
	case errors.Is(err, websocket.ErrRateLimited):
		return limitReadRate, reasonReadRate
	case errors.Is(err, websocket.ErrTooManyFragments):
		return limitFragments, reasonFragments
	case errors.Is(err, websocket.ErrMessageTimeout):
		return limitMessageTimeout, reasonMessageTimeout
	case errors.As(err, &pe) && pe.Code == websocket.StatusMessageTooBig:
		return limitMessageSize, reasonMessageSize
	}
	return "", ""
}

// endReason names why a connection ended that this side did not close.
func endReason(err error) string {
	if _, reason := readLimitHit(err); reason != "" {
		return reason
	}
	var pe *websocket.ProtocolError
	if errors.As(err, &pe) {
		if pe.Code == websocket.StatusPolicyViolation {
			return reasonNoPong
		}
		return reasonProtocol
	}
	if websocket.CloseStatus(err) != -1 {
		return reasonClient
	}
	return reasonNetwork
}
