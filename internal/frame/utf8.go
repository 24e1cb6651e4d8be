package frame

import "unicode/utf8"

// UTF8 validates UTF-8 incrementally: a text message can be checked fragment
// by fragment, as its bytes arrive, and an invalid sequence is reported at the
// first byte that makes it invalid, even when the sequence is not complete
// (section 8.1, and Autobahn's "fail fast" cases). The zero value is ready.
type UTF8 struct {
	state utf8State
}

type utf8State uint8

// The states are named after what the next byte must be.
const (
	utf8Accept  utf8State = iota // a lead byte, or the end of the text
	utf8Cont1                    // 1 continuation byte (80..BF) to go
	utf8Cont2                    // 2 continuation bytes to go
	utf8Cont3                    // 3 continuation bytes to go
	utf8AfterE0                  // A0..BF, then 1 more (no overlong 3-byte forms)
	utf8AfterED                  // 80..9F, then 1 more (no surrogates)
	utf8AfterF0                  // 90..BF, then 2 more (no overlong 4-byte forms)
	utf8AfterF4                  // 80..8F, then 2 more (nothing above U+10FFFF)
	utf8Reject
)

// Write feeds p to the validator and reports whether the text so far can
// still be the prefix of valid UTF-8. Once it returns false it keeps
// returning false.
func (v *UTF8) Write(p []byte) bool {
	// Finish a sequence left open by the previous piece one byte at a time.
	for len(p) > 0 && v.state != utf8Accept {
		if v.state == utf8Reject {
			return false
		}
		v.state = step(v.state, p[0])
		p = p[1:]
	}
	if v.state == utf8Reject {
		return false
	}
	// The middle goes to the standard library's validator, which is fast
	// on ASCII; a sequence cut by the end of p goes through the state machine.
	tail := incompleteTail(p)
	if !utf8.Valid(p[:len(p)-tail]) {
		v.state = utf8Reject
		return false
	}
	for _, c := range p[len(p)-tail:] {
		v.state = step(v.state, c)
	}
	return v.state != utf8Reject
}

// Complete reports whether the text fed so far is valid and does not end
// inside a sequence.
func (v *UTF8) Complete() bool { return v.state == utf8Accept }

// Reset readies the validator for a new text.
func (v *UTF8) Reset() { v.state = utf8Accept }

// incompleteTail returns how many bytes at the end of p form the beginning
// of a multi-byte sequence that p cuts short, or 0.
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		c := p[i]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a lead byte: how long its sequence should be
			need := 2
			if c >= 0xF0 {
				need = 4
			} else if c >= 0xE0 {
				need = 3
			}
			if len(p)-i < need {
				return len(p) - i
			}
			return 0
		}
	}
	return 0
}

func step(s utf8State, c byte) utf8State {
	switch s {
	case utf8Accept:
		switch {
		case c < 0x80:
			return utf8Accept
		case c < 0xC2: // continuation byte, or overlong 2-byte lead
			return utf8Reject
		case c < 0xE0:
			return utf8Cont1
		case c == 0xE0:
			return utf8AfterE0
		case c == 0xED:
			return utf8AfterED
		case c < 0xF0:
			return utf8Cont2
		case c == 0xF0:
			return utf8AfterF0
		case c < 0xF4:
			return utf8Cont3
		case c == 0xF4:
			return utf8AfterF4
		}
		return utf8Reject
	case utf8Cont1, utf8Cont2, utf8Cont3:
		if c&0xC0 != 0x80 {
			return utf8Reject
		}
		return s - 1
	case utf8AfterE0:
		if c < 0xA0 || c > 0xBF {
			return utf8Reject
		}
		return utf8Cont1
	case utf8AfterED:
		if c < 0x80 || c > 0x9F {
			return utf8Reject
		}
		return utf8Cont1
	case utf8AfterF0:
		if c < 0x90 || c > 0xBF {
			return utf8Reject
		}
		return utf8Cont2
	case utf8AfterF4:
		if c < 0x80 || c > 0x8F {
			return utf8Reject
		}
		return utf8Cont2
	}
	return utf8Reject
}
