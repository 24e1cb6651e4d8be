package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one extended CONNECT stream. Its fields after id are guarded
// by cc.mu, on which cond waits.
type stream struct {
	cc   *clientConn
	id   uint32
	req  *http.Request
	cond *sync.Cond

	sendWindow int64
	sentEnd    bool // END_STREAM sent

	rbuf       []byte // DATA received; unread from roff on
	roff       int
	recvWindow int64 // what the server may still send on the stream
	recvUnack  int64 // bytes read whose WINDOW_UPDATE is owed
	recvEnd    bool  // END_STREAM received
	bodyClosed bool  // the response's Body was closed

	gotResp    bool
	respFields []hpack.HeaderField

	done    bool  // no longer in cc.streams
	err     error // why it ended, unless both sides ended it cleanly
	stopCtx func() bool
	grace   *time.Timer // cancelStream's delayed reset
}

// cancelGrace is how long a cancelled stream whose server side has ended
// may take to end this side with END_STREAM before it is reset.
const cancelGrace = time.Second

// roundTrip opens a stream for req on cc, where reserve made room for it.
func (cc *clientConn) roundTrip(req *http.Request) (*http.Response, error) {
	fields, err := requestFields(req)
	if err != nil {
		cc.mu.Lock()
		cc.reserved--
		cc.mu.Unlock()
		closeBody(req)
		return nil, err
	}
	st := &stream{cc: cc, req: req, recvWindow: streamWindow}
	st.cond = sync.NewCond(&cc.mu)

	// Stream ids go out in increasing order (RFC 9113 section 5.1.1):
	// the id is taken and the HEADERS written under one hold of wmu.
	cc.wmu.Lock()
	cc.mu.Lock()
	cc.reserved-- // the stream takes the room reserved for it
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		cc.wmu.Unlock()
		closeBody(req)
		return nil, err
	}
	st.id = cc.nextID
	cc.nextID += 2
	st.sendWindow = cc.sendInit
	maxFrame := int(cc.maxSend)
	cc.streams[st.id] = st
	cc.mu.Unlock()
	if tr := cc.t.Trace; tr != nil && tr.HeadersSent != nil {
		tr.HeadersSent(st.id, fields)
	}
	cc.hbuf.b = cc.hbuf.b[:0]
	for _, f := range fields {
		cc.henc.WriteField(f)
	}
	err = cc.writeHeaderBlock(st.id, cc.hbuf.b, maxFrame)
	if err == nil {
		err = cc.bw.Flush()
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(fmt.Errorf("the HTTP/2 connection was lost: %w", err))
		return nil, err
	}

	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { cc.cancelStream(st, ctx.Err()) })
	cc.mu.Lock()
	st.stopCtx = stop
	if st.done {
		stop()
	}
	cc.mu.Unlock()
	cc.t.wg.Add(1)
	go func() {
		defer cc.t.wg.Done()
		st.writeBody()
	}()

	cc.mu.Lock()
	for !st.gotResp && st.err == nil {
		st.cond.Wait()
	}
	if !st.gotResp {
		err := st.err
		cc.mu.Unlock()
		return nil, err
	}
	fieldsIn := st.respFields
	cc.mu.Unlock()
	return response(req, fieldsIn, &body{st: st})
}

// writeHeaderBlock writes a header block as HEADERS and as many
// CONTINUATION frames as it takes (RFC 9113 section 6.10). Under wmu.
func (cc *clientConn) writeHeaderBlock(id uint32, block []byte, maxFrame int) error {
	first := true
	for first || len(block) > 0 {
		chunk := block[:min(len(block), maxFrame)]
		block = block[len(chunk):]
		var err error
		if first {
			err = cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndHeaders: len(block) == 0})
		} else {
			err = cc.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
		first = false
	}
	return nil
}

// requestFields is the header block of an extended CONNECT: the
// pseudo-headers of RFC 8441 section 4 (:method CONNECT, :protocol,
// :scheme, :authority and :path), then req's headers, lower-cased, less
// those that HTTP/2 forbids (RFC 9113 section 8.2.2).
func requestFields(req *http.Request) ([]hpack.HeaderField, error) {
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	fields := []hpack.HeaderField{
		{Name: ":method", Value: http.MethodConnect},
		{Name: ":protocol", Value: req.Header.Get(":protocol")},
		{Name: ":scheme", Value: req.URL.Scheme},
		{Name: ":authority", Value: authority},
		{Name: ":path", Value: req.URL.RequestURI()},
	}
	names := make([]string, 0, len(req.Header))
	for name := range req.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		lower := strings.ToLower(name)
		switch lower {
		case ":protocol", "host", "connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding", "te", "content-length":
			continue
		}
		if name == "" || strings.ContainsAny(name, ":\r\n\x00 \t") {
			return nil, fmt.Errorf("h2client: invalid header name %q", name)
		}
		for _, v := range req.Header[name] {
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, fmt.Errorf("h2client: invalid value of header %s", name)
			}
			fields = append(fields, hpack.HeaderField{Name: lower, Value: v, Sensitive: lower == "authorization" || lower == "cookie"})
		}
	}
	return fields, nil
}

