//go:build !race

package keymanager

const raceEnabled = false
