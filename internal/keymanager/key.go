package keymanager

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/secret"
)

// State is a key's health.
type State uint32

const (
	// Active keys are in rotation.
	Active State = iota
	// Cooling keys rest until a deadline, then are active again by themselves.
	Cooling
	// Blacklisted keys stay out of rotation until reset, reloaded or re-checked.
	Blacklisted
)

func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Cooling:
		return "cooling"
	case Blacklisted:
		return "blacklisted"
	}
	return "unknown"
}

// Key is one API key with its health and counters. Its fields are accessed
// atomically, so a Key is safe for concurrent use; state transitions go
// through the Manager, which keeps its rotation in step with them.
type Key struct {
	secret secret.Key

	// mu serialises the key's state transitions (failures, rests,
	// restores, changes from other replicas); reads and successes do not
	// take it.
	mu sync.Mutex

	requests   atomic.Uint64
	failures   atomic.Uint64
	lastStatus atomic.Int32

	state  atomic.Uint32
	until  atomic.Int64 // unix nanoseconds; cooling deadline, 0 otherwise
	since  atomic.Int64 // unix nanoseconds the key left rotation
	reason atomic.Pointer[string]

	// consecutive counts permanent-class failures in a row, limitStreak
	// rate limits in a row; a success resets both.
	consecutive atomic.Int32
	limitStreak atomic.Int32
	// suspicions counts requests in a row that another key served after
	// this one answered an unproven 403; a success resets it.
	suspicions  atomic.Int32
	lastSuccess atomic.Int64 // unix nanoseconds, to the second
	// episodeStart is when the current rate-limit episode began;
	// changedAt when the state last changed, to order changes from other
	// replicas.
	episodeStart atomic.Int64
	changedAt    atomic.Int64

	quota  quotaSeen
	models atomic.Pointer[[]modelExclusion] // copy-on-write under mu
}

// Secret returns the key. Only its mask prints.
func (k *Key) Secret() secret.Key { return k.secret }

// Preview is the key's mask, safe to log and show.
func (k *Key) Preview() string { return k.secret.String() }

// usableAt reports whether the key may serve a request at unix time now.
func (k *Key) usableAt(now int64) bool {
	switch State(k.state.Load()) {
	case Active:
		return true
	case Cooling:
		return now >= k.until.Load()
	}
	return false
}

// CountRequest records an attempt that used the key and its outcome status
// (0 when no response arrived).
func (k *Key) CountRequest(status int, failed bool) {
	k.requests.Add(1)
	k.lastStatus.Store(int32(status))
	if failed {
		k.failures.Add(1)
	}
}

// Snapshot is a point-in-time copy of a key's state for monitoring.
type Snapshot struct {
	Preview    string
	State      State
	Requests   uint64
	Failures   uint64
	LastStatus int
	Reason     string
	Since      time.Time // when it left rotation; zero if active
	Until      time.Time // cooling deadline; zero otherwise
	FailCount  int       // consecutive failures counted toward its state
	// ChangedAt is when the state last changed by a decision (zero: never).
	ChangedAt time.Time
	// Quota is what the key's last rate-limit headers said; Seen is zero
	// when none were seen.
	Quota Quota
	// Models lists the models the key is excluded for now.
	Models []ModelExclusion
}

// Snapshot returns the key's state now.
func (k *Key) Snapshot() Snapshot { return k.snapshot(time.Now().UnixNano()) }

func (k *Key) snapshot(now int64) Snapshot {
	s := Snapshot{
		Preview:    k.Preview(),
		State:      State(k.state.Load()),
		Requests:   k.requests.Load(),
		Failures:   k.failures.Load(),
		LastStatus: int(k.lastStatus.Load()),
		FailCount:  int(k.consecutive.Load()),
	}
	if c := k.changedAt.Load(); c != 0 {
		s.ChangedAt = time.Unix(0, c)
	}
	s.Quota = k.quota.load()
	s.Models = k.excludedModels(now)
	if s.State == Cooling && now >= k.until.Load() {
		s.State = Active
	}
	if s.State != Active {
		if r := k.reason.Load(); r != nil {
			s.Reason = *r
		}
		s.Since = time.Unix(0, k.since.Load())
		if u := k.until.Load(); u != 0 {
			s.Until = time.Unix(0, u)
		}
	}
	return s
}
