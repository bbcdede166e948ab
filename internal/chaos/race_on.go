//go:build race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 2 * time.Second

// raceEnabled: built with -race, whose shadow memory makes RSS grow with
// what was ever touched; (h) then judges the live heap.
const raceEnabled = true

// maxBodyMiB is MAX_REQUEST_BODY_SIZE: under -race, 2 MiB: the race detector
// slows gpt-load so much on a shared 2-core machine that 8 MiB bodies
// (read, spooled, sent upstream) made every request of their second
// time out (504 at RESPONSE_TIMEOUT, 408 for a chunked body over the
// limit). A body an upstream never reads then fits in the socket
// buffers: that case is make chaos's (no -race).
const maxBodyMiB = 2
