package keymanager

import (
	"sync/atomic"
	"time"
)

// Quota is what a key's rate-limit headers said last. A remaining figure
// is -1 when the headers did not give it.
type Quota struct {
	RequestsRemaining int64
	TokensRemaining   int64
	Reset             time.Time // when the exhausted (or soonest) window resets; zero if unknown
	Seen              time.Time // zero: never seen
}

// quotaSeen holds a Quota in atomics; remaining figures are stored plus
// one so that the zero value means unknown.
type quotaSeen struct {
	requests, tokens atomic.Int64
	reset, seen      atomic.Int64
}

func (q *quotaSeen) load() Quota {
	out := Quota{RequestsRemaining: q.requests.Load() - 1, TokensRemaining: q.tokens.Load() - 1}
	if r := q.reset.Load(); r != 0 {
		out.Reset = time.Unix(0, r)
	}
	if s := q.seen.Load(); s != 0 {
		out.Seen = time.Unix(0, s)
	}
	return out
}

// ObserveQuota records the figures of an answer's rate-limit headers, and
// rests the key until reset when nothing remains (reason quota_headers),
// before the provider would answer a 429. It reports whether the key was
// put to rest now.
func (m *Manager) ObserveQuota(k *Key, q Quota) bool {
	qs := &k.x().quota
	qs.requests.Store(q.RequestsRemaining + 1)
	qs.tokens.Store(q.TokensRemaining + 1)
	var r int64
	if !q.Reset.IsZero() {
		r = q.Reset.UnixNano()
	}
	qs.reset.Store(r)
	qs.seen.Store(m.now().UnixNano())
	if (q.RequestsRemaining == 0 || q.TokensRemaining == 0) && !q.Reset.IsZero() {
		return m.QuotaExhausted(k, q.Reset)
	}
	return false
}

// QuotaSummary sums what the keys' last rate-limit headers said, for
// monitoring; it is O(keys).
type QuotaSummary struct {
	// Seen counts keys whose answers carried rate-limit headers.
	Seen int
	// Exhausted counts keys whose last headers said nothing is left.
	Exhausted int
	// RequestsRemaining and TokensRemaining add up the last figures seen.
	RequestsRemaining, TokensRemaining int64
	// ModelExclusions counts (key, model) pairs excluded now.
	ModelExclusions int
}

// QuotaSummary returns the pool's quota as last seen and its model
// exclusions.
func (m *Manager) QuotaSummary() QuotaSummary {
	var s QuotaSummary
	now := m.now().UnixNano()
	withModels := m.withModels.Load() != 0
	for _, k := range m.view.Load().all {
		x := k.ext.Load()
		if x == nil {
			continue
		}
		if x.quota.seen.Load() != 0 {
			s.Seen++
			r, t := x.quota.requests.Load()-1, x.quota.tokens.Load()-1
			if r == 0 || t == 0 {
				s.Exhausted++
			}
			s.RequestsRemaining += max(r, 0)
			s.TokensRemaining += max(t, 0)
		}
		if withModels {
			if p := x.models.Load(); p != nil {
				for _, e := range *p {
					if now < e.until {
						s.ModelExclusions++
					}
				}
			}
		}
	}
	return s
}
