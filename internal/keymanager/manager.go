// Package keymanager holds the API keys, hands them out in round-robin order
// over the usable ones, and tracks each key's health.
package keymanager

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/notify"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// rebuildGap bounds how often a large key set's rotation is rebuilt after
// state changes. Between rebuilds Next skips keys that left rotation, so the
// gap costs a little evenness, never correctness.
const rebuildGap = 20 * time.Millisecond

// Manager rotates over the usable keys. Next is lock-free and does not
// allocate; state changes and reloads take a mutex and rebuild the rotation
// copy-on-write. The zero Manager is not usable; call New. A Manager is safe
// for concurrent use.
type Manager struct {
	view   atomic.Pointer[view]
	cursor atomic.Uint64
	dirty  atomic.Bool // a state change is not yet in the view

	mu          sync.Mutex // serialises rebuilds, reloads and resets
	lastRebuild int64

	now       func() time.Time
	threshold int
	cooldown  time.Duration
	listener  notify.Slot[Listener]
	woken     atomic.Pointer[chan struct{}]

	// withModels counts keys that ever had a model excluded: while it is
	// zero, choosing a key for a model costs nothing extra.
	withModels atomic.Int64
	modelTTL   time.Duration
}

// view is an immutable rotation: all keys, the usable ones, and when the
// soonest cooling key comes back.
type view struct {
	all    []*Key
	usable []*Key
	wake   int64 // unix nanoseconds; math.MaxInt64 when nothing is cooling
}

// Options tunes a Manager.
type Options struct {
	// StartIndex is where rotation starts.
	StartIndex int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BlacklistThreshold is how many permanent-class failures in a row
	// blacklist a key; 0 means 1.
	BlacklistThreshold int
	// Cooldown is how long a rate-limited key first rests when the upstream
	// does not say; 0 means one minute.
	Cooldown time.Duration
	// ModelCooldown is how long a key stays excluded for a model it may
	// not use; 0 means one hour.
	ModelCooldown time.Duration
}

// New returns a Manager over keys, which must not be empty.
func New(keys []string, opts Options) *Manager {
	m := &Manager{now: opts.Now, threshold: max(1, opts.BlacklistThreshold), cooldown: opts.Cooldown}
	if m.now == nil {
		m.now = time.Now
	}
	if m.cooldown <= 0 {
		m.cooldown = time.Minute
	}
	m.modelTTL = opts.ModelCooldown
	if m.modelTTL <= 0 {
		m.modelTTL = time.Hour
	}
	ch := make(chan struct{})
	m.woken.Store(&ch)
	m.cursor.Store(uint64(opts.StartIndex))
	m.install(newKeys(keys, nil), m.now().UnixNano())
	return m
}

// newKeys builds Key values for raw keys, reusing the ones in old (so their
// state survives a reload). New keys are allocated in one block.
func newKeys(raw []string, old map[string]*Key) []*Key {
	out := make([]*Key, len(raw))
	fresh := make([]Key, len(raw)-min(len(raw), len(old)))
	for i, r := range raw {
		if k, ok := old[r]; ok {
			out[i] = k
			continue
		}
		if len(fresh) == 0 {
			fresh = make([]Key, 1)
		}
		k := &fresh[0]
		fresh = fresh[1:]
		k.secret = secret.NewKey(r)
		out[i] = k
	}
	return out
}

// install builds the rotation for all and publishes it. Caller holds mu or
// owns m exclusively.
func (m *Manager) install(all []*Key, now int64) *view {
	// Cleared before the scan: a change made during it sets dirty again
	// and is picked up by the next rebuild rather than lost.
	m.dirty.Store(false)
	v := &view{all: all, usable: make([]*Key, 0, len(all)), wake: math.MaxInt64}
	for _, k := range all {
		if k.usableAt(now) {
			v.usable = append(v.usable, k)
			continue
		}
		if State(k.state.Load()) == Cooling {
			v.wake = min(v.wake, k.until.Load())
		}
	}
	m.lastRebuild = now
	m.view.Store(v)
	return v
}

// NoKeysError reports that no key is usable. RetryAt is when the soonest
// cooling key returns, zero when every key is blacklisted.
type NoKeysError struct {
	RetryAt time.Time
}

func (e *NoKeysError) Error() string { return "no usable api key" }

// errNoKeys is returned when nothing is cooling, so the common failure does
// not allocate.
var errNoKeys = &NoKeysError{}

