package proxy

import (
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeReply: whatever a backend answers, decoding it never panics,
// and ends in exactly one of: a result, the backend's *Error with a code,
// its *Disconnect with a code and reason that fit a close frame, or
// ErrBadReply.
func FuzzDecodeReply(f *testing.F) {
	for _, s := range []string{
		`{"result":{"user":"56","expire_at":1900000000,"info":{"a":1},"channels":["x"]}}`,
		`{"result":{"expired":true}}`,
		`{"result":{"data":{"x":[1,2]},"skip_history":true}}`,
		`{"error":{"code":403,"message":"no"}}`,
		`{"disconnect":{"code":4501,"reason":"banned"}}`,
		`{"result":null,"error":null}`,
		`{"result":"x"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, res := range []any{&ConnectResult{}, &RefreshResult{}, &SubscribeResult{}, &PublishResult{}, &RPCResult{}} {
			err := decodeReply(body, res)
			var refused *Error
			var disc *Disconnect
			switch {
			case err == nil, errors.Is(err, ErrBadReply):
			case errors.As(err, &refused):
				if refused.Code == 0 || !utf8.ValidString(refused.Message) {
					t.Fatalf("%q: error %+v passed", body, refused)
				}
			case errors.As(err, &disc):
				if disc.Code < 3000 || disc.Code > 4999 || len(disc.Reason) > 123 || !utf8.ValidString(disc.Reason) {
					t.Fatalf("%q: disconnect %+v passed", body, disc)
				}
			default:
				t.Fatalf("%q: unexpected error %v", body, err)
			}
		}
	})
}
