//go:build race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 2 * time.Second

// raceEnabled: built with -race, whose shadow memory makes RSS grow with
// what was ever touched; (h) then judges the live heap.
const raceEnabled = true
