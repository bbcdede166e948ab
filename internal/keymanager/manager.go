// Package keymanager holds the API keys, hands them out in round-robin order
// over the usable ones, and tracks each key's health.
package keymanager

import (
	"cmp"
	"errors"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/notify"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// rebuildGap is the least time between two rebuilds of a large key set's
// rotation; a rebuild that took long spaces the next one further (four
// times its duration), so rebuilding never takes more than a fifth of a
// core however fast keys change state. Between rebuilds Next skips keys
// that left rotation and takes in keys whose rest ended, so the gap costs
// a little evenness, never correctness.
const rebuildGap = 20 * time.Millisecond

// smallPool is the largest key set whose rotation is rebuilt inline, on
// the goroutine that changed a key's state: about 40 µs at this size with
// a tenth of the keys resting (BenchmarkRebuild; 50-120 ms at a million).
// Larger sets are rebuilt on a background goroutine, never on a request's.
const smallPool = 4096

// Manager rotates over the usable keys. Next is lock-free and does not
// allocate; state changes and reloads rebuild the rotation copy-on-write
// (under mu, which Next never takes). The zero Manager is not usable; call
// New. A Manager is safe for concurrent use.
type Manager struct {
	view   atomic.Pointer[view]
	cursor atomic.Uint64
	dirty  atomic.Bool // a state change is not yet in the view

	mu sync.Mutex // serialises rebuilds, reloads and resets

	// rebuilding is set while a background rebuild goroutine runs (at
	// most one); nextRebuild is the wall-clock time, in unix nanoseconds,
	// before which it does not start another. rebuilds counts them all,
	// for tests.
	rebuilding  atomic.Bool
	nextRebuild atomic.Int64
	rebuilds    atomic.Int64
	inlineMax   int // smallPool; tests lower it to take the large-set path

	now       func() time.Time
	threshold int
	cooldown  time.Duration
	listener  notify.Slot[Listener]
	woken     atomic.Pointer[chan struct{}]

	// withModels counts keys that ever had a model excluded: while it is
	// zero, choosing a key for a model costs nothing extra.
	withModels atomic.Int64
	modelTTL   time.Duration
	// served holds the models some key served while the model had
	// exclusions: the proof that a resting key may serve it (NextFor).
	served servedModels
}

// view is an immutable rotation: all keys, the usable ones, the resting
// ones by deadline, and a rotation per model that some key is excluded
// for.
type view struct {
	all    []*Key
	usable []*Key
	// cooling are the keys resting when the view was built, soonest
	// deadline first, and coolUntil their deadlines then: once a deadline
	// passes, Next takes that key in without waiting for a rebuild.
	cooling   []*Key
	coolUntil []int64
	// wake is when the view goes stale by itself: the soonest cooling
	// deadline or model exclusion end; math.MaxInt64 when none.
	wake int64
	// models holds the rotations of the models some key is excluded for;
	// nil while none is.
	models map[string]*modelRot
	small  bool
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
	m := &Manager{now: opts.Now, threshold: max(1, opts.BlacklistThreshold), cooldown: opts.Cooldown, inlineMax: smallPool}
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
	if len(old) == 0 {
		fillKeys(out, make([]Key, len(raw)), raw)
		return out
	}
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

// parallelFill is the key count from which fillKeys splits its work: a
// million keys are 80 MB of fresh memory, and touching it for the first
// time (page faults, mostly) is a quarter of the startup's CPU; on every
// core at once it takes a fraction of that wall time.
const parallelFill = 1 << 16

// fillKeys makes out[i] point to block[i], holding raw[i].
func fillKeys(out []*Key, block []Key, raw []string) {
	fill := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			block[i].secret = secret.NewKey(raw[i])
			out[i] = &block[i]
		}
	}
	parts := min(runtime.GOMAXPROCS(0), len(raw)/parallelFill)
	if parts <= 1 {
		fill(0, len(raw))
		return
	}
	var wg sync.WaitGroup
	chunk := (len(raw) + parts - 1) / parts
	for lo := 0; lo < len(raw); lo += chunk {
		wg.Go(func() { fill(lo, min(lo+chunk, len(raw))) })
	}
	wg.Wait()
}

