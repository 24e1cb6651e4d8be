package websocket

import (
	"sync"

	"github.com/duplexws/duplex/internal/deflate"
)

// CompressionMode selects permessage-deflate (RFC 7692).
type CompressionMode int

const (
	// CompressionDisabled negotiates no compression. The default.
	CompressionDisabled CompressionMode = iota

	// CompressionNoContextTakeover compresses every message on its own,
	// in both directions. A connection keeps no compression memory between
	// messages: compressors and inflaters come from pools that all
	// connections share, and an idle connection holds 256 bytes of
	// compression state (measured by BenchmarkCompressionMemory).
	// Broadcasts with WritePrepared are compressed once for all connections
	// of this mode and window. Messages that resemble each other compress
	// no better than alone.
	CompressionNoContextTakeover

	// CompressionContextTakeover lets each message refer back to the ones
	// before it, in both directions, which compresses streams of similar
	// messages (JSON events, say) far better. Each connection then keeps
	// windows between messages: the history of what it sent
	// (CompressionOptions.History, 4 KiB by default) and the window of
	// what it received (2^ClientMaxWindowBits on a server, 32 KiB at 15).
	// An idle server connection holds 37,120 bytes (36.25 KiB) of
	// compression state with the defaults, 2,304 bytes with 10-bit windows
	// (measured by BenchmarkCompressionMemory, at 10,000 connections); the
	// compressors and inflaters themselves are shared. Prepared messages
	// are compressed per connection.
	CompressionContextTakeover
)

// CompressionOptions configures permessage-deflate. The zero value disables
// it.
type CompressionOptions struct {
	// Mode is whether to compress and with or without context takeover.
	// Default: CompressionDisabled.
	Mode CompressionMode

	// Level is a compress/flate level from 1 (fastest) to 9 (smallest).
	// Default: 1, since a busy server pays CPU for every message.
	Level int

	// Threshold is the size under which a message goes uncompressed:
	// compressing a few bytes costs more than it saves. A Writer holds the
	// start of a message until it reaches the threshold (or the write
	// buffer's size, if that is smaller), and sends it uncompressed if it
	// is closed before. Default: 128 bytes; a negative value compresses
	// all.
	Threshold int

	// ServerMaxWindowBits (8 to 15) caps the window the server compresses
	// with. On a server it is the largest it agrees to; on a client, what it
	// asks the server for. Default: 15, or on a client not asked. An 8-bit
	// window is honoured exactly (256 bytes), which zlib-based peers cannot
	// do; they commonly use 9 instead and may decline an offer of 8.
	ServerMaxWindowBits int

	// ClientMaxWindowBits (8 to 15) caps the window the client compresses
	// with, which is the window the server keeps to inflate the client's
	// messages: 2^bits bytes per connection with context takeover. A server
	// can only set it for clients that offer client_max_window_bits (all
	// browsers do). Default: 15.
	ClientMaxWindowBits int

	// History is how much of its past messages an endpoint keeps to refer
	// back to with context takeover, at most the window. More finds more
	// matches, but costs that much memory per connection, and priming the
	// shared compressor with it costs time on every message: with 16 KiB,
	// that is most of the cost of compressing a small message. Measured on
	// 200-byte JSON events, 1 KiB of history already compresses to 34% where
	// 16 KiB reaches 33%. Default: 4 KiB.
	History int
}

// DefaultCompressionHistory is CompressionOptions.History's default.
const DefaultCompressionHistory = 4 << 10

// DefaultCompressionThreshold is CompressionOptions.Threshold's default.
const DefaultCompressionThreshold = 128

// Uncompressed marks a message type so that Write, Writer and
// NewPreparedMessage send the message without compression: for data that
// does not compress (images, encrypted payloads) or that must not be
// compressed together with data an attacker chooses, lest message sizes
// reveal a secret (the CRIME and BREACH attacks).
func Uncompressed(typ MessageType) MessageType { return typ | uncompressedFlag }

const uncompressedFlag MessageType = 1 << 8

// splitType separates a message type from the Uncompressed mark.
func splitType(typ MessageType) (MessageType, bool) {
	return typ &^ uncompressedFlag, typ&uncompressedFlag != 0
}

// compression is the per-connection state of an agreed permessage-deflate.
type compression struct {
	params    deflate.Params
	threshold int
	out       *deflate.Compressor
	in        *deflate.Decompressor
	outBits   int
	level     int
	shared    bool // no context takeover outward: output can be shared by connections
}

func newCompression(p deflate.Params, server bool, opts *CompressionOptions) *compression {
	outBits, outNoCtx := p.Outgoing(server)
	inBits, inNoCtx := p.Incoming(server)
	history := opts.History
	if history == 0 {
		history = DefaultCompressionHistory
	}
	threshold := opts.Threshold
	if threshold == 0 {
		threshold = DefaultCompressionThreshold
	}
	return &compression{
		params:    p,
		threshold: threshold,
		out: deflate.NewCompressor(deflate.CompressorConfig{
			WindowBits: outBits, NoContextTakeover: outNoCtx, Level: opts.Level, History: history,
		}),
		in:      deflate.NewDecompressor(deflate.DecompressorConfig{WindowBits: inBits, NoContextTakeover: inNoCtx}),
		outBits: outBits,
		level:   opts.Level,
		shared:  outNoCtx,
	}
}

func serverConfig(opts *CompressionOptions) deflate.ServerConfig {
	return deflate.ServerConfig{
		NoContextTakeover:       opts.Mode == CompressionNoContextTakeover,
		ClientNoContextTakeover: opts.Mode == CompressionNoContextTakeover,
		ServerMaxWindowBits:     opts.ServerMaxWindowBits,
		ClientMaxWindowBits:     opts.ClientMaxWindowBits,
	}
}

func clientConfig(opts *CompressionOptions) deflate.ClientConfig {
	return deflate.ClientConfig{
		NoContextTakeover:       opts.Mode == CompressionNoContextTakeover,
		ServerNoContextTakeover: opts.Mode == CompressionNoContextTakeover,
		ClientMaxWindowBits:     opts.ClientMaxWindowBits,
		ServerMaxWindowBits:     opts.ServerMaxWindowBits,
	}
}

// compressBuffers holds the buffers compressed payloads are built in
// between writes.
var compressBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
