package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/keymanager"
)

// keyQueue holds the requests that found no usable key while one will be
// usable within QUEUE_TIMEOUT (docs/key-health.md). They are
// served in arrival order: only the head of the queue takes keys; when it
// leaves, the next request becomes the head. The zero value is empty and
// ready to use.
type keyQueue struct {
	mu      sync.Mutex
	waiters []*waiter
	n       atomic.Int32 // len(waiters), read without the lock
}

type waiter struct {
	turn chan struct{} // closed when the waiter becomes the head
}

func (q *keyQueue) join() *waiter {
	w := &waiter{turn: make(chan struct{})}
	q.mu.Lock()
	q.waiters = append(q.waiters, w)
	q.n.Store(int32(len(q.waiters)))
	if len(q.waiters) == 1 {
		close(w.turn)
	}
	q.mu.Unlock()
	return w
}

func (q *keyQueue) leave(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.waiters {
		if x != w {
			continue
		}
		q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
		q.n.Store(int32(len(q.waiters)))
		if i == 0 && len(q.waiters) > 0 {
			close(q.waiters[0].turn)
		}
		return
	}
}

// nextKey returns a key for the request's model. With no usable key it
// waits in the queue for one that becomes usable before the request's
// queue deadline, or returns the manager's NoKeysError at once when none
// will. While others wait, a new request queues behind them rather than
// taking a key first.
func (p *Proxy) nextKey(ctx context.Context, st *reqState, model string) (*keymanager.Key, bool, error) {
	// With a fallback group after this one (handover.go), a request does
	// not wait here: the next group serves it at once.
	if p.opts.QueueTimeout <= 0 || st.more || p.queue.n.Load() == 0 {
		k, excluded, err := p.keys.NextFor(model)
		if err == nil || p.opts.QueueTimeout <= 0 || st.more || !p.mayWait(st, err) {
			return k, excluded, err
		}
	}
	w := p.queue.join()
	defer p.queue.leave(w)
	deadline := time.NewTimer(time.Until(st.queueDeadline))
	defer deadline.Stop()
	select {
	case <-w.turn:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-deadline.C:
		return p.keys.NextFor(model)
	}
	for {
		// Taken before looking: a key returned to rotation between the
		// look and the wait closes this channel, so its wake-up is not
		// missed (read after the look, it would be the next one's).
		woken := p.keys.Woken()
		k, excluded, err := p.keys.NextFor(model)
		if err == nil || !p.mayWait(st, err) {
			return k, excluded, err
		}
		if p.afterLook != nil {
			p.afterLook()
		}
		var nk *keymanager.NoKeysError
		errors.As(err, &nk)
		wake := time.NewTimer(time.Until(nk.RetryAt))
		select {
		case <-wake.C:
		case <-woken:
		case <-ctx.Done():
			wake.Stop()
			return nil, false, ctx.Err()
		case <-deadline.C:
			wake.Stop()
			return p.keys.NextFor(model)
		}
		wake.Stop()
	}
}

// mayWait reports whether err says a key becomes usable before the
// request's queue deadline.
func (p *Proxy) mayWait(st *reqState, err error) bool {
	var nk *keymanager.NoKeysError
	return errors.As(err, &nk) && !nk.RetryAt.IsZero() && !nk.RetryAt.After(st.queueDeadline)
}
