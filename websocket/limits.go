package websocket

import (
	"errors"
	"strconv"
	"time"
)

// The limits a Conn holds its peer to, besides the read limit. A peer that
// exceeds one fails the connection with StatusPolicyViolation; the
// *ProtocolError returned matches one of these with errors.Is.
var (
	// ErrMessageTimeout: a message that had begun to arrive was not
	// completed within the message timeout.
	ErrMessageTimeout = errors.New("websocket: message not completed in time")
	// ErrTooManyFragments: a message spanned more frames than allowed.
	ErrTooManyFragments = errors.New("websocket: too many fragments in a message")
	// ErrRateLimited: the peer sent frames or bytes faster than ReadRate
	// allows.
	ErrRateLimited = errors.New("websocket: read rate exceeded")
)

// Defaults of the read limits shared by Accept and Dial.
const (
	defaultMessageTimeout = time.Minute
	// The fragments a message may have by default: this many, or one for
	// every fragmentPerBytes bytes of the read limit when that is more.
	defaultMaxFragments = 1024
	fragmentPerBytes    = 256
)

// RateLimit bounds what a peer may send, as token buckets: every frame,
// control frames included, takes one token of Frames per second (with
// bursts of FrameBurst); every control frame (ping, pong, close) also takes
// one of Controls per second (with bursts of ControlBurst); and its bytes on
// the wire, header included, take as many of Bytes per second (with bursts
// of ByteBurst). A peer over any fails the connection with
// StatusPolicyViolation (ErrRateLimited). It is checked every few frames,
// not at each, so that it costs nearly nothing: a peer may overrun a burst
// by a sixteenth of it before it is caught. Bytes also holds once the
// connection is closing: what the peer sends after this side's close frame
// is read, to be dropped, no faster than Bytes allows, and a peer that
// keeps going past it finds the connection closed before the close timeout.
// A peer failed for going over its rate gets 256 KiB of what it sends after
// the close frame read, no more: the connection closes once the peer has
// acknowledged the close frame, or at the close timeout.
//
// Controls is what tells a ping flood from a fast client: each ping costs
// this endpoint a pong (a server writes the pongs to pings that arrived
// together at once), and a peer has no need for more than a few a second,
// while a busy client may send tens of thousands of data frames.
//
// The zero value sets no limit.
type RateLimit struct {
	// Frames per second. Default: 0, no limit.
	Frames float64
	// FrameBurst default: Frames, at least 1.
	FrameBurst int
	// Controls: control frames per second. Default: 0, no limit beyond
	// Frames.
	Controls float64
	// ControlBurst default: Controls, at least 1.
	ControlBurst int
	// Bytes per second. Default: 0, no limit.
	Bytes float64
	// ByteBurst must hold the largest frame the peer may send, which is
	// charged whole when its header arrives. Default: Bytes, at least
	// 1 MiB.
	ByteBurst int
}

// readLimits are the limits of the options, with defaults filled in.
type readLimits struct {
	messageTimeout time.Duration // 0: none
	maxFragments   int           // 0: the default, from the read limit; <0: none
	rate           RateLimit
}

func newReadLimits(messageTimeout time.Duration, maxFragments int, rate RateLimit) readLimits {
	switch {
	case messageTimeout == 0:
		messageTimeout = defaultMessageTimeout
	case messageTimeout < 0:
		messageTimeout = 0
	}
	return readLimits{messageTimeout: messageTimeout, maxFragments: maxFragments, rate: rate}
}

// fragmentCap returns the most frames a message may span now, or -1.
func (c *Conn) fragmentCap() int64 {
	if n := c.cfg.limits.maxFragments; n != 0 {
		return int64(n)
	}
	limit := c.readLimit.Load()
	if limit < 0 {
		return -1
	}
	return max(defaultMaxFragments, limit/fragmentPerBytes)
}

// countFragment counts a frame of the current message. The cap is computed
// only past the default, so that a message of a few frames pays a compare.
func (c *Conn) countFragment() error {
	c.msgFrames++
	if c.msgFrames <= defaultMaxFragments && c.cfg.limits.maxFragments <= 0 {
		return nil
	}
	return c.checkFragments()
}

