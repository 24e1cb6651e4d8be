package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/duplexws/duplex/internal/ratelimit"
)

func ExampleBucket() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Two messages a second, in bursts of up to three.
	b := ratelimit.NewBucket(2, 3, start)
	for _, at := range []time.Duration{0, 0, 0, 0, 400 * time.Millisecond, 500 * time.Millisecond} {
		fmt.Println(at, b.Allow(start.Add(at)))
	}
	// Output:
	// 0s true
	// 0s true
	// 0s true
	// 0s false
	// 400ms false
	// 500ms true
}
