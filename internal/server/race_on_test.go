//go:build race

package server_test

// raceEnabled reports whether the tests run under the race detector, which
// makes a scan of a million keys about ten times slower: the large-pool
// tests then use fewer keys and a looser time bound.
const raceEnabled = true
