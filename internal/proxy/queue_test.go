package proxy

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gpt-load/gpt-load/internal/keymanager"
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

// TestKeyQueueWakeBetweenLookAndWait: a key that returns to rotation
// after a waiting request looked for one and before it waits wakes it at
// once, not when the next key's rest ends. In a synctest bubble, so the
// wait is measured on the bubble's clock, exactly.
func TestKeyQueueWakeBetweenLookAndWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := keymanager.New([]string{"sk-queue-0000000000000000000000000001"}, keymanager.Options{})
		k := keys.Keys()[0]
		keys.RateLimited(k, 20*time.Second, "test", http.StatusTooManyRequests)
		// nextKey needs only these; New would start a log writer
		// goroutine that outlives the bubble.
		p := &Proxy{opts: Options{QueueTimeout: 30 * time.Second}, keys: keys}
		looked := 0
		p.afterLook = func() {
			if looked++; looked == 1 {
				keys.Restore(k) // between the look and the wait
			}
		}
		start := time.Now()
		st := &reqState{queueDeadline: start.Add(30 * time.Second)}
		got, _, err := p.nextKey(t.Context(), st, "")
		if err != nil || got != k {
			t.Fatalf("nextKey = %v, %v; want the restored key", got, err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("the request waited %v for a key restored before it waited; want no wait", waited)
		}
	})
}
