package nats

// Links let History find where to start reading a channel without
// reading the whole of it. The stream numbers its messages across all
// channels, so a channel's offset says nothing of its stream sequence; but
// each message records the stream sequences of a few earlier messages of
// its channel, and a read starts at the one closest below the first offset
// it wants.
//
// For level k (spacing 4^k), the message at offset n records the
// sequences of the latest and the one-before-latest messages whose offsets
// are multiples of 4^k below n. Both follow from the previous message
// alone, so the publisher, which reads the previous message for its offset
// anyway, computes them. A read of offsets f to n starts at the largest
// recorded offset ≤ f: with two per level, it reads fewer than four times
// the messages it wants (for a read that ends before n, four times n-f),
// and beyond the top level what the channel keeps past its HistorySize.
// Below the links, epochStart bounds the epoch: every message of the
// subject from that sequence on belongs to it.
type links struct {
	epochStart uint64
	// levels[k] holds the sequences of the latest and the previous
	// multiples of 4^k; 0 when there is none (stream sequences start at
	// 1).
	levels [linkLevels][2]uint64
}

// linkLevels covers spacings 1 to 4^6 = 4096; below that, epochStart (and
// the trimming of each channel to about its HistorySize) bounds a read.
const linkLevels = 7

func spacing(k int) uint64 { return 1 << (2 * k) }

// firstLinks are the links of an epoch's first message, which follows the
// message at stream sequence prev (0: the subject held none).
func firstLinks(prev uint64) links { return links{epochStart: prev + 1} }

// next returns the links of the message at offset n+1, which follows this
// message, at offset n and stream sequence seq, in the same epoch.
func (l links) next(n, seq uint64) links {
	out := l
	for k := range out.levels {
		if n%spacing(k) == 0 {
			out.levels[k] = [2]uint64{seq, l.levels[k][0]}
		}
	}
	return out
}

// start returns the stream sequence to read from, and the offset of the
// message there, for the message at offset n with these links to find
// offset first (1 ≤ first < n). Offset 0 stands for epochStart, before
// the epoch's first message.
func (l links) start(n, first uint64) (seq, offset uint64) {
	seq = l.epochStart
	for k := range l.levels {
		s := spacing(k)
		latest := (n - 1) / s * s // the latest multiple of s below n
		for i, off := range [2]uint64{latest, latest - s} {
			if off == 0 || off > latest || off > first || off <= offset {
				continue // none (or wrapped below 0), too late, or no better
			}
			if p := l.levels[k][i]; p != 0 {
				seq, offset = p, off
			}
		}
	}
	return seq, offset
}
