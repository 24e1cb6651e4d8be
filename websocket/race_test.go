package websocket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
	"time"
)

// The race test: on both ends at once, several goroutines write messages,
// half with Write and half with a Writer in pieces, while one goroutine
// reads and another pings in a loop. The readers check that every message
// arrives whole and uncorrupted and that each writer's messages keep their
// order. Then both ends are closed from several goroutines at once. Run it
// with -race.

const (
	raceWriters  = 8
	raceMessages = 200 // per writer
)

// raceMessage encodes message seq of writer id: id, seq, payload, and the
// first 8 bytes of the SHA-256 of all that.
func raceMessage(id, seq int) []byte {
	size := (id*7919 + seq*104729) % 5000
	b := make([]byte, 0, 5+size+8)
	b = append(b, byte(id))
	b = binary.LittleEndian.AppendUint32(b, uint32(seq))
	b = append(b, pattern(id<<16|seq, size)...)
	sum := sha256.Sum256(b)
	return append(b, sum[:8]...)
}

// checkRaceMessage verifies msg and returns its writer and sequence number.
func checkRaceMessage(msg []byte) (id, seq int, ok bool) {
	if len(msg) < 5+8 {
		return 0, 0, false
	}
	body, sum := msg[:len(msg)-8], msg[len(msg)-8:]
	want := sha256.Sum256(body)
	if !bytes.Equal(sum, want[:8]) {
		return 0, 0, false
	}
	id, seq = int(body[0]), int(binary.LittleEndian.Uint32(body[1:5]))
	return id, seq, id < raceWriters && bytes.Equal(msg, raceMessage(id, seq))
}

func TestRace(t *testing.T) {
	opts := &sideOptions{WriteBufferSize: 1024, ReadBufferSize: 512}
	client, server := newSides(t, true, opts, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	var wg sync.WaitGroup // every goroutine of the test
	stopPings := make(chan struct{})
	allRead := make(chan struct{}, 2)

	for _, c := range []*Conn{client, server} {
		// Writers.
		for id := range raceWriters {
			wg.Go(func() {
				for seq := range raceMessages {
					msg := raceMessage(id, seq)
					if id%2 == 0 {
						if err := c.Write(ctx, MessageBinary, msg); err != nil {
							t.Errorf("writer %d: Write: %v", id, err)
							return
						}
						continue
					}
					w, err := c.Writer(ctx, MessageBinary)
					if err != nil {
						t.Errorf("writer %d: Writer: %v", id, err)
						return
					}
					for rest, step := msg, 1+seq%700; len(rest) > 0; {
						n := min(step, len(rest))
						if _, err := w.Write(rest[:n]); err != nil {
							t.Errorf("writer %d: Writer.Write: %v", id, err)
						}
						rest = rest[n:]
					}
					if err := w.Close(); err != nil {
						t.Errorf("writer %d: Writer.Close: %v", id, err)
						return
					}
				}
			})
		}
		// The reader checks what the other end's writers send, then reads
		// on, for the pongs, until the connection ends.
		wg.Go(func() {
			next := make([]int, raceWriters)
			for total := 0; ; {
				_, msg, err := c.Read(ctx)
				if err != nil {
					if total < raceWriters*raceMessages {
						t.Errorf("Read after %d messages: %v", total, err)
					}
					return
				}
				id, seq, ok := checkRaceMessage(msg)
				if !ok {
					t.Errorf("message %d arrived corrupted (%d bytes)", total, len(msg))
					continue
				}
				if seq != next[id] {
					t.Errorf("writer %d: got message %d, want %d", id, seq, next[id])
				}
				next[id] = seq + 1
				if total++; total == raceWriters*raceMessages {
					allRead <- struct{}{}
				}
			}
		})
		// The pinger.
		wg.Go(func() {
			for {
				select {
				case <-stopPings:
					return
				default:
				}
				if err := c.Ping(ctx); err != nil {
					select {
					case <-stopPings: // a ping in flight as the closes began
					default:
						t.Errorf("Ping: %v", err)
					}
					return
				}
			}
		})
	}

	for range 2 {
		select {
		case <-allRead:
		case <-ctx.Done():
			t.Error("the messages did not all arrive")
		}
	}
	close(stopPings)

	// Close from all sides at once.
	start := make(chan struct{})
	for _, c := range []*Conn{client, server} {
		wg.Go(func() { <-start; c.Close(StatusNormalClosure, "done") })
		wg.Go(func() { <-start; c.Close(StatusGoingAway, "also done") })
		wg.Go(func() { <-start; c.CloseNow() })
	}
	close(start)
	wg.Wait()
	for _, c := range []*Conn{client, server} {
		if err := c.Write(context.Background(), MessageText, nil); err == nil {
			t.Error("Write after the closes succeeded")
		}
	}
}
