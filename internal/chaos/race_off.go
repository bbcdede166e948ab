//go:build !race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 0

// raceEnabled: built without -race; (h) judges RSS.
const raceEnabled = false

// readTimeout is SERVER_READ_TIMEOUT: an 8 MiB body is read in well under a second without -race.
const readTimeout = "4"
