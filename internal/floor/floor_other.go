//go:build !linux

package floor

import "errors"

// Measure is implemented on Linux only.
func Measure(pairs, rounds, size int) (Floor, error) {
	return Floor{}, errors.New("floor: measured on Linux only")
}
