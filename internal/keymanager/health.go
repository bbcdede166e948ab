package keymanager

import (
	"time"

	"github.com/gpt-load/gpt-load/internal/backoff"
)

// MaxCooldown caps how long a rate-limited key rests when the upstream did
// not say (KEY_COOLDOWN in docs/configuration.md, "Settings").
const MaxCooldown = 30 * time.Minute

// MaxRetryAfter caps a rest the upstream asked for: long enough for any
// daily quota window, short enough that a garbled header cannot bench a
// key for good.
const MaxRetryAfter = 24 * time.Hour

// episodeGrace is how long after an episode's first rate limit another
// limit of the same key still belongs to it, even if the key's rest ended
// (answers to requests sent before the first limit arrive late).
const episodeGrace = time.Second

// successStamp is how fresh a key's last-success time is kept: writing it
// at most once a second per key keeps the hot path from bouncing a cache
// line between cores on every request.
const successStamp = int64(time.Second)

// Succeeded records a successful attempt: the key's consecutive failure
// count starts again from zero, and so does the rate-limit doubling once
// the key's last rest is over (a late success from before a limit says
// nothing about the limit). Lock-free: only failures take the key's lock.
func (m *Manager) Succeeded(k *Key) {
	if k.consecutive.Load() != 0 {
		k.consecutive.Store(0)
	}
	if k.suspicions.Load() != 0 {
		k.suspicions.Store(0)
	}
	now := m.now().UnixNano()
	if k.limitStreak.Load() != 0 && now >= k.until.Load() && now-k.episodeStart() > int64(episodeGrace) {
		k.limitStreak.Store(0)
	}
	if now-k.lastSuccess.Load() >= successStamp {
		k.lastSuccess.Store(now)
	}
}

// SucceededWithin reports whether the key succeeded within d before now.
func (m *Manager) SucceededWithin(k *Key, d time.Duration) bool {
	last := k.lastSuccess.Load()
	return last != 0 && m.now().UnixNano()-last <= int64(d)
}

// FailedPermanent records a permanent-class failure (invalid key, quota).
// After BlacklistThreshold of them in a row the key is blacklisted; it
// reports whether that happened now. Concurrent failures of one key
// blacklist it once: exactly one caller gets true.
func (m *Manager) FailedPermanent(k *Key, reason string, status int) bool {
	k.lock()
	defer k.unlock()
	k.lastStatus.Store(int32(status))
	if int(k.consecutive.Add(1)) < m.threshold || State(k.state.Load()) == Blacklisted {
		return false
	}
	m.setStateLocked(k, Blacklisted, time.Time{}, reason, status)
	return true
}

// RateLimited rests the key for a rate limit: until retryAfter from now
// when the upstream said, else for the cooldown doubled per rate-limit
// episode, capped at MaxCooldown. Limits that arrive while the key rests,
// or within a second of the episode's first, are the same episode: they
// may move the deadline later, never earlier, and do not double. A
// blacklisted key stays blacklisted. It returns the key's deadline and
// whether the state changed enough to tell (a new rest, or a deadline
// moved by a second or more).
func (m *Manager) RateLimited(k *Key, retryAfter time.Duration, reason string, status int) (time.Time, bool) {
	k.lock()
	defer k.unlock()
	now := m.now()
	ns := now.UnixNano()
	state := State(k.state.Load())
	if state == Blacklisted {
		return time.Time{}, false
	}
	resting := state == Cooling && ns < k.until.Load()
	x := k.ext.Load()
	same := resting || ns-x.episodeStart.Load() <= int64(episodeGrace)
	streak := k.limitStreak.Load()
	if !same || streak == 0 {
		streak = k.limitStreak.Add(1)
		x.episodeStart.Store(ns)
	}
	d := min(retryAfter, MaxRetryAfter)
	if d <= 0 {
		d = backoff.Doubled(m.cooldown, MaxCooldown, int(streak))
	}
	until := now.Add(d)
	if resting {
		cur := k.until.Load()
		if until.UnixNano() <= cur {
			return time.Unix(0, cur), false
		}
		// Later within the episode: move the deadline, and tell only when
		// it moved enough to matter, so a burst publishes once.
		k.until.Store(until.UnixNano())
		m.dirty.Store(true)
		if until.UnixNano()-cur < int64(time.Second) {
			return until, false
		}
	}
	m.setStateLocked(k, Cooling, until, reason, status)
	return until, true
}

// QuotaExhausted rests the key until reset because its rate-limit headers
// said nothing remains, before the provider answers a 429. The doubling is
// untouched; a longer rest or a blacklist stays. It reports whether the
// key's state changed.
func (m *Manager) QuotaExhausted(k *Key, reset time.Time) bool {
	k.lock()
	defer k.unlock()
	now := m.now()
	if !reset.After(now) {
		return false
	}
	if limit := now.Add(MaxRetryAfter); reset.After(limit) {
		reset = limit
	}
	switch State(k.state.Load()) {
	case Blacklisted:
		return false
	case Cooling:
		if k.until.Load() >= reset.UnixNano() {
			return false
		}
	}
	m.setStateLocked(k, Cooling, reset, ReasonQuotaHeaders, int(k.lastStatus.Load()))
	return true
}

// ReasonQuotaHeaders is the reason of a key resting because its rate-limit
// headers reported nothing left.
const ReasonQuotaHeaders = "quota_headers"

// minSuspicions is how many different requests must have suspected a key
// before an unproven answer blacklists it: one request proves nothing
// about the key, since its content may be what the provider refused.
const minSuspicions = 2

// Suspected records that k gave an unproven answer (a 403 that names
// nothing) to a request that another key then served. After suspicions
// from max(2, BlacklistThreshold) requests with no success of k between,
// k is blacklisted; it reports whether that happened now. Each request
// suspects a key at most once.
func (m *Manager) Suspected(k *Key, reason string, status int) bool {
	k.lock()
	defer k.unlock()
	if State(k.state.Load()) == Blacklisted {
		return false
	}
	if int(k.suspicions.Add(1)) < max(minSuspicions, m.threshold) {
		return false
	}
	k.suspicions.Store(0)
	m.setStateLocked(k, Blacklisted, time.Time{}, reason, status)
	return true
}
