// Package conformance is the RFC 6455 and RFC 7692 conformance suite of
// Duplex. It holds no code of its own: everything is in its tests, which
// speak raw bytes over TCP loopback to the websocket package, in both roles.
//
// Run it with
//
//	go test ./conformance/
//	make conformance            # the same, with -race and -v
//	go test ./conformance/ -run 'TestUTF8/6.4'   # one family
//
// # Layout
//
//   - wire_test.go: the raw peer's frame codec, written from RFC 6455 alone
//     (it shares no code with internal/frame) and able to write illegal
//     frames: reserved bits and opcodes, non-minimal lengths, a 64-bit
//     length with its top bit set, wrong masking, long or fragmented control
//     frames, headers announcing more than is sent; and the delivery modes.
//   - harness_test.go: the table runner and the endpoints under test.
//     Against our server, the raw peer is a client that does its own
//     handshake (httptest server, handler Accept + echo). Against our
//     client, it is a server that answers Dial's handshake itself. The
//     library's end echoes every message (Read, then Write of the same type)
//     until an error, which the cases check: a *websocket.ProtocolError with
//     the close code the library sent, or a *websocket.CloseError with the
//     peer's. Our server echoes in each of the library's three ways to
//     serve (issue 14): "read", a goroutine looping Read and Write; "await",
//     Conn.Await, then Read and Write in its callback; "serve", Conn.Serve,
//     whose onMessage writes the echo (on Linux over HTTP/1.1 the
//     connection waits in Serve's epoll sets).
//   - peer_test.go: the raw peer, which sends in the run's delivery mode and
//     checks what comes back: exact frames, close codes, who closes TCP.
//   - rawhttp_test.go: the raw side of the opening handshake.
//   - deflate_wire_test.go: the raw peer's permessage-deflate, which shares
//     no code with internal/deflate: compress/flate compresses and inflates
//     with 32 KiB windows; a small LZ77 encoder of its own compresses within
//     smaller windows, and an inflater of its own checks that no
//     back-reference of the library reaches beyond the agreed window or,
//     without context takeover, into an earlier message.
//   - one file per section below, each a table of cases; compression_test.go
//     holds sections 12 and 13, whose runs negotiate permessage-deflate
//     first: the library's endpoint is configured with
//     websocket.CompressionOptions, and some cases have it echo through a
//     Writer or with WritePrepared.
//
// Every case runs in each role it applies to (the raw peer masks when it
// plays the client and not when it plays the server; masking cases are
// role-specific) and in three delivery modes: the raw peer's bytes go out
// whole, one byte per write, or in random-sized writes from an RNG seeded
// with the test's name, over sockets with TCP_NODELAY. Subtests are named
// case/role/delivery, such as "TestFraming/1.1.3_text_126_bytes/client/one-byte",
// and for our server case/role/serving/delivery, such as
// "TestUTF8/6.4.1_fail_fast:_invalid_second_fragment,_message_unfinished/server/serve/whole";
// the three serving modes of a run go in parallel. Over HTTP/2, where
// Await and Serve read in a goroutine as Read does, those two modes run
// with whole delivery only.
//
// Every case of runWireCases and runDeflateCases also runs over HTTP/2
// (h2_test.go, RFC 8441): the connection is a stream of an HTTP/2
// connection over TLS opened with extended CONNECT, which the raw side
// makes or checks itself with x/net's Framer and hpack; our client dials
// through internal/h2client. The raw peer's writes are DATA frames, one
// per write (one-byte delivery is one-byte DATA frames); END_STREAM stands
// for TCP's FIN and RST_STREAM for a reset. Those subtests are named
// case/role/[serving/]h2/delivery. A server that fails the connection ends its stream
// at once (net/http's handler returns; there is no half-close to linger
// on), and what the raw peer still sends is then dropped. The opening
// handshake of RFC 8441 has cases of its own (h2_handshake_test.go,
// numbered 10.h2.*), in both roles.
//
// Cases assert the exact bytes of frames (echoes, pongs, close frames) and
// the close code; every socket operation has a deadline, so no case hangs.
// One-byte delivery of a send over 128 KiB (the 1 MiB and 256 KiB cases)
// writes its first and last 32 KiB a byte at a time and the middle in 1 KiB
// writes, which keeps the run short and every frame boundary byte by byte.
// The random chunks are the same on every run; CONFORMANCE_SEED=<anything>
// in the environment draws others.
//
// # Sections covered
//
// Numbered after the Autobahn Testsuite where it has a family:
//
//	1   framing: text and binary of 0 to 1 MiB echoed in minimal single
//	    frames; non-minimal length encodings and the 64-bit top bit (RFC 5.2)
//	2   pings and pongs: payloads echoed, 126-byte and fragmented pings,
//	    unsolicited pongs, pings in a burst (RFC 5.5.2, 5.5.3)
//	3   reserved bits on every kind of frame, with no extension (RFC 5.2)
//	4   reserved opcodes, data and control (RFC 5.2)
//	5   fragmentation: messages in many and empty fragments, control frames
//	    between fragments answered at once, broken sequences (RFC 5.4)
//	6   UTF-8: valid texts split at every byte, invalid sequences, failing
//	    fast inside an unfinished message and an unfinished frame (RFC 8.1)
//	7   closing: codes valid and invalid, payload lengths, reasons, data
//	    after the close frame, who closes TCP first (RFC 5.5.1, 7)
//	8   limits: the default read limit enforced from the header (RFC 10.4)
//	9   masking: the rules of each role and the client's fresh keys (RFC 5.3)
//	10  the opening handshake of both roles (RFC 4)
//	12  permessage-deflate messages: text and binary of 16 bytes to
//	    128 KiB, compressible and not, several in a row with context
//	    takeover, in one frame or with the compressed payload fragmented,
//	    echoed in one frame, through a Writer or with WritePrepared; RSV1
//	    on first frames only; uncompressed messages between compressed
//	    ones; reserved bits where RFC 7692 gives them no meaning (1002),
//	    corrupt data and invalid UTF-8 (1007), decompression bombs against
//	    the read limit (1009), a final DEFLATE block ending a message early
//	    (RFC 7692 6, 7.2)
//	13  permessage-deflate parameters: the exact response of our server and
//	    offer of our client for context takeover and windows of 8 to 15 bits
//	    in every combination, several offers, invalid offers declined,
//	    responses our client must refuse; then messages both ways with
//	    back-references at exactly the agreed windows (RFC 7692 5, 7.1)
package conformance
