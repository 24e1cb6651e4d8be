// Package abuse holds the abuse suite of issue 12: tests that build the
// duplex binary, start `duplex serve` and `duplex echo` as processes of
// their own, attack them from loopback as a hostile client would, and
// check that each attack is refused with the right close code or HTTP
// status, that the server's memory stays bounded during it and comes back
// near its baseline after, and that a healthy client's round-trip p99
// stays within three times its value before the attack (at least 50 ms
// above it). The healthy client runs in a process of its own; as root,
// it and the server run at a higher CPU priority than the test process
// that attacks, as an attacker on another machine would not take their
// CPU (see prioritized).
//
// The tests run only when DUPLEX_ABUSE is set: "short" (make abuse-short,
// part of make test) runs every case with small counts in about a minute;
// "full" (make abuse) at the sizes of the issue in a few minutes. Every
// attack targets 127.0.0.1, is bounded in count and time, and stops by
// itself.
package abuse