// Next returns the next usable key in round-robin order, or a *NoKeysError.
// With K usable keys, N calls give each key N/K ± 1 of them.
func (m *Manager) Next() (*Key, error) {
	v := m.view.Load()
	now := m.now().UnixNano()
	if now >= v.wake || m.dirty.Load() {
		v = m.refresh(v, now)
	}
	n := uint64(len(v.usable))
	if n == 0 {
		if v.wake != math.MaxInt64 {
			return nil, &NoKeysError{RetryAt: time.Unix(0, v.wake)}
		}
		return nil, errNoKeys
	}
	i := m.cursor.Add(1) - 1
	// A key may have left rotation since the view was built; skip it.
	soonest := v.wake
	for range n {
		k := v.usable[i%n]
		if k.usableAt(now) {
			return k, nil
		}
		if State(k.state.Load()) == Cooling {
			soonest = min(soonest, k.until.Load())
		}
		i = m.cursor.Add(1) - 1
	}
	// Every key of a stale view left rotation since it was built.
	if soonest != math.MaxInt64 {
		return nil, &NoKeysError{RetryAt: time.Unix(0, soonest)}
	}
	return nil, errNoKeys
}

// refresh rebuilds the view if no other goroutine is doing so and the last
// rebuild is not too recent for the key count; otherwise it returns v.
func (m *Manager) refresh(v *view, now int64) *view {
	if !m.mu.TryLock() {
		return v
	}
	defer m.mu.Unlock()
	cur := m.view.Load()
	if cur != v {
		return cur // somebody else rebuilt
	}
	// now-v.wake, not now < v.wake+gap: wake is math.MaxInt64 when nothing
	// is cooling, and the sum would overflow and defeat the throttle.
	if len(v.all) > 10_000 && now-m.lastRebuild < int64(rebuildGap) && now-v.wake < int64(rebuildGap) {
		return v
	}
	return m.install(v.all, now)
}

// setStateLocked moves k to state s, marks the rotation for rebuilding and
// tells the listener. Caller holds k.mu, so one key's transitions are
// atomic and each is told once.
func (m *Manager) setStateLocked(k *Key, s State, until time.Time, reason string, status int) {
	now := m.now()
	m.applyState(k, s, now, until, reason, status)
	k.changedAt.Store(now.UnixNano())
	if l, ok := m.listener.Get(); ok {
		l.KeyChanged(k, k.snapshot(now.UnixNano()))
	}
}

// applyState moves k to state s as of since.
func (m *Manager) applyState(k *Key, s State, since, until time.Time, reason string, status int) {
	now := m.now()
	if s == Active {
		k.until.Store(0)
		k.since.Store(0)
		k.reason.Store(nil)
	} else {
		// Each rest is new (a cooling key whose deadline passed is active
		// again); a key blacklisted already keeps the time it left.
		if s == Cooling || State(k.state.Load()) != s {
			k.since.Store(since.UnixNano())
		}
		var u int64
		if !until.IsZero() {
			u = until.UnixNano()
		}
		k.until.Store(u)
		k.reason.Store(&reason)
	}
	if status != 0 {
		k.lastStatus.Store(int32(status))
	}
	k.state.Store(uint32(s))
	m.dirty.Store(true)
	if s == Active {
		m.wake()
	}
	// Small sets rebuild at once so that Next never needs to skip; large
	// ones rebuild on the next call of Next, bounded by rebuildGap.
	if v := m.view.Load(); len(v.all) <= 10_000 {
		m.mu.Lock()
		m.install(m.view.Load().all, now.UnixNano())
		m.mu.Unlock()
	}
}

// Listener hears of the key state changes this process decides (not the
// ones applied with Apply). KeyChanged is called on the request path and
// must not block.
type Listener interface {
	KeyChanged(k *Key, s Snapshot)
}

// SetListener sets the listener; nil removes it.
func (m *Manager) SetListener(l Listener) { m.listener.Set(l) }

// Change is a key state change decided by another replica.
type Change struct {
	State State
	// At is when the change was decided; changes older than what the key
	// holds are ignored.
	At time.Time
	// Since is when the key left rotation, Until its cooling deadline.
	Since, Until time.Time
	Reason       string
	Status       int
	FailCount    int
}

// Apply sets k's state as another replica decided it, without telling the
// listener, and reports whether it did. Changes are ordered: one older
// than the key's last change is dropped, and nothing but a newer lift to
// active (a success, a re-check, a reset) ends a blacklist: a cooling
// change never lowers a blacklist. A zero At applies unconditionally
// (a replica of an older version).
func (m *Manager) Apply(k *Key, c Change) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at := c.At.UnixNano()
	if !c.At.IsZero() && at < k.changedAt.Load() {
		return false
	}
	if State(k.state.Load()) == Blacklisted && c.State == Cooling {
		return false
	}
	if c.State == Active {
		k.consecutive.Store(0)
		k.limitStreak.Store(0)
	} else {
		k.consecutive.Store(int32(c.FailCount))
	}
	m.applyState(k, c.State, c.Since, c.Until, c.Reason, c.Status)
	if !c.At.IsZero() {
		k.changedAt.Store(at)
	}
	return true
}

