//go:build race

package chaos

// raceEnabled: built with -race, whose shadow memory makes RSS grow with
// what was ever touched; (h) then judges the live heap.
const raceEnabled = true
