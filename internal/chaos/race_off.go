//go:build !race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 0

// raceEnabled: built without -race; (h) judges RSS.
const raceEnabled = false