// Keys returns every key, in file order. The slice must not be modified.
func (m *Manager) Keys() []*Key { return m.view.Load().all }

// Blacklist takes k out of rotation until reset, reload or Restore.
func (m *Manager) Blacklist(k *Key, reason string, status int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m.setStateLocked(k, Blacklisted, time.Time{}, reason, status)
}

// Cool takes k out of rotation until the deadline.
func (m *Manager) Cool(k *Key, until time.Time, reason string, status int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m.setStateLocked(k, Cooling, until, reason, status)
}

// Restore puts k back into rotation and clears its failure count.
func (m *Manager) Restore(k *Key) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.consecutive.Store(0)
	k.limitStreak.Store(0)
	k.suspicions.Store(0)
	m.setStateLocked(k, Active, time.Time{}, "", 0)
}

// Woken returns a channel that is closed the next time a key returns to
// rotation by a decision (a restore, a reset, a reload, another replica's
// change); a cooling key's deadline passing does not close it.
func (m *Manager) Woken() <-chan struct{} { return *m.woken.Load() }

func (m *Manager) wake() {
	ch := make(chan struct{})
	if old := m.woken.Swap(&ch); old != nil {
		close(*old)
	}
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Total, Added, Removed, Duplicates int
}

// Reload replaces the key set with keys. Keys present before keep their
// state and counters; new keys start active; removed keys leave rotation.
// Requests in flight keep the key they hold.
func (m *Manager) Reload(keys []string) ReloadResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.view.Load().all
	byRaw := make(map[string]*Key, len(old))
	for _, k := range old {
		byRaw[k.secret.Reveal()] = k
	}
	all := newKeys(keys, byRaw)
	kept := 0
	for _, r := range keys {
		if _, ok := byRaw[r]; ok {
			kept++
		}
	}
	m.install(all, m.now().UnixNano())
	m.wake()
	return ReloadResult{Total: len(keys), Added: len(keys) - kept, Removed: len(old) - kept}
}

// Reset replaces the key set with keys, every one active with cleared
// counters.
func (m *Manager) Reset(keys []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.withModels.Store(0)
	m.install(newKeys(keys, nil), m.now().UnixNano())
	m.wake()
}

// Counts is how many keys are in each state.
type Counts struct {
	Total, Active, Cooling, Blacklisted int
}

// Counts returns the number of keys in each state, cooling keys whose
// deadline passed counting as active.
func (m *Manager) Counts() Counts {
	v := m.view.Load()
	now := m.now().UnixNano()
	c := Counts{Total: len(v.all)}
	for _, k := range v.all {
		switch {
		case k.usableAt(now):
			c.Active++
		case State(k.state.Load()) == Cooling:
			c.Cooling++
		default:
			c.Blacklisted++
		}
	}
	return c
}

// CurrentIndex is the position in the key list the next request starts at.
// The cursor counts over the usable keys, so it is mapped back to the full
// list; this is O(keys), for monitoring only.
func (m *Manager) CurrentIndex() int {
	v := m.view.Load()
	if len(v.all) == 0 {
		return 0
	}
	if n := uint64(len(v.usable)); n > 0 {
		next := v.usable[m.cursor.Load()%n]
		for i, k := range v.all {
			if k == next {
				return i
			}
		}
	}
	return int(m.cursor.Load() % uint64(len(v.all)))
}

// Snapshots returns every key's state, in file order. With benchedOnly,
// only keys out of rotation are returned.
func (m *Manager) Snapshots(benchedOnly bool) []Snapshot {
	v := m.view.Load()
	now := m.now().UnixNano()
	out := []Snapshot{}
	for _, k := range v.all {
		if benchedOnly && k.usableAt(now) {
			continue
		}
		out = append(out, k.snapshot(now))
	}
	return out
}

// Len returns the number of keys.
func (m *Manager) Len() int { return len(m.view.Load().all) }

// IsNoKeys reports whether err says no key is usable.
func IsNoKeys(err error) bool {
	var e *NoKeysError
	return errors.As(err, &e)
}

// Blacklisted returns the keys that are blacklisted now.
func (m *Manager) Blacklisted() []*Key {
	var out []*Key
	for _, k := range m.view.Load().all {
		if State(k.state.Load()) == Blacklisted {
			out = append(out, k)
		}
	}
	return out
}
