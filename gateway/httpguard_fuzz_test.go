package gateway

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzClientIP parses what a client can write into the client address
// header (X-Forwarded-For here) behind trusted proxies, from any peer,
// in one header line or two. The address per-IP limits count must be the
// peer's or one written in the header, the peer's when the peer is not a
// trusted proxy, and unchanged by anything the client puts to the left of
// what the proxies appended: a client that forges hops must not escape
// its limits nor lock out another address.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct{ peer, h1, h2, forged string }{
		{"10.0.0.2:4000", "203.0.113.9", "", "198.51.100.1"},
		{"10.0.0.2:4000", "203.0.113.9, 10.0.0.7", "", "1.2.3.4, 5.6.7.8"},
		{"10.0.0.2:4000", "203.0.113.9", "10.1.1.1, 10.0.0.3", "garbage"},
		{"10.0.0.2:4000", "10.9.9.9, 10.0.0.7", "", "203.0.113.9"},
		{"10.0.0.2:4000", "not-an-ip, 203.0.113.9", "", ""},
		{"10.0.0.2:4000", "2001:db8::1, ::ffff:10.0.0.4", "", "::1"},
		{"[::1]:4000", "[2001:db8::1]", "", ""},
		{"[::ffff:10.0.0.2]:4000", " 203.0.113.9 ,", "", ""},
		{"203.0.113.50:4000", "198.51.100.1", "", "127.0.0.1"},
		{"127.0.0.1:4000", "", "", "203.0.113.9"},
		{"pipe", "203.0.113.9", "", ""},
	} {
		f.Add(seed.peer, seed.h1, seed.h2, seed.forged)
	}
	s := &Server{cfg: Config{Limits: Limits{
		ClientIPHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("::1/128"),
		},
	}}}
	const header = "X-Forwarded-For"
	f.Fuzz(func(t *testing.T, peer, h1, h2, forged string) {
		request := func(values ...string) *http.Request {
			r := &http.Request{RemoteAddr: peer, Header: http.Header{}}
			for _, v := range values {
				if v != "" {
					r.Header.Add(header, v)
				}
			}
			return r
		}
		got := s.clientIP(request(h1, h2))
		ap, err := netip.ParseAddrPort(peer)
		if err != nil {
			return // net/http sets RemoteAddr to an ip:port; nothing to check otherwise
		}
		peerIP := ap.Addr().Unmap()
		ip, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("client address %q is not an address (peer %q, header %q %q)", got, peer, h1, h2)
		}
		if !s.trustedProxy(peerIP) {
			if ip != peerIP {
				t.Fatalf("untrusted peer %v: client address %v from its header %q %q", peerIP, ip, h1, h2)
			}
			return
		}
		var written []netip.Addr
		for _, v := range []string{h1, h2} {
			for item := range strings.SplitSeq(v, ",") {
				if a, err := netip.ParseAddr(strings.TrimSpace(item)); err == nil {
					written = append(written, a.Unmap())
				}
			}
		}
		if ip != peerIP && !slices.Contains(written, ip) {
			t.Fatalf("client address %v is neither the peer %v nor in the header %q %q", ip, peerIP, h1, h2)
		}
		// Hops forged to the left of the header, in a value of their own or
		// in the same line, change nothing once an untrusted hop was found.
		if s.trustedProxy(ip) || forged == "" {
			return
		}
		first := h1
		rest := h2
		if first == "" {
			first, rest = h2, ""
		}
		if first == "" {
			return
		}
		for _, r := range []*http.Request{request(forged, first, rest), request(forged+","+first, rest)} {
			if again := s.clientIP(r); again != got {
				t.Fatalf("forged hops %q moved the client address from %v to %v (header %q %q)", forged, got, again, h1, h2)
			}
		}
	})
}
