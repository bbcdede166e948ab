// Package backoff computes growing rests: how long a key or a target stays
// out after failing again and again.
package backoff

import "time"

// Doubled returns the n-th rest in a row: first, doubled for each rest
// before it, capped at max. n below 2 gives first (or max, if smaller).
func Doubled(first, max time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