func (c *Conn) checkFragments() error {
	if max := c.fragmentCap(); max >= 0 && c.msgFrames > max {
		return c.fail(&ProtocolError{
			Code:   StatusPolicyViolation,
			Reason: "message of more than " + strconv.FormatInt(max, 10) + " fragments",
			err:    ErrTooManyFragments,
		})
	}
	return nil
}

// readRate enforces a RateLimit. It counts frames and bytes as they come and
// settles them against the buckets, reading the clock, only every so many,
// so that the common frame costs two additions and a compare.
type readRate struct {
	limit    RateLimit
	frames   bucket
	controls bucket
	bytes    bucket
	// Charged since the last settlement, and how much makes one due.
	owedFrames, owedControls, owedBytes       int64
	settleFrames, settleControls, settleBytes int64
	last                                      time.Time
}

// bucket is a token bucket measured in tokens, refilled at rate per
// second up to burst.
type bucket struct {
	rate, burst, tokens float64 // rate 0: no limit
}

func newReadRate(l RateLimit) *readRate {
	if !(l.Frames > 0) && !(l.Controls > 0) && !(l.Bytes > 0) {
		return nil
	}
	r := &readRate{limit: l, last: time.Now()}
	r.frames, r.settleFrames = newBucket(l.Frames, l.FrameBurst, 1)
	r.controls, r.settleControls = newBucket(l.Controls, l.ControlBurst, 1)
	r.bytes, r.settleBytes = newBucket(l.Bytes, l.ByteBurst, 1<<20)
	return r
}

// newBucket returns the bucket of rate per second with bursts of burst
// (default: rate, at least minBurst), full, and how many tokens owed make a
// settlement due: a sixteenth of the burst. A rate of 0 or less is no
// limit, never settled for.
func newBucket(rate float64, burst int, minBurst float64) (bucket, int64) {
	if !(rate > 0) {
		return bucket{}, 1 << 62
	}
	b := float64(burst)
	if burst <= 0 {
		b = max(rate, minBurst)
	}
	return bucket{rate: rate, burst: b, tokens: b}, int64(max(1, b/16))
}

// charge counts one frame of n bytes on the wire, a control frame if
// control. It reports false when the peer is over a limit.
func (r *readRate) charge(n int64, control bool) bool {
	r.owedFrames++
	r.owedBytes += n
	if control {
		r.owedControls++
	}
	if r.owedFrames < r.settleFrames && r.owedBytes < r.settleBytes && r.owedControls < r.settleControls {
		return true
	}
	return r.settle()
}

// settle takes what is owed from the buckets.
func (r *readRate) settle() bool {
	now := time.Now()
	elapsed := now.Sub(r.last).Seconds()
	r.last = now
	// Every bucket is refilled and charged, so that each stays true to the
	// time even when another one is over.
	ok := r.frames.take(elapsed, r.owedFrames)
	ok = r.controls.take(elapsed, r.owedControls) && ok
	ok = r.bytes.take(elapsed, r.owedBytes) && ok
	r.owedFrames, r.owedControls, r.owedBytes = 0, 0, 0
	return ok
}

// take refills the bucket for elapsed seconds and takes n tokens, reporting
// whether there were enough.
func (b *bucket) take(elapsed float64, n int64) bool {
	if b.rate == 0 {
		return true
	}
	b.tokens = min(b.burst, b.tokens+elapsed*b.rate) - float64(n)
	return b.tokens >= 0
}

func (r *readRate) exceeded() *ProtocolError {
	reason := "read rate exceeded"
	switch {
	case r.controls.rate != 0 && r.controls.tokens < 0:
		reason = "more than " + strconv.FormatFloat(r.limit.Controls, 'g', -1, 64) + " control frames per second"
	case r.frames.rate != 0 && r.frames.tokens < 0:
		reason = "more than " + strconv.FormatFloat(r.limit.Frames, 'g', -1, 64) + " frames per second"
	case r.bytes.rate != 0 && r.bytes.tokens < 0:
		reason = "more than " + strconv.FormatFloat(r.limit.Bytes, 'g', -1, 64) + " bytes per second"
	}
	return &ProtocolError{Code: StatusPolicyViolation, Reason: reason, err: ErrRateLimited}
}