// response builds the http.Response of a response header block.
func response(req *http.Request, fields []hpack.HeaderField, b *body) (*http.Response, error) {
	resp := &http.Response{
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header:        http.Header{},
		Body:          b,
		ContentLength: -1,
		Request:       req,
	}
	for _, f := range fields {
		if f.Name == ":status" {
			code, err := strconv.Atoi(f.Value)
			if err != nil || code < 100 || code > 999 {
				b.Close()
				return nil, fmt.Errorf("h2client: the server answered with status %q", f.Value)
			}
			resp.StatusCode = code
			resp.Status = f.Value + " " + http.StatusText(code)
			continue
		}
		if !strings.HasPrefix(f.Name, ":") {
			resp.Header.Add(f.Name, f.Value)
		}
	}
	if resp.StatusCode == 0 {
		b.Close()
		return nil, errors.New("h2client: the server's response has no :status")
	}
	return resp, nil
}

// bufPool holds the buffers that request bodies are read into.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// writeBody sends req.Body as the stream's DATA, within the flow-control
// windows, and END_STREAM when it ends; RST_STREAM when it fails. It
// returns when the body ends or fails; the stream's end closes the body,
// which wakes it.
func (st *stream) writeBody() {
	cc := st.cc
	if st.req.Body == nil {
		st.sendEnd()
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		n, err := st.req.Body.Read(*bp)
		if n > 0 && !st.sendData((*bp)[:n]) {
			return
		}
		if err == io.EOF {
			st.sendEnd()
			return
		}
		if err != nil {
			cc.resetStream(st.id, http2.ErrCodeCancel, fmt.Errorf("HTTP/2 stream %d reset: its request body failed: %w", st.id, err))
			return
		}
	}
}

// sendData writes p as DATA frames as the windows allow. It reports
// false when the stream or the connection has ended.
func (st *stream) sendData(p []byte) bool {
	cc := st.cc
	for len(p) > 0 {
		cc.mu.Lock()
		for st.err == nil && !st.done && (st.sendWindow <= 0 || cc.sendWindow <= 0) {
			st.cond.Wait()
		}
		if st.err != nil || st.done {
			cc.mu.Unlock()
			return false
		}
		n := min(int64(len(p)), st.sendWindow, cc.sendWindow, int64(cc.maxSend))
		st.sendWindow -= n
		cc.sendWindow -= n
		cc.mu.Unlock()
		if !st.writeIfOpen(func() error { return cc.fr.WriteData(st.id, false, p[:n]) }, p[:n], false) {
			return false
		}
		p = p[n:]
	}
	return true
}

// sendEnd ends this side of the stream with an empty DATA frame that
// carries END_STREAM.
func (st *stream) sendEnd() {
	cc := st.cc
	if !st.writeIfOpen(func() error { return cc.fr.WriteData(st.id, true, nil) }, nil, true) {
		return
	}
	cc.mu.Lock()
	st.sentEnd = true
	cc.endIfBothEnded(st)
	cc.mu.Unlock()
}

// writeIfOpen writes a DATA frame of the stream unless the stream has
// ended, in which case the server would take it for an error.
func (st *stream) writeIfOpen(write func() error, p []byte, end bool) bool {
	cc := st.cc
	cc.wmu.Lock()
	cc.mu.Lock()
	ended := st.err != nil || st.done
	cc.mu.Unlock()
	if ended {
		cc.wmu.Unlock()
		return false
	}
	if tr := cc.t.Trace; tr != nil && tr.DataSent != nil {
		tr.DataSent(st.id, p, end)
	}
	err := write()
	if err == nil {
		err = cc.bw.Flush()
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(fmt.Errorf("the HTTP/2 connection was lost: %w", err))
		return false
	}
	return true
}