// install builds the rotation for all and publishes it. Caller holds mu or
// owns m exclusively. It is O(keys): for a large set it runs on the
// background rebuild goroutine, a reload or a reset, never in Next.
func (m *Manager) install(all []*Key, now int64) *view {
	// Cleared before the scan: a change made during it sets dirty again
	// and is picked up by the next rebuild rather than lost.
	m.dirty.Store(false)
	m.rebuilds.Add(1)
	v := &view{all: all, wake: math.MaxInt64, small: len(all) <= m.inlineMax}
	// While every key is usable, usable is all itself (no copy: 8 MB for a
	// million keys); the copy starts at the first key that is not.
	kept := 0 // keys of all[:kept] are usable, and not copied yet
	var (
		cooling []coolingKey
		models  modelBuild
	)
	if m.withModels.Load() != 0 {
		models = modelBuild{}
	}
	for i, k := range all {
		if i&yieldEvery == yieldEvery && !v.small {
			// A large scan runs beside requests on few cores: without
			// this, a request's goroutine could wait out the scheduler's
			// 10 ms time slice behind it.
			runtime.Gosched()
		}
		usable := k.usableAt(now)
		pos := 0 // in usable, when usable
		switch {
		case usable && v.usable == nil:
			pos = kept
			kept++
		case usable:
			pos = len(v.usable)
			v.usable = append(v.usable, k)
		default:
			if v.usable == nil {
				v.usable = append(make([]*Key, 0, len(all)), all[:kept]...)
			}
			if State(k.state.Load()) == Cooling {
				cooling = append(cooling, coolingKey{k, k.until.Load()})
			}
		}
		if models != nil {
			models.add(k, pos, usable, now)
		}
	}
	if v.usable == nil {
		v.usable = all
	}
	if len(cooling) > 0 {
		slices.SortFunc(cooling, func(a, b coolingKey) int { return cmp.Compare(a.until, b.until) })
		v.cooling = make([]*Key, len(cooling))
		v.coolUntil = make([]int64, len(cooling))
		for i, c := range cooling {
			v.cooling[i], v.coolUntil[i] = c.k, c.until
		}
		v.wake = v.coolUntil[0]
	}
	if models != nil {
		v.models = models.finish(m.view.Load(), v.usable, m.cursor.Load(), cooling, now)
		for _, r := range v.models {
			v.wake = min(v.wake, r.ends)
		}
	}
	m.view.Store(v)
	return v
}

// yieldEvery+1 is how many keys a large rebuild scans between yields to
// other goroutines: about a millisecond of work.
const yieldEvery = 1<<16 - 1

