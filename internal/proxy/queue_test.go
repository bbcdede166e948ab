package proxy

import (
	"testing"
	"time"
)

// TestKeyQueueArrivalOrder checks waiters become the head in the order
// they joined, whoever leaves, and that a waiter leaving from the middle
// (its client went away) does not disturb the order.
func TestKeyQueueArrivalOrder(t *testing.T) {
	var q keyQueue
	ws := make([]*waiter, 5)
	for i := range ws {
		ws[i] = q.join()
	}
	// The expected head's turn is waited for (with a deadline); the
	// others' must not have come.
	isHead := func(w *waiter, want bool) bool {
		if !want {
			select {
			case <-w.turn:
				return true
			default:
				return false
			}
		}
		select {
		case <-w.turn:
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}
	q.leave(ws[2]) // gone from the middle
	for _, i := range []int{0, 1, 3, 4} {
		for j, w := range ws {
			if j == 2 || j < i {
				continue
			}
			if got := isHead(w, j == i); got != (j == i) {
				t.Fatalf("with waiter %d expected at the head, waiter %d head = %v", i, j, got)
			}
		}
		q.leave(ws[i])
	}
	if q.n.Load() != 0 {
		t.Errorf("queue length %d after everyone left; want 0", q.n.Load())
	}
}
