package keymanager

import (
	"maps"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// MaxModelsPerKey bounds the models one key can be excluded for; the
// oldest exclusion makes room for a new one.
const MaxModelsPerKey = 64

// modelScan bounds how many keys NextFor looks at for one that is not
// excluded for the model while its rotation is being rebuilt (a large set,
// right after a new exclusion): it costs an extra attempt at worst, never
// a scan of the whole pool.
const modelScan = 1024

type modelExclusion struct {
	model string
	until int64 // unix nanoseconds
}

// ModelExclusion is one model a key may not serve, until a time.
type ModelExclusion struct {
	Model string
	Until time.Time
}

// exclusionEnd is when k's exclusion for model ends, 0 when k is not
// excluded for it at unix time now.
func (k *Key) exclusionEnd(model string, now int64) int64 {
	x := k.ext.Load()
	if x == nil {
		return 0
	}
	p := x.models.Load()
	if p == nil {
		return 0
	}
	for _, e := range *p {
		if e.model == model {
			if now < e.until {
				return e.until
			}
			return 0
		}
	}
	return 0
}

// excludedFor reports whether k may not serve model at unix time now.
func (k *Key) excludedFor(model string, now int64) bool {
	return k.exclusionEnd(model, now) != 0
}

func (k *Key) excludedModels(now int64) []ModelExclusion {
	out := []ModelExclusion{}
	x := k.ext.Load()
	if x == nil {
		return out
	}
	if p := x.models.Load(); p != nil {
		for _, e := range *p {
			if now < e.until {
				out = append(out, ModelExclusion{Model: e.model, Until: time.Unix(0, e.until)})
			}
		}
	}
	return out
}

// ExcludeModel records that the provider said k may not use model: k is
// skipped for that model for d (d <= 0: MODEL_COOLDOWN; a per-day quota
// passes the time to the provider's daily reset), at most MaxRetryAfter,
// and keeps serving every other model; its failure count is untouched. An
// exclusion already running longer is kept. It reports whether the pair
// is new (not already excluded).
func (m *Manager) ExcludeModel(k *Key, model string, d time.Duration) bool {
	if model == "" {
		return false
	}
	if d <= 0 {
		d = m.modelTTL
	}
	d = min(d, MaxRetryAfter)
	x := k.lock()
	defer k.unlock()
	now := m.now().UnixNano()
	until := now + int64(d)
	var cur []modelExclusion
	if p := x.models.Load(); p != nil {
		cur = *p
	} else {
		m.withModels.Add(1)
	}
	next := make([]modelExclusion, 0, min(len(cur)+1, MaxModelsPerKey))
	fresh := true
	for _, e := range cur {
		if e.model == model {
			fresh = now >= e.until
			until = max(until, e.until)
			continue
		}
		if now < e.until {
			next = append(next, e)
		}
	}
	if len(next) >= MaxModelsPerKey {
		next = next[len(next)-MaxModelsPerKey+1:] // oldest first: drop them
	}
	next = append(next, modelExclusion{model: model, until: until})
	x.models.Store(&next)
	m.changed(now)
	return fresh
}

// modelRot is the rotation of one model some key is excluded for: the
// view's usable keys but those excluded, with a cursor of its own, so
// requests for the model neither take the excluded keys' share to their
// neighbours nor move the rotation other models use.
type modelRot struct {
	// excl are the positions, in the view's usable keys, of those
	// excluded for the model, ascending. Keeping the exceptions rather
	// than a copy of the usable keys costs memory by exclusions, not by
	// pool size.
	excl   []uint32
	cursor atomic.Uint64
	// ends is the soonest end of an exclusion for the model, usableEnd
	// the soonest among usable keys.
	ends, usableEnd int64
	// retryAt is, when no key may serve the model now, the soonest time
	// one may (a resting key returns, or an exclusion ends before that);
	// 0 when no key that is not blacklisted may serve it at all (then an
	// excluded key is tried, so the client gets the provider's answer).
	retryAt int64
}

// nth is the position in the view's usable keys of the p-th key not
// excluded for the model: p plus the exclusions at or before it.
func (r *modelRot) nth(p uint64) uint64 {
	lo, hi := 0, len(r.excl)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint64(r.excl[mid])-uint64(mid) <= p {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return p + uint64(lo)
}

// modelBuild gathers the model rotations during install.
type modelBuild map[string]*modelRot

// add records k's exclusions; pos is its position in usable when usable.
func (b modelBuild) add(k *Key, pos int, usable bool, now int64) {
	x := k.ext.Load()
	if x == nil {
		return
	}
	p := x.models.Load()
	if p == nil {
		return
	}
	for _, e := range *p {
		if now >= e.until {
			continue
		}
		r := b[e.model]
		if r == nil {
			r = &modelRot{ends: math.MaxInt64, usableEnd: math.MaxInt64}
			b[e.model] = r
		}
		r.ends = min(r.ends, e.until)
		if usable {
			r.excl = append(r.excl, uint32(pos))
			r.usableEnd = min(r.usableEnd, e.until)
		}
	}
}

// finish decides, for each model, when waiting helps, and carries the
// cursors of old over so a rebuild does not restart a model's rotation.
func (b modelBuild) finish(old *view, usable []*Key, shared uint64, cooling []coolingKey, now int64) map[string]*modelRot {
	for name, r := range b {
		if old != nil {
			r.carry(old, old.models[name], usable, shared, now)
		}
		may := false
		soonest := r.usableEnd
		for _, c := range cooling {
			end := c.k.exclusionEnd(name, now)
			if end <= c.until {
				may = true // resting, and free of the model by the time it returns
			}
			soonest = min(soonest, max(c.until, end))
		}
		if may && soonest != math.MaxInt64 {
			r.retryAt = soonest
		}
	}
	return b
}

// carry sets r's cursor so that the key that was next for the model in
// old (under o, or under the shared cursor when the model had no rotation
// yet) is next in r. A key leaving the model's rotation shifts the keys
// after it by one: carried as a bare count, the cursor would then step
// over the key that took its place, and a request retrying after a model
// fault would walk from one excluded key's neighbour to the next (every
// other key denied: four attempts on four denied keys). When the usable
// keys changed, or the next key was a resting one, the count is carried
// as it is.
func (r *modelRot) carry(old *view, o *modelRot, usable []*Key, shared uint64, now int64) {
	var c uint64
	if o != nil {
		c = o.cursor.Load()
	} else {
		c = shared
	}
	r.cursor.Store(c)
	if len(usable) != len(old.usable) || len(usable) == 0 ||
		(&usable[0] != &old.usable[0] && !slices.Equal(usable, old.usable)) {
		return
	}
	// The position, in the usable keys, of the key that was next.
	var pos uint64
	if o == nil {
		total := uint64(len(old.usable) + old.back(now))
		if pos = c % total; pos >= uint64(len(old.usable)) {
			return
		}
	} else {
		capable := uint64(len(old.usable) - len(o.excl))
		total := capable + uint64(old.back(now))
		if total == 0 {
			return
		}
		i := c % total
		if i >= capable {
			return
		}
		pos = o.nth(i)
	}
	capable := uint64(len(usable) - len(r.excl))
	if capable == 0 {
		return
	}
	// Its index among the keys not excluded now: the positions excluded
	// before it no longer count (if it is excluded itself, the index is
	// that of the next key that is not).
	idx := pos - uint64(sort.Search(len(r.excl), func(j int) bool { return uint64(r.excl[j]) >= pos }))
	r.cursor.Store(c - c%capable + idx%capable)
}

// NextFor is Next for a request for model. While no key is excluded for
// the model it is exactly Next. Otherwise it rotates over the usable keys
// not excluded for the model, with a cursor of its own: with K such keys,
// N requests for the model give each N/K ± 1, and requests for other
// models keep their own even rotation. When every usable key is excluded
// but a resting key may serve the model, it returns a *NoKeysError whose
// RetryAt is when one may (the caller waits or answers 503); only when no
// key that is not blacklisted may serve the model does it return an
// excluded key, with excluded true, so that the client gets the
// provider's own answer.
func (m *Manager) NextFor(model string) (k *Key, excluded bool, err error) {
	if model == "" || m.withModels.Load() == 0 {
		k, err = m.Next()
		return k, false, err
	}
	v := m.view.Load()
	now := m.now().UnixNano()
	if now >= v.wake || m.dirty.Load() {
		v = m.refresh(v, now)
	}
	r := v.models[model]
	if r == nil {
		k, err = v.pick(&m.cursor, now)
		if err != nil || !k.excludedFor(model, now) {
			return k, false, err
		}
		// Excluded since the view was built: its rotation is on the way.
		return m.scanFor(v, model, k, now)
	}
	n := uint64(len(v.usable))
	capable := n - uint64(len(r.excl))
	total := capable + uint64(v.back(now))
	for range total {
		i := (r.cursor.Add(1) - 1) % total
		if i < capable {
			k = v.usable[r.nth(i)]
		} else {
			k = v.cooling[i-capable]
		}
		if k.usableAt(now) && !k.excludedFor(model, now) {
			return k, false, nil
		}
	}
	if now >= r.usableEnd {
		// An exclusion ended since the view was built, and its rebuild is
		// on the way: look among the excluded (a bounded number of them).
		for _, pos := range r.excl[:min(len(r.excl), modelScan)] {
			if k = v.usable[pos]; k.usableAt(now) && !k.excludedFor(model, now) {
				return k, false, nil
			}
		}
	}
	if r.retryAt != 0 && m.served.has(model) {
		// A key that served the model rests: wait for it. Without that
		// proof (a client's unknown model, which every key answering
		// refused), the provider's own answer beats a 503.
		return nil, false, noKeysAt(r.retryAt, now)
	}
	k, err = v.pick(&r.cursor, now)
	return k, err == nil && k.excludedFor(model, now), err
}

// scanFor walks the shared rotation from first for a key not excluded for
// model, at most modelScan keys; failing that it returns first, excluded.
func (m *Manager) scanFor(v *view, model string, first *Key, now int64) (*Key, bool, error) {
	for range min(len(v.usable), modelScan) {
		k, err := v.pick(&m.cursor, now)
		if err != nil {
			break
		}
		if !k.excludedFor(model, now) {
			return k, false, nil
		}
	}
	return first, true, nil
}

// AnyModelExcluded reports whether some key was ever excluded for a model
// (since the last reset): until then no request needs its model read.
func (m *Manager) AnyModelExcluded() bool { return m.withModels.Load() != 0 }

// maxServedModels bounds the models remembered as served: names come
// from clients, but only those a provider answered with a success.
const maxServedModels = 4096

// servedModels is the set of models some key served while the model had
// exclusions, copy-on-write: reads (every success while the model has
// exclusions) take no lock. The zero value is empty and ready; it is safe
// for concurrent use.
type servedModels struct {
	mu  sync.Mutex // serialises writers
	set atomic.Pointer[map[string]struct{}]
}

func (s *servedModels) has(model string) bool {
	p := s.set.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[model]
	return ok
}

func (s *servedModels) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set.Store(nil)
}

// ServedModel records that a key served a request for model. It costs
// nothing while the model has no exclusions: only then does "a resting
// key may serve it" need the proof (NextFor).
func (m *Manager) ServedModel(model string) {
	if model == "" || m.withModels.Load() == 0 {
		return
	}
	if m.view.Load().models[model] == nil {
		return
	}
	s := &m.served
	if s.has(model) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := map[string]struct{}{}
	if p := s.set.Load(); p != nil {
		if _, ok := (*p)[model]; ok || len(*p) >= maxServedModels {
			return
		}
		cur = maps.Clone(*p)
	}
	cur[model] = struct{}{}
	s.set.Store(&cur)
}
