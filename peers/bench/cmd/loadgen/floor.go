package main

import (
	"bytes"
	"fmt"
	"math"

	"github.com/duplexws/duplex/internal/floor"
	"github.com/duplexws/duplex/internal/frame"
)

// The floor of an operation (internal/floor): what the kernel alone
// charges a server on this machine for an echoed message (the read of the
// client's frame and the write of the echo) or a broadcast delivery (the
// write), measured before any server runs. No server's CPU per operation
// can go below it, so a target below it is one this machine cannot show.

// floorKey says which floor an operation needs: its payload size, and how
// many socket pairs to spread the frames over (as many as the point's
// connections, up to 1,000: moving frames through more sockets costs more,
// as their state leaves the caches, so fewer pairs err low).
type floorKey struct{ size, pairs int }

func floorKeyOf(p *point) floorKey {
	size := p.size
	if p.kind == caseBroadcast {
		size = broadcastSize
	}
	return floorKey{size: size, pairs: min(p.conns, 1000)}
}

// measureFloors measures the floor of each echo and broadcast point, for a
// frame from the server (the smaller of the two directions'; a floor errs
// low, and a 64 KiB payload is measured at floor.MaxSize), keeping the
// cheapest of at least 30 rounds and 30,000 frames.
func measureFloors(points []*point) (map[floorKey]floor.Floor, error) {
	floors := make(map[floorKey]floor.Floor)
	for _, p := range points {
		k := floorKeyOf(p)
		if _, done := floors[k]; done || (p.kind != caseEcho && p.kind != caseBroadcast) || k.pairs < 1 {
			continue
		}
		h := frame.Header{Length: int64(k.size)} // the server's: unmasked
		f, err := floor.Measure(k.pairs, max(30, 30000/k.pairs), min(h.Size()+k.size, floor.MaxSize))
		if err != nil {
			return nil, err
		}
		floors[k] = f
	}
	return floors, nil
}

// issueTarget is the lead over the best peer's server CPU per operation
// that issue 14 asks for at p, or 0 where it sets none.
func issueTarget(p *point) float64 {
	switch {
	case p.kind == caseEcho && p.size >= 64<<10:
		return 1.2
	case p.kind == caseEcho && p.conns >= 1000:
		return 1.25
	case p.kind == caseBroadcast && p.conns >= 10000:
		return 1.3
	}
	return 0
}

// floorSection writes the floor beside the servers' CPU per operation.
func (rep *report) floorSection(b *bytes.Buffer) {
	var ps []*point
	for _, p := range rep.points {
		if _, ok := rep.floors[floorKeyOf(p)]; ok && (p.kind == caseEcho || p.kind == caseBroadcast) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(b, "## The floor\n\n")
	fmt.Fprintf(b, "Before any server ran, `internal/floor` timed (thread CPU time, the cheapest of at least 30 rounds on each of three sets of as many loopback socket pairs as the case has connections, up to 1,000) what the kernel alone charges to move one frame of each size: a blocking write(2) on one socket and a read(2) on its peer, with nothing else around them. ")
	fmt.Fprintf(b, "An echoed message costs a server at least a read and a write, a broadcast delivery at least a write; no library can go below that here. ")
	fmt.Fprintf(b, "Where issue 14 asks Duplex for a lead over the best peer, the target column is the best peer's CPU per operation divided by that lead; below the floor, it cannot be met on this machine by any server that makes those system calls.\n\n")
	fmt.Fprintf(b, "| Case | floor (µs per operation) | duplex | best peer | best peer ÷ floor | issue 14's target | |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, p := range ps {
		f := rep.floors[floorKeyOf(p)]
		least := f.Delivery()
		if p.kind == caseBroadcast {
			least = f.Write
		}
		d, peer := viewCPU.value(p, "duplex"), rep.best(p, viewCPU, "duplex")
		fl := micros(least)
		target, verdict := "–", ""
		if lead := issueTarget(p); lead > 0 && !math.IsNaN(peer) {
			t := peer / lead
			target = fmt.Sprintf("%s (%g×)", formatCPU(t), lead)
			verdict = fmt.Sprintf("%.0f%% above the floor", 100*(t/fl-1))
			if t < fl {
				verdict = fmt.Sprintf("**below the floor** by %.0f%%", 100*(1-t/fl))
			}
		}
		peerCol, ratio := "–", "–" // no peer in the run
		if !math.IsNaN(peer) {
			peerCol, ratio = formatCPU(peer), fmt.Sprintf("%.2f", peer/fl)
		}
		fmt.Fprintf(b, "| %s %s | %s | %s | %s | %s | %s | %s |\n", p.kind, p.label, formatCPU(fl), formatCPU(d), peerCol, ratio, target, verdict)
	}
	b.WriteString("\n")
}
