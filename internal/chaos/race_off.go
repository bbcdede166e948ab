//go:build !race

package chaos

import "time"

// raceSlack is added to (g)'s slack (see deadlineSlack).
const raceSlack time.Duration = 0

// raceEnabled: built without -race; (h) judges RSS.
const raceEnabled = false

// maxBodyMiB is MAX_REQUEST_BODY_SIZE: 8 MiB, room for large chats
// larger than a loopback connection's socket buffers hold (about
// 4 MiB), so that an upstream that never reads one leaves it stuck.
const maxBodyMiB = 8