type coolingKey struct {
	k     *Key
	until int64
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

// staleWait is the RetryAt a stale view gives when the deadline it knows
// has passed: the key is back, and the rebuild that shows it is due.
const staleWait = rebuildGap / 4

// noKeysAt is the error for no usable key until the unix time at
// (math.MaxInt64: never).
func noKeysAt(at, now int64) error {
	if at == math.MaxInt64 {
		return errNoKeys
	}
	return &NoKeysError{RetryAt: time.Unix(0, max(at, now+int64(staleWait)))}
}

// Next returns the next usable key in round-robin order, or a *NoKeysError.
// With K usable keys, N calls give each key N/K ± 1 of them.
func (m *Manager) Next() (*Key, error) {
	v := m.view.Load()
	now := m.now().UnixNano()
	if now >= v.wake || m.dirty.Load() {
		v = m.refresh(v, now)
	}
	return v.pick(&m.cursor, now)
}

// back is how many of v's cooling keys had their deadline (as of the
// build) pass by now: they are usable again, not yet in v.usable.
func (v *view) back(now int64) int {
	lo, hi := 0, len(v.coolUntil)
	if hi == 0 || now < v.coolUntil[0] {
		return 0
	}
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if v.coolUntil[mid] <= now {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// pick is one round-robin step over v's usable keys and the cooling keys
// whose rest ended since v was built, with cursor.
func (v *view) pick(cursor *atomic.Uint64, now int64) (*Key, error) {
	n := uint64(len(v.usable))
	back := v.back(now)
	total := n + uint64(back)
	soonest := int64(math.MaxInt64)
	if back < len(v.coolUntil) {
		soonest = v.coolUntil[back]
	}
	// A key may have left rotation since the view was built; skip it.
	for range total {
		i := (cursor.Add(1) - 1) % total
		var k *Key
		if i < n {
			k = v.usable[i]
		} else {
			k = v.cooling[i-n]
		}
		if k.usableAt(now) {
			return k, nil
		}
		if State(k.state.Load()) == Cooling {
			soonest = min(soonest, k.until.Load())
		}
	}
	return nil, noKeysAt(soonest, now)
}

// refresh brings v up to date. A small set is rebuilt here if no other
// goroutine is doing so; a large one is handed to the background rebuild
// and v is used meanwhile. It never waits on mu.
func (m *Manager) refresh(v *view, now int64) *view {
	if !v.small {
		m.kick()
		return v
	}
	if !m.mu.TryLock() {
		return v
	}
	defer m.mu.Unlock()
	if cur := m.view.Load(); cur != v {
		return cur // somebody else rebuilt
	}
	return m.install(v.all, now)
}

// kick starts the background rebuild unless it is running. Cheap when it
// is: one atomic load.
func (m *Manager) kick() {
	if m.rebuilding.Load() || !m.rebuilding.CompareAndSwap(false, true) {
		return
	}
	go m.rebuildLoop()
}

// rebuildLoop rebuilds the rotation until no change is pending, then
// exits: a goroutine lives only while there is work, so a Manager needs no
// Close. Only one runs at a time (rebuilding).
func (m *Manager) rebuildLoop() {
	for {
		if wait := m.nextRebuild.Load() - time.Now().UnixNano(); wait > 0 {
			time.Sleep(time.Duration(wait))
		}
		start := time.Now()
		m.mu.Lock()
		m.install(m.view.Load().all, m.now().UnixNano())
		m.mu.Unlock()
		took := time.Since(start)
		m.nextRebuild.Store(time.Now().Add(max(rebuildGap, 4*took)).UnixNano())
		m.rebuilding.Store(false)
		// A change made after install cleared dirty, whose kick found
		// this goroutine still running, is picked up here.
		if !m.stale() || !m.rebuilding.CompareAndSwap(false, true) {
			return
		}
	}
}

// stale reports whether the published view lags the keys' states.
func (m *Manager) stale() bool {
	return m.dirty.Load() || m.now().UnixNano() >= m.view.Load().wake
}

// changed marks the rotation out of date after a state change: a small
// set is rebuilt at once, so that Next never needs to skip; a large one
// in the background.
func (m *Manager) changed(now int64) {
	m.dirty.Store(true)
	if v := m.view.Load(); !v.small {
		m.kick()
		return
	}
	m.mu.Lock()
	m.install(m.view.Load().all, now)
	m.mu.Unlock()
}

// setStateLocked moves k to state s, marks the rotation for rebuilding and
// tells the listener. Caller holds k's lock, so one key's transitions are
// atomic and each is told once.
func (m *Manager) setStateLocked(k *Key, s State, until time.Time, reason string, status int) {
	now := m.now()
	m.applyState(k, s, now, until, reason, status)
	if l, ok := m.listener.Get(); ok {
		l.KeyChanged(k, k.snapshot(now.UnixNano()))
	}
}

// applyState moves k to state s as of since. Caller holds k's lock.
func (m *Manager) applyState(k *Key, s State, since, until time.Time, reason string, status int) {
	now := m.now()
	x := k.ext.Load()
	if s == Active {
		k.until.Store(0)
		x.since.Store(0)
		x.reason.Store(nil)
		x.stateStatus.Store(0)
	} else {
		// Each rest is new (a cooling key whose deadline passed is active
		// again); a key blacklisted already keeps the time it left.
		if s == Cooling || State(k.state.Load()) != s {
			x.since.Store(since.UnixNano())
		}
		var u int64
		if !until.IsZero() {
			u = until.UnixNano()
		}
		k.until.Store(u)
		x.reason.Store(&reason)
		x.stateStatus.Store(int32(status))
	}
	if status != 0 {
		k.lastStatus.Store(int32(status))
	}
	k.state.Store(uint32(s))
	if s == Active {
		m.wake()
	}
	m.changed(now.UnixNano())
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
	// Since is when the key left rotation, Until its cooling deadline.
	Since, Until time.Time
	Reason       string
	Status       int
	FailCount    int
}

// Apply sets k's state as the replicas' shared state says, without
// telling the listener. It does not order changes: the caller (the
// cluster, through Redis) does, so Apply sets what it is given, a cooling
// state over a blacklist included.
func (m *Manager) Apply(k *Key, c Change) {
	k.lock()
	defer k.unlock()
	if c.State == Active {
		k.consecutive.Store(0)
		k.limitStreak.Store(0)
	} else {
		k.consecutive.Store(int32(c.FailCount))
	}
	m.applyState(k, c.State, c.Since, c.Until, c.Reason, c.Status)
}

// Keys returns every key, in file order. The slice must not be modified.
func (m *Manager) Keys() []*Key { return m.view.Load().all }

// Blacklist takes k out of rotation until reset, reload or Restore.
func (m *Manager) Blacklist(k *Key, reason string, status int) {
	k.lock()
	defer k.unlock()
	m.setStateLocked(k, Blacklisted, time.Time{}, reason, status)
}

// Cool takes k out of rotation until the deadline.
func (m *Manager) Cool(k *Key, until time.Time, reason string, status int) {
	k.lock()
	defer k.unlock()
	m.setStateLocked(k, Cooling, until, reason, status)
}

// Restore puts k back into rotation and clears its failure count.
func (m *Manager) Restore(k *Key) {
	k.lock()
	defer k.unlock()
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
	m.served.clear()
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
