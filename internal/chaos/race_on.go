//go:build race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 2 * time.Second

// raceEnabled: built with -race, whose shadow memory makes RSS grow with
// what was ever touched; (h) then judges the live heap.
const raceEnabled = true

// readTimeout is SERVER_READ_TIMEOUT: under -race gpt-load reads a
// chunked body over MAX_REQUEST_BODY_SIZE (8 MiB) at 2 to 3 MiB/s on a
// shared 2-core machine, and answered 408 instead of 413 with 4 s.
const readTimeout = "8"