// endIfBothEnded takes the stream off the connection once both sides
// have sent END_STREAM (RFC 9113 section 5.1: closed). Under mu.
func (cc *clientConn) endIfBothEnded(st *stream) {
	if st.sentEnd && st.recvEnd && !st.done {
		st.finish(nil)
		delete(cc.streams, st.id)
	}
}

// finish marks the stream ended, with err unless it ended cleanly, and
// wakes its waiters. Under mu; the caller deletes it from cc.streams and
// closes its request body.
func (st *stream) finish(err error) {
	if st.err == nil {
		st.err = err
	}
	st.done = true
	if st.stopCtx != nil {
		st.stopCtx()
	}
	if st.grace != nil {
		st.grace.Stop()
	}
	st.cond.Broadcast()
}

// cancelStream ends the stream because req's context ended. A stream
// whose server side has ended is, most likely, being closed: its request
// body has ended or is ending (websocket.Dial's Conn closes the body, then
// cancels), and the writer sends END_STREAM once it reads the end. It gets
// cancelGrace to do so, so that the stream ends cleanly rather than with
// RST_STREAM, as a TCP connection ends with FIN rather than a reset.
func (cc *clientConn) cancelStream(st *stream, err error) {
	cc.mu.Lock()
	if st.done {
		cc.mu.Unlock()
		return
	}
	if st.recvEnd && !st.sentEnd {
		if st.grace == nil {
			st.grace = time.AfterFunc(cancelGrace, func() { cc.resetStream(st.id, http2.ErrCodeCancel, err) })
		}
		cc.mu.Unlock()
		return
	}
	cc.mu.Unlock()
	cc.resetStream(st.id, http2.ErrCodeCancel, err)
}

// resetStream ends the stream with RST_STREAM of code, and with err for
// those who use it.
func (cc *clientConn) resetStream(id uint32, code http2.ErrCode, err error) {
	cc.mu.Lock()
	st := cc.streams[id]
	if st != nil {
		delete(cc.streams, id)
		st.finish(err)
	}
	connDone := cc.err != nil
	cc.mu.Unlock()
	if st == nil {
		return
	}
	if !connDone {
		if tr := cc.t.Trace; tr != nil && tr.StreamReset != nil {
			tr.StreamReset(id, code, false)
		}
		cc.writeFrame(func() error { return cc.fr.WriteRSTStream(id, code) })
	}
	closeBody(st.req)
}

// endStream ends the stream for a reason the server gave (RST_STREAM,
// GOAWAY): nothing is sent.
func (cc *clientConn) endStream(id uint32, err error) {
	cc.mu.Lock()
	st := cc.streams[id]
	if st != nil {
		delete(cc.streams, id)
		st.finish(err)
	}
	cc.mu.Unlock()
	if st != nil {
		closeBody(st.req)
	}
}

