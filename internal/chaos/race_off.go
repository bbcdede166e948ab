//go:build !race

package chaos

// raceEnabled: built without -race; (h) judges RSS.
const raceEnabled = false
