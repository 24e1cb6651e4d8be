package frame

// Stream checks each incoming frame header against the rules that depend on
// the connection (who masks, which reserved bits an extension allows) and on
// the frames before it (fragmentation, section 5.4). The zero value expects a
// new message.
type Stream struct {
	inMessage bool
	opcode    Opcode // the data opcode of the message in progress
}

// InMessage reports whether a fragmented message has started and not ended.
func (s *Stream) InMessage() bool { return s.inMessage }

// Check validates h. wantMasked is true on the server, which only accepts
// masked frames, and false on the client. allowedRSV holds the reserved bits
// a negotiated extension gives meaning to; they are only ever allowed on the
// first frame of a data message. On success Check advances the stream and
// returns the opcode of the message h belongs to (the data opcode for a
// continuation frame, the frame's own for control frames).
func (s *Stream) Check(h *Header, wantMasked bool, allowedRSV byte) (Opcode, error) {
	if !h.Opcode.Known() {
		return 0, ErrReservedOpcode
	}
	if h.Masked != wantMasked {
		if wantMasked {
			return 0, ErrUnmasked
		}
		return 0, ErrMasked
	}
	if h.Opcode.IsControl() {
		switch {
		case h.RSV != 0:
			return 0, ErrReservedBits
		case !h.Fin:
			return 0, ErrFragmentedControl
		case h.Length > MaxControlPayload:
			return 0, ErrControlTooLong
		}
		return h.Opcode, nil
	}
	if h.Opcode == OpContinuation {
		if !s.inMessage {
			return 0, ErrContinuation
		}
		if h.RSV != 0 {
			return 0, ErrReservedBits
		}
	} else {
		if s.inMessage {
			return 0, ErrUnfinishedMessage
		}
		if h.RSV&^allowedRSV != 0 {
			return 0, ErrReservedBits
		}
		s.opcode = h.Opcode
	}
	s.inMessage = !h.Fin
	return s.opcode, nil
}
