package nats

// Scanned returns how many messages b's reads of history and presence
// have read from the server so far.
func Scanned(b *Broker) uint64 { return b.scanned.Load() }

// TipsHeld returns how many channels' tips b holds.
func TipsHeld(b *Broker) int { return b.states.len() }

// TipReads returns how often b's Publish read a channel's tip from the
// server.
func TipReads(b *Broker) uint64 { return b.tipReads.Load() }

// PresenceWrites returns how many presence entries and heartbeats b wrote.
func PresenceWrites(b *Broker) uint64 { return b.local.writes.Load() }
