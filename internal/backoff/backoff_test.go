package backoff

import (
	"testing"
	"time"
)

func TestDoubled(t *testing.T) {
	for _, c := range []struct {
		first, max time.Duration
		n          int
		want       time.Duration
	}{
		{time.Minute, 30 * time.Minute, 0, time.Minute},
		{time.Minute, 30 * time.Minute, 1, time.Minute},
		{time.Minute, 30 * time.Minute, 2, 2 * time.Minute},
		{time.Minute, 30 * time.Minute, 5, 16 * time.Minute},
		{time.Minute, 30 * time.Minute, 6, 30 * time.Minute},
		{time.Minute, 30 * time.Minute, 1 << 30, 30 * time.Minute},
		{time.Hour, 30 * time.Minute, 1, 30 * time.Minute},
		{10 * time.Second, 5 * time.Minute, 3, 40 * time.Second},
	} {
		if got := Doubled(c.first, c.max, c.n); got != c.want {
			t.Errorf("Doubled(%v, %v, %d) = %v; want %v", c.first, c.max, c.n, got, c.want)
		}
	}
}
