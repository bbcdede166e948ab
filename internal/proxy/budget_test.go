package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryBudget(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	b := &retryBudget{now: func() time.Time { return time.Unix(clock.Load(), 0) }}
	for range 100 {
		b.first()
	}
	allowed := 0
	for range 200 {
		if b.allow() {
			allowed++
		}
	}
	if want := 60; allowed != want { // 50 % of 100, plus 10
		t.Errorf("with 100 first attempts: %d retries allowed; want %d", allowed, want)
	}
	// Ten seconds later the window has moved on: only the floor remains.
	clock.Add(10)
	allowed = 0
	for range 50 {
		if b.allow() {
			allowed++
		}
	}
	if allowed != budgetFloor {
		t.Errorf("after the window: %d retries allowed; want the floor %d", allowed, budgetFloor)
	}
}

// TestRetryBudgetConcurrent hammers the budget from many goroutines: the
// count stays near the bound (race detector clean, never far over).
func TestRetryBudgetConcurrent(t *testing.T) {
	b := &retryBudget{}
	var wg sync.WaitGroup
	for range 400 {
		wg.Go(b.first)
	}
	wg.Wait()
	var allowed atomic.Int64
	for range 400 {
		wg.Go(func() {
			if b.allow() {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	// 210 allowed, give or take the racing readers at the edge and a
	// second boundary crossed during the test.
	if n := allowed.Load(); n < 200 || n > 260 {
		t.Errorf("400 concurrent retries over 400 first attempts: %d allowed; want about 210", n)
	}
}
