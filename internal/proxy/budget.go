package proxy

import (
	"sync/atomic"
	"time"
)

// Retry budget (docs/key-health.md): over any budgetWindow,
// retries may add at most budgetRatio of the first attempts, plus
// budgetFloor, so that a provider refusing everything (an IP-wide rate
// limit, an outage) gets about one attempt per client request instead of
// MAX_RETRIES+1, while a few bad keys among good ones are still fully
// retried.
const (
	budgetWindow  = 10 * time.Second
	budgetBuckets = 10
	budgetRatio   = 0.5
	budgetFloor   = 10
)

// retryBudget counts first attempts and retries in one-second buckets.
// It is lock-free; a bucket is recycled by the first caller of its new
// second, so counts near a bucket's turn may be off by a few, which only
// blurs the budget's edge. The zero value is ready to use.
type retryBudget struct {
	buckets [budgetBuckets]budgetBucket
	now     func() time.Time
}

type budgetBucket struct {
	second  atomic.Int64
	firsts  atomic.Int64
	retries atomic.Int64
}

func (b *retryBudget) bucket(sec int64) *budgetBucket {
	k := &b.buckets[sec%budgetBuckets]
	if old := k.second.Load(); old != sec && k.second.CompareAndSwap(old, sec) {
		k.firsts.Store(0)
		k.retries.Store(0)
	}
	return k
}

func (b *retryBudget) clock() int64 {
	if b.now != nil {
		return b.now().Unix()
	}
	return time.Now().Unix()
}

// first records a client request's first attempt.
func (b *retryBudget) first() { b.bucket(b.clock()).firsts.Add(1) }

// allow reports whether one more retry fits the budget, and if so counts it.
func (b *retryBudget) allow() bool {
	sec := b.clock()
	var firsts, retries int64
	for i := range b.buckets {
		k := &b.buckets[i]
		if s := k.second.Load(); s > sec-budgetBuckets && s <= sec {
			firsts += k.firsts.Load()
			retries += k.retries.Load()
		}
	}
	if float64(retries) >= budgetRatio*float64(firsts)+budgetFloor {
		return false
	}
	b.bucket(sec).retries.Add(1)
	return true
}
