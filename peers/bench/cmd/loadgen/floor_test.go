package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/floor"
)

// TestFloorSection puts each target against the floor: below it when the
// best peer's CPU divided by the lead asked for is less than the system
// calls alone cost, above it otherwise, and no target where the issue sets
// none.
func TestFloorSection(t *testing.T) {
	at := func(kind, label string, conns, size int, cpu map[string]float64) *point {
		p := &point{kind: kind, label: label, conns: conns, size: size, results: map[string]*result{}}
		for lib, v := range cpu {
			p.result(lib).Reps = []measurement{{metricServerCPU: v}}
		}
		return p
	}
	rep := &report{
		libNames: []string{"duplex", "gws"},
		points: []*point{
			at(caseEcho, "1,000 conns × 16 B", 1000, 16, map[string]float64{"duplex": 15, "gws": 14}),      // target 11.2 µs
			at(caseEcho, "64 conns × 16 B", 64, 16, map[string]float64{"duplex": 15, "gws": 14}),           // no target
			at(caseBroadcast, "10,000 subscribers", 10000, 0, map[string]float64{"duplex": 12, "gws": 13}), // target 10 µs
		},
		floors: map[floorKey]floor.Floor{
			{16, 1000}:            {Write: 8 * time.Microsecond, Read: 4 * time.Microsecond}, // 12 µs an echo
			{16, 64}:              {Write: 7 * time.Microsecond, Read: 4 * time.Microsecond},
			{broadcastSize, 1000}: {Write: 7 * time.Microsecond, Read: 4 * time.Microsecond}, // 7 µs a delivery
		},
	}
	var b bytes.Buffer
	rep.floorSection(&b)
	lines := strings.Split(b.String(), "\n")
	row := func(label string) string {
		for _, l := range lines {
			if strings.Contains(l, label) {
				return l
			}
		}
		t.Fatalf("no row for %s in\n%s", label, b.String())
		return ""
	}
	if r := row("echo 1,000 conns × 16 B"); !strings.Contains(r, "| 12.00 |") || !strings.Contains(r, "11.20 (1.25×)") || !strings.Contains(r, "**below the floor** by 7%") {
		t.Errorf("echo at 1,000: %s", r)
	}
	if r := row("echo 64 conns × 16 B"); !strings.Contains(r, "| 11.00 |") || !strings.Contains(r, "| – |") || strings.Contains(r, "floor**") {
		t.Errorf("echo at 64: %s", r)
	}
	if r := row("broadcast 10,000 subscribers"); !strings.Contains(r, "| 7.00 |") || !strings.Contains(r, "10.00 (1.3×)") || !strings.Contains(r, "43% above the floor") {
		t.Errorf("broadcast: %s", r)
	}
}