// gotHeaders takes a response header block, or trailers.
func (cc *clientConn) gotHeaders(f *http2.MetaHeadersFrame) {
	if tr := cc.t.Trace; tr != nil && tr.HeadersReceived != nil {
		tr.HeadersReceived(f.StreamID, f.Fields, f.StreamEnded())
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	st := cc.streams[f.StreamID]
	if st == nil {
		return
	}
	if !st.gotResp {
		if status := f.PseudoValue("status"); len(status) == 3 && status[0] == '1' {
			return // informational (RFC 9113 section 8.1)
		}
		st.gotResp, st.respFields = true, f.Fields
	}
	if f.StreamEnded() {
		st.recvEnd = true
		cc.endIfBothEnded(st)
	}
	st.cond.Broadcast()
}

// gotData takes a DATA frame, within the windows this side granted
// (RFC 9113 section 6.9). An error fails the connection.
func (cc *clientConn) gotData(f *http2.DataFrame) error {
	data := f.Data()
	if tr := cc.t.Trace; tr != nil && tr.DataReceived != nil {
		tr.DataReceived(f.StreamID, data, f.StreamEnded())
	}
	n := int64(f.Length)
	cc.mu.Lock()
	if n > cc.recvConnLeft() {
		cc.mu.Unlock()
		return errors.New("the server overflowed the HTTP/2 connection's flow-control window (FLOW_CONTROL_ERROR)")
	}
	cc.recvUsed += n
	st := cc.streams[f.StreamID]
	var credit int64 // what goes back to the connection's window at once
	var overflow bool
	switch {
	case st == nil || st.bodyClosed || st.recvEnd:
		credit = n
	case n > st.recvWindow:
		credit, overflow = n, true
	default:
		st.recvWindow -= n
		if st.roff > 0 && len(st.rbuf)+len(data) > cap(st.rbuf) {
			st.rbuf = st.rbuf[:copy(st.rbuf, st.rbuf[st.roff:])]
			st.roff = 0
		}
		st.rbuf = append(st.rbuf, data...)
		pad := n - int64(len(data))
		credit = pad
		st.recvUnack += pad
		if f.StreamEnded() {
			st.recvEnd = true
			cc.endIfBothEnded(st)
		}
		st.cond.Broadcast()
	}
	connIncr := cc.creditConn(credit)
	cc.mu.Unlock()
	if overflow {
		cc.resetStream(f.StreamID, http2.ErrCodeFlowControl, fmt.Errorf("the server overflowed HTTP/2 stream %d's flow-control window", f.StreamID))
	}
	return cc.sendWindowUpdates(connIncr, 0, 0)
}

// recvConnLeft is what the server may still send on the connection.
// Under mu.
func (cc *clientConn) recvConnLeft() int64 { return connWindow - cc.recvUsed }

// creditConn counts n bytes as consumed and returns the WINDOW_UPDATE
// increment owed for the connection, 0 while it is small. Under mu.
func (cc *clientConn) creditConn(n int64) int64 {
	cc.recvUnack += n
	if cc.recvUnack < connWindow/2 {
		return 0
	}
	incr := cc.recvUnack
	cc.recvUnack = 0
	cc.recvUsed -= incr
	return incr
}

// sendWindowUpdates sends the WINDOW_UPDATE frames owed, if any.
func (cc *clientConn) sendWindowUpdates(connIncr int64, id uint32, streamIncr int64) error {
	if connIncr == 0 && streamIncr == 0 {
		return nil
	}
	return cc.writeFrame(func() error {
		if connIncr > 0 {
			if err := cc.fr.WriteWindowUpdate(0, uint32(connIncr)); err != nil {
				return err
			}
		}
		if streamIncr > 0 {
			return cc.fr.WriteWindowUpdate(id, uint32(streamIncr))
		}
		return nil
	})
}

// body is the response's Body: the DATA the server sends on the stream.
type body struct{ st *stream }

// Read returns DATA as it comes, io.EOF after END_STREAM, and the
// stream's error after a reset or a lost connection.
func (b *body) Read(p []byte) (int, error) {
	st := b.st
	cc := st.cc
	cc.mu.Lock()
	for st.roff == len(st.rbuf) && !st.recvEnd && st.err == nil && !st.bodyClosed {
		st.cond.Wait()
	}
	switch {
	case st.bodyClosed:
		cc.mu.Unlock()
		return 0, errors.New("h2client: read on a closed body")
	case st.roff < len(st.rbuf):
	case st.recvEnd:
		cc.mu.Unlock()
		return 0, io.EOF
	default:
		err := st.err
		cc.mu.Unlock()
		return 0, err
	}
	n := copy(p, st.rbuf[st.roff:])
	st.roff += n
	if st.roff == len(st.rbuf) {
		st.rbuf, st.roff = st.rbuf[:0], 0
	}
	var streamIncr int64
	if !st.recvEnd && !st.done {
		st.recvUnack += int64(n)
		if st.recvUnack >= streamWindow/4 {
			streamIncr, st.recvUnack = st.recvUnack, 0
			st.recvWindow += streamIncr
		}
	}
	connIncr := cc.creditConn(int64(n))
	cc.mu.Unlock()
	if err := cc.sendWindowUpdates(connIncr, st.id, streamIncr); err != nil {
		cc.fail(fmt.Errorf("the HTTP/2 connection was lost: %w", err))
	}
	return n, nil
}

// Close stops reading: what is left unread is dropped, and a stream the
// server has not ended is reset (CANCEL).
func (b *body) Close() error {
	st := b.st
	cc := st.cc
	cc.mu.Lock()
	if st.bodyClosed {
		cc.mu.Unlock()
		return nil
	}
	st.bodyClosed = true
	unread := int64(len(st.rbuf) - st.roff)
	st.rbuf, st.roff = nil, 0
	reset := !st.recvEnd && !st.done
	connIncr := cc.creditConn(unread)
	st.cond.Broadcast()
	cc.mu.Unlock()
	if reset {
		cc.resetStream(st.id, http2.ErrCodeCancel, errors.New("h2client: the response body was closed"))
	}
	cc.sendWindowUpdates(connIncr, 0, 0)
	return nil
}
