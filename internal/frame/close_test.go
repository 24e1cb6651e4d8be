package frame

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// validCodeReference spells out section 7.4 as this package applies it.
func validCodeReference(code int) bool {
	return code >= 1000 && code <= 1003 ||
		code >= 1007 && code <= 1011 ||
		code >= 3000 && code <= 4999
}

func TestValidCloseCode(t *testing.T) {
	for code := 0; code <= 0xffff; code++ {
		if got, want := ValidCloseCode(uint16(code)), validCodeReference(code); got != want {
			t.Errorf("ValidCloseCode(%d) = %v, want %v", code, got, want)
		}
	}
	// The edges Autobahn 7.7 and 7.9 probe, spelt out.
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		if ValidCloseCode(code) {
			t.Errorf("ValidCloseCode(%d) = true", code)
		}
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		if !ValidCloseCode(code) {
			t.Errorf("ValidCloseCode(%d) = false", code)
		}
	}
}

func TestParseClosePayloadCodes(t *testing.T) {
	for code := 0; code < 6000; code++ {
		p := []byte{byte(code >> 8), byte(code), 'o', 'k'}
		got, reason, err := ParseClosePayload(p)
		if validCodeReference(code) {
			if err != nil || got != uint16(code) || string(reason) != "ok" {
				t.Fatalf("code %d: got %d, %q, %v", code, got, reason, err)
			}
		} else if err != ErrCloseCode {
			t.Fatalf("code %d: err %v, want %v", code, err, ErrCloseCode)
		}
	}
}

func TestParseClosePayload(t *testing.T) {
	tests := []struct {
		name       string
		payload    []byte
		wantCode   uint16
		wantReason string
		wantErr    error
	}{
		{"empty", nil, CodeNoStatus, "", nil},
		{"one byte", []byte{0x03}, 0, "", ErrClosePayloadLength},
		{"code only", []byte{0x03, 0xe8}, 1000, "", nil},
		{"code and reason", []byte("\x03\xe8bye"), 1000, "bye", nil},
		{"UTF-8 reason", []byte("\x0f\xa0κόσμε"), 4000, "κόσμε", nil},
		{"longest reason", append([]byte{0x03, 0xe9}, strings.Repeat("r", MaxCloseReason)...), 1001, strings.Repeat("r", MaxCloseReason), nil},
		{"no status sent on the wire", []byte{0x03, 0xed}, 0, "", ErrCloseCode},
		{"abnormal closure sent on the wire", []byte{0x03, 0xee}, 0, "", ErrCloseCode},
		{"invalid reason", []byte("\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 0, "", ErrCloseReasonUTF8},
		{"truncated reason", []byte("\x03\xe8ab\xe2\x82"), 0, "", ErrCloseReasonUTF8},
		{"invalid code checked before reason", []byte("\x00\x00\xff"), 0, "", ErrCloseCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, err := ParseClosePayload(tt.payload)
			if err != tt.wantErr {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if code != tt.wantCode || string(reason) != tt.wantReason {
				t.Fatalf("got %d %q, want %d %q", code, reason, tt.wantCode, tt.wantReason)
			}
		})
	}
}

// Section 7.4.1: invalid UTF-8 fails the connection with 1007, every other
// close payload problem with 1002.
func TestCloseErrorCodes(t *testing.T) {
	tests := []struct {
		err  error
		code uint16
	}{
		{ErrCloseReasonUTF8, CodeInvalidData},
		{ErrInvalidUTF8, CodeInvalidData},
		{ErrCloseCode, CodeProtocolError},
		{ErrClosePayloadLength, CodeProtocolError},
	}
	for _, tt := range tests {
		var e *Error
		if !errors.As(tt.err, &e) || e.Code != tt.code {
			t.Errorf("%v: want *Error with code %d", tt.err, tt.code)
		}
	}
}

func TestAppendClosePayloadRoundTrip(t *testing.T) {
	reasons := []string{"", "bye", "κόσμε", strings.Repeat("x", MaxCloseReason)}
	for code := 0; code < 6000; code++ {
		if !ValidCloseCode(uint16(code)) {
			continue
		}
		for _, reason := range reasons {
			p := AppendClosePayload(nil, uint16(code), reason)
			if len(p) != 2+len(reason) {
				t.Fatalf("code %d, reason %q: payload of %d bytes", code, reason, len(p))
			}
			gotCode, gotReason, err := ParseClosePayload(p)
			if err != nil || gotCode != uint16(code) || string(gotReason) != reason {
				t.Fatalf("code %d, reason %q: parsed %d %q %v", code, reason, gotCode, gotReason, err)
			}
		}
	}
	// CodeNoStatus is never sent: it encodes as nothing and parses back.
	p := AppendClosePayload([]byte("x"), CodeNoStatus, "ignored")
	if string(p) != "x" {
		t.Fatalf("CodeNoStatus appended %q", p[1:])
	}
	if code, _, err := ParseClosePayload(p[1:]); code != CodeNoStatus || err != nil {
		t.Fatalf("empty payload parsed as %d, %v", code, err)
	}
}

func TestAppendClosePayloadBytes(t *testing.T) {
	got := AppendClosePayload([]byte{0xaa}, 1002, "proto")
	if want := []byte("\xaa\x03\xeaproto"); !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}
