package keymanager

import (
	"time"
)

// MaxCooldown caps how long a rate-limited key rests when the upstream did
// not say (SPEC §2, KEY_COOLDOWN).
const MaxCooldown = 30 * time.Minute

// MaxRetryAfter caps a rest the upstream asked for: long enough for any
// daily quota window, short enough that a garbled header cannot bench a
// key for good.
const MaxRetryAfter = 24 * time.Hour

// successStamp is how fresh a key's last-success time is kept: writing it
// at most once a second per key keeps the hot path from bouncing a cache
// line between cores on every request.
const successStamp = int64(time.Second)

// Succeeded records a successful attempt: the key's consecutive failure
// counts start again from zero.
func (m *Manager) Succeeded(k *Key) {
	if k.consecutive.Load() != 0 {
		k.consecutive.Store(0)
	}
	if k.limitStreak.Load() != 0 {
		k.limitStreak.Store(0)
	}
	now := m.now().UnixNano()
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
// reports whether that happened now.
func (m *Manager) FailedPermanent(k *Key, reason string, status int) bool {
	k.lastStatus.Store(int32(status))
	if int(k.consecutive.Add(1)) < m.threshold {
		return false
	}
	if State(k.state.Load()) == Blacklisted {
		return false
	}
	m.Blacklist(k, reason, status)
	return true
}

// RateLimited rests the key: for retryAfter when the upstream said how
// long, else for the cooldown doubled per consecutive limit, capped at
// MaxCooldown. It returns the deadline.
func (m *Manager) RateLimited(k *Key, retryAfter time.Duration, reason string, status int) time.Time {
	streak := k.limitStreak.Add(1)
	d := min(retryAfter, MaxRetryAfter)
	if d <= 0 {
		d = m.cooldown
		for i := int32(1); i < streak && d < MaxCooldown; i++ {
			d *= 2
		}
		d = min(d, MaxCooldown)
	}
	until := m.now().Add(d)
	m.Cool(k, until, reason, status)
	return until
}
