package keymanager

import (
	"time"
)

// MaxModelsPerKey bounds the models one key can be excluded for; the
// oldest exclusion makes room for a new one.
const MaxModelsPerKey = 64

// modelScan bounds how many keys NextFor looks at for one that is not
// excluded for the model: a pool where more keys than this in a row lack
// the model costs an extra attempt, never a scan of the whole pool.
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

// excludedFor reports whether k may not serve model at unix time now.
func (k *Key) excludedFor(model string, now int64) bool {
	p := k.models.Load()
	if p == nil {
		return false
	}
	for _, e := range *p {
		if e.model == model {
			return now < e.until
		}
	}
	return false
}

func (k *Key) excludedModels(now int64) []ModelExclusion {
	out := []ModelExclusion{}
	if p := k.models.Load(); p != nil {
		for _, e := range *p {
			if now < e.until {
				out = append(out, ModelExclusion{Model: e.model, Until: time.Unix(0, e.until)})
			}
		}
	}
	return out
}

// ExcludeModel records that the provider said k may not use model: k is
// skipped for that model until MODEL_COOLDOWN has passed, and keeps
// serving every other model; its failure count is untouched. It reports
// whether the pair is new (not already excluded).
func (m *Manager) ExcludeModel(k *Key, model string) bool {
	if model == "" {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := m.now().UnixNano()
	until := now + int64(m.modelTTL)
	var cur []modelExclusion
	if p := k.models.Load(); p != nil {
		cur = *p
	} else {
		m.withModels.Add(1)
	}
	next := make([]modelExclusion, 0, min(len(cur)+1, MaxModelsPerKey))
	fresh := true
	for _, e := range cur {
		if e.model == model {
			fresh = now >= e.until
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
	k.models.Store(&next)
	return fresh
}

// NextFor is Next for a request for model: it skips keys excluded for the
// model. When every key it looked at is excluded it still returns one,
// with excluded true, so that the client gets the provider's own answer.
// While no key was ever excluded for any model it is exactly Next.
func (m *Manager) NextFor(model string) (k *Key, excluded bool, err error) {
	k, err = m.Next()
	if err != nil || model == "" || m.withModels.Load() == 0 {
		return k, false, err
	}
	now := m.now().UnixNano()
	if !k.excludedFor(model, now) {
		return k, false, nil
	}
	first := k
	n := min(len(m.view.Load().usable), modelScan)
	for range n {
		k, err = m.Next()
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
