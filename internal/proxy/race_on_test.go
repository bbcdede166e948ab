//go:build race

package proxy_test

// raceEnabled reports whether the tests run under the race detector, whose
// shadow memory makes RSS follow the heap without returning.
const raceEnabled = true