// The message timeout. A call that reads a message (Read, Reader, the
// reader's Read) sets br.watchWait; the read buffer then calls
// waitingForPeer when it is about to wait for the network, which starts the
// clock the first time the call waits with part of a frame or message
// received. Waiting for a message to begin is idle time and is not bounded.
// The deadline is the network connection's read deadline. It stays set
// from call to call of one message, as setting it costs a runtime timer
// each time, and is renewed at the start of a call only when less than
// three quarters of the timeout is left: so a call waits for the peer at
// least that long and at most the whole timeout, and an application that
// reads a long message slowly is not held to it. It is cleared when the
// message ends.

// beginMessageWatch makes the read buffer report the waits of this call.
func (c *Conn) beginMessageWatch() {
	if c.cfg.limits.messageTimeout > 0 {
		c.msgWatching = true
		if c.br.onWait == nil {
			// Bound here, not in newConn: a served Conn never watches
			// from its loop, and the method value costs 16 bytes.
			c.br.onWait = c.waitingForPeer
		}
		c.br.watchWait = true
		if c.msgTimed {
			c.renewMessageDeadline()
		}
	}
}

// endMessageWatch ends the call's watch; the deadline stays for the next
// call of the same message.
func (c *Conn) endMessageWatch() {
	c.msgWatching = false
	c.br.watchWait = false
}

// waitingForPeer is called by the read buffer before it waits for the
// network during a call that began a message watch.
func (c *Conn) waitingForPeer() {
	if !c.msgActive && c.br.Buffered() == 0 {
		if c.msgTimed {
			c.clearMessageDeadline() // a control frame came whole at last
		}
		return // between messages: idle, not slow
	}
	c.br.watchWait = false
	if !c.msgTimed {
		c.setMessageDeadline(time.Now())
	}
}

func (c *Conn) renewMessageDeadline() {
	now := time.Now()
	if c.msgDeadline.Sub(now) < c.cfg.limits.messageTimeout/4*3 {
		c.setMessageDeadline(now)
	}
}

func (c *Conn) setMessageDeadline(now time.Time) {
	c.msgTimed = true
	c.msgDeadline = now.Add(c.cfg.limits.messageTimeout)
	c.setReadDeadlineUnlessCancelled(c.msgDeadline)
}

// clearMessageDeadline is called when the message ends. Outside a watched
// call the deadline is someone else's (the close handshake's) and stays.
func (c *Conn) clearMessageDeadline() {
	c.msgTimed = false
	if c.msgWatching && c.readErr == nil {
		c.setReadDeadlineUnlessCancelled(time.Time{})
	}
}

// setReadDeadlineUnlessCancelled sets the read deadline unless the watched
// context has ended, whose deadline in the past must stay.
func (c *Conn) setReadDeadlineUnlessCancelled(t time.Time) {
	ws := c.watches.Load()
	if ws == nil {
		c.netConn.SetReadDeadline(t) // no context was ever watched
		return
	}
	w := &ws.read
	w.mu.Lock()
	if w.ctx == nil || w.ctx.Err() == nil {
		c.netConn.SetReadDeadline(t)
	}
	w.mu.Unlock()
}

// messageTimedOut reports whether err is the message deadline passing, and
// returns the error to fail the connection with.
func (c *Conn) messageTimedOut(err error) (*ProtocolError, bool) {
	if !c.msgTimed || !isTimeout(err) || time.Now().Before(c.msgDeadline) {
		return nil, false
	}
	return &ProtocolError{
		Code:   StatusPolicyViolation,
		Reason: "message not completed within " + c.cfg.limits.messageTimeout.String(),
		err:    ErrMessageTimeout,
	}, true
}
