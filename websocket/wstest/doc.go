// Package wstest helps test code that uses package websocket.
//
// Pipe connects a client and a server Conn in memory, through the real
// Accept and Dial: the handshake, the framing and the closing handshake
// are the ones a TCP connection gets, without a port or the kernel in the
// way. NewConnPair is the network connection under it, buffered in both
// directions so that both ends may write, or close, at the same time; use
// it wherever a test needs a net.Conn pair that behaves like TCP (net.Pipe
// does not buffer and deadlocks when both ends write at once).
//
// EchoServer is a loopback server that echoes every message back, for
// tests and benchmarks that need a peer; Echo is its loop, to put behind a
// handler of your own.
package wstest
