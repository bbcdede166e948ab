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
//
// A pool may hold a million keys, so a Key keeps inline only what the
// request path reads (80 bytes); what a key needs once it has failed, rested,
// been excluded for a model or shown rate-limit headers lives in a keyExt
// allocated on first use. Most keys of a large pool never need one.
type Key struct {
	secret secret.Key

	requests   atomic.Uint64
	failures   atomic.Uint64
	lastStatus atomic.Int32 // the last attempt's status

	state atomic.Uint32
	until atomic.Int64 // unix nanoseconds; cooling deadline, 0 otherwise

	// consecutive counts permanent-class failures in a row, limitStreak
	// rate limits in a row; a success resets both.
	consecutive atomic.Int32
	limitStreak atomic.Int32
	// suspicions counts requests in a row that another key served after
	// this one answered an unproven 403; a success resets it.
	suspicions  atomic.Int32
	lastSuccess atomic.Int64 // unix nanoseconds, to the second

	ext atomic.Pointer[keyExt] // nil until first needed; never reset
}

// keyExt is the part of a Key that only keys which failed, rested, were
// excluded for a model or reported a quota need.
type keyExt struct {
	// mu serialises the key's state transitions (failures, rests,
	// restores, changes from other replicas); reads and successes do not
	// take it.
	mu sync.Mutex

	since  atomic.Int64 // unix nanoseconds the key left rotation
	reason atomic.Pointer[string]
	// stateStatus is the HTTP status that put the key in its state: what
	// /blacklist shows, whatever later attempts answered.
	stateStatus atomic.Int32
	// episodeStart is when the current rate-limit episode began.
	episodeStart atomic.Int64

	quota  quotaSeen
	models atomic.Pointer[[]modelExclusion] // copy-on-write under mu
}

// x returns k's extension, allocating it on first use.
func (k *Key) x() *keyExt {
	if p := k.ext.Load(); p != nil {
		return p
	}
	p := new(keyExt)
	if k.ext.CompareAndSwap(nil, p) {
		return p
	}
	return k.ext.Load()
}

// lock takes the key's transition lock and returns its extension.
func (k *Key) lock() *keyExt {
	x := k.x()
	x.mu.Lock()
	return x
}

func (k *Key) unlock() { k.ext.Load().mu.Unlock() }

// episodeStart is when the key's current rate-limit episode began.
func (k *Key) episodeStart() int64 {
	if x := k.ext.Load(); x != nil {
		return x.episodeStart.Load()
	}
	return 0
}

// reason is why the key left rotation, "" when it never did.
func (k *Key) reason() string {
	if x := k.ext.Load(); x != nil {
		if r := x.reason.Load(); r != nil {
			return *r
		}
	}
	return ""
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
	Preview  string
	State    State
	Requests uint64
	Failures uint64
	// LastStatus is, for an active key, the status of its last attempt;
	// for a key out of rotation, the status that put it there (when one
	// was given).
	LastStatus int
	Reason     string
	Since      time.Time // when it left rotation; zero if active
	Until      time.Time // cooling deadline; zero otherwise
	FailCount  int       // consecutive failures counted toward its state
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
		Quota:      Quota{RequestsRemaining: -1, TokensRemaining: -1},
		Models:     k.excludedModels(now),
	}
	if s.State == Cooling && now >= k.until.Load() {
		s.State = Active
	}
	x := k.ext.Load()
	if x == nil {
		return s
	}
	s.Quota = x.quota.load()
	if s.State != Active {
		if r := x.reason.Load(); r != nil {
			s.Reason = *r
		}
		// The status that put the key out of rotation, not the last
		// attempt's: a success still in flight when a 403 blacklisted the
		// key must not show as its status.
		if st := x.stateStatus.Load(); st != 0 {
			s.LastStatus = int(st)
		}
		s.Since = time.Unix(0, x.since.Load())
		if u := k.until.Load(); u != 0 {
			s.Until = time.Unix(0, u)
		}
	}
	return s
}
