//go:build !linux

package main

import "errors"

func measureFloor(pairs, rounds int) (floor, error) {
	return floor{}, errors.New("the floor is measured on Linux only")
}
