package wait

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !Until(context.Background(), start.Add(time.Minute)) || time.Since(start) != time.Minute {
			t.Errorf("Until(+1m) returned after %v; want true after 1m", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if Until(ctx, start.Add(time.Hour)) || time.Since(start) != time.Second {
			t.Errorf("Until with a context ending at 1s returned after %v; want false after 1s", time.Since(start))
		}
	})
}
