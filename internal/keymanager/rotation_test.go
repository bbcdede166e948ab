package keymanager

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// drawFor calls NextFor(model) n times and counts the keys it returns.
func drawFor(t *testing.T, m *Manager, model string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		k, excluded, err := m.NextFor(model)
		if err != nil || excluded {
			t.Fatalf("NextFor(%q) = %v, %v, %v; want a key not excluded", model, k, excluded, err)
		}
		got[k.Secret().Reveal()]++
	}
	return got
}

// TestNextForModelEven: with keys excluded for a model, requests for it
// share evenly over the keys usable for it (an excluded run's share is not
// dumped on the key after it, issue i18), and requests for other models,
// interleaved, still share evenly over every usable key: the model's
// requests do not move the shared rotation.
func TestNextForModelEven(t *testing.T) {
	cases := []struct {
		name     string
		keys     int
		excluded []int // for gpt-4o
		benched  []int // blacklisted
	}{
		{"a run of three in ten", 10, []int{3, 4, 5}, nil},
		{"first and last", 7, []int{0, 6}, nil},
		{"excluded and blacklisted", 12, []int{1, 2, 3, 8}, []int{5, 9}},
		{"all but one", 4, []int{0, 1, 3}, nil},
	}
	for _, tc := range cases {
		for _, size := range []string{"small", "large"} {
			t.Run(tc.name+"/"+size, func(t *testing.T) {
				clk := newClock()
				keys := testKeys(tc.keys)
				m := New(keys, Options{Now: clk.Now})
				if size == "large" {
					// The same rotation as a large set builds it, in the
					// background.
					asLarge(m)
				}
				draw(t, m, 5) // mid-rotation
				out := map[int]bool{}
				for _, i := range tc.benched {
					m.Blacklist(keyAt(t, m, i), "invalid", 401)
					out[i] = true
				}
				for _, i := range tc.excluded {
					m.ExcludeModel(keyAt(t, m, i), "gpt-4o", 0)
				}
				if size == "large" {
					settle(t, m)
				}
				var forModel, forAll []string
				for i, k := range keys {
					if out[i] {
						continue
					}
					forAll = append(forAll, k)
					if !containsInt(tc.excluded, i) {
						forModel = append(forModel, k)
					}
				}
				for _, n := range []int{1, len(forModel), 10*len(forModel) + 3, 997} {
					model := map[string]int{}
					other := map[string]int{}
					for i := range n {
						// Interleave: two for the model, one for another.
						for k, c := range drawFor(t, m, "gpt-4o", 2) {
							model[k] += c
						}
						if i%2 == 0 {
							for k, c := range drawFor(t, m, "gpt-4o-mini", 1) {
								other[k] += c
							}
						}
					}
					checkEven(t, model, keys, forModel, 2*n)
					checkEven(t, other, keys, forAll, (n+1)/2)
				}
			})
		}
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNextForModelConcurrentEven: the model's rotation is even under
// concurrent callers too.
func TestNextForModelConcurrentEven(t *testing.T) {
	keys := testKeys(10)
	m := New(keys, Options{})
	for _, i := range []int{2, 3, 4} {
		m.ExcludeModel(keyAt(t, m, i), "gpt-4o", 0)
	}
	m.Blacklist(keyAt(t, m, 8), "invalid", 401)
	var forModel, forAll []string
	for i, k := range keys {
		if i == 8 {
			continue
		}
		forAll = append(forAll, k)
		if i < 2 || i > 4 {
			forModel = append(forModel, k)
		}
	}
	const goroutines, each = 8, 1001
	var (
		mu           sync.Mutex
		model, other = map[string]int{}, map[string]int{}
		wg           sync.WaitGroup
		failed       = make(chan error, 2*goroutines)
	)
	for g := range 2 * goroutines {
		name, counts := "gpt-4o", model
		if g%2 == 1 {
			name, counts = "other", other
		}
		wg.Go(func() {
			local := map[string]int{}
			for range each {
				k, excluded, err := m.NextFor(name)
				if err != nil || excluded {
					failed <- fmt.Errorf("NextFor(%q) = %v, %v, %v", name, k, excluded, err)
					return
				}
				local[k.Secret().Reveal()]++
			}
			mu.Lock()
			for k, c := range local {
				counts[k] += c
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Fatal(err)
	}
	checkEven(t, model, keys, forModel, goroutines*each)
	checkEven(t, other, keys, forAll, goroutines*each)
}

// TestExcludeModelDuration: an exclusion lasts the duration given, or
// MODEL_COOLDOWN for d <= 0; a shorter one never cuts a longer one short;
// the key is back in the model's rotation when it ends.
func TestExcludeModelDuration(t *testing.T) {
	clk := newClock()
	m := New(testKeys(3), Options{Now: clk.Now, ModelCooldown: time.Hour})
	k0, k1 := keyAt(t, m, 0), keyAt(t, m, 1)
	m.ExcludeModel(k0, "gemini-pro", 5*time.Hour) // a daily quota, until the reset
	m.ExcludeModel(k1, "gemini-pro", 0)
	if m.ExcludeModel(k0, "gemini-pro", time.Minute) {
		t.Error("ExcludeModel(pair already excluded) = true; want false")
	}
	until := func(k *Key) time.Duration {
		for _, e := range k.snapshot(clk.Now().UnixNano()).Models {
			if e.Model == "gemini-pro" {
				return e.Until.Sub(clk.Now())
			}
		}
		return 0
	}
	if got := until(k0); got != 5*time.Hour {
		t.Errorf("exclusion for 5h, then 1m: lasts %v; want 5h", got)
	}
	if got := until(k1); got != time.Hour {
		t.Errorf("exclusion with d=0: lasts %v; want MODEL_COOLDOWN (1h)", got)
	}
	clk.Advance(time.Hour)
	got := drawFor(t, m, "gemini-pro", 4)
	if got[k1.Secret().Reveal()] != 2 || got[k0.Secret().Reveal()] != 0 {
		t.Errorf("after 1h: draws %v; want the 1h key back (2 of 4), the 5h one still out", got)
	}
	clk.Advance(4 * time.Hour)
	if got := drawFor(t, m, "gemini-pro", 3); len(got) != 3 {
		t.Errorf("after 5h: draws %v; want every key", got)
	}
}

// TestNextForWaitsForRestingKey: when every usable key is excluded for the
// model but a key that may serve it rests, NextFor says when to retry
// (the proxy waits, or answers 503 with Retry-After); only when no key may
// serve the model is an excluded key returned.
func TestNextForWaitsForRestingKey(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	tests := []struct {
		name string
		// per key: excluded for the model for this long (0: not), and
		// cooling for this long (0: active; <0: blacklisted)
		excl, rest   []time.Duration
		wantErr      bool
		wantRetry    time.Duration
		wantExcluded bool
		neverServed  bool
	}{
		{
			name:    "resting key not excluded",
			excl:    []time.Duration{time.Hour, time.Hour, 0},
			rest:    []time.Duration{0, 0, 30 * time.Second},
			wantErr: true, wantRetry: 30 * time.Second,
		},
		{
			name:    "soonest of two resting keys",
			excl:    []time.Duration{time.Hour, 0, 0},
			rest:    []time.Duration{0, 50 * time.Second, 20 * time.Second},
			wantErr: true, wantRetry: 20 * time.Second,
		},
		{
			name:    "an exclusion ends before the resting key returns",
			excl:    []time.Duration{10 * time.Second, time.Hour, 0},
			rest:    []time.Duration{0, 0, time.Minute},
			wantErr: true, wantRetry: 10 * time.Second,
		},
		{
			name:    "resting key whose exclusion ends first",
			excl:    []time.Duration{time.Hour, 10 * time.Second},
			rest:    []time.Duration{0, time.Minute},
			wantErr: true, wantRetry: time.Minute,
		},
		{
			name:         "resting key excluded longer than its rest",
			excl:         []time.Duration{time.Hour, time.Hour},
			rest:         []time.Duration{0, time.Minute},
			wantExcluded: true,
		},
		{
			name:         "only blacklisted keys are not excluded",
			excl:         []time.Duration{time.Hour, time.Hour, 0},
			rest:         []time.Duration{0, 0, -1},
			wantExcluded: true,
		},
		{
			name:         "resting key, but no key ever served the model",
			excl:         []time.Duration{time.Hour, 0},
			rest:         []time.Duration{0, time.Minute},
			neverServed:  true,
			wantExcluded: true,
		},
		{
			name:         "every key excluded",
			excl:         []time.Duration{time.Hour, time.Hour},
			rest:         []time.Duration{0, 0},
			wantExcluded: true,
		},
	}
	for _, tt := range tests {
		for _, size := range []string{"small", "large"} {
			t.Run(tt.name+"/"+size, func(t *testing.T) {
				clk.ns.Store(now.UnixNano())
				m := New(testKeys(len(tt.excl)), Options{Now: clk.Now})
				if size == "large" {
					asLarge(m)
				}
				for i, d := range tt.excl {
					k := keyAt(t, m, i)
					if d > 0 {
						m.ExcludeModel(k, "gpt-4o", d)
					}
					switch r := tt.rest[i]; {
					case r < 0:
						m.Blacklist(k, "invalid", 401)
					case r > 0:
						m.Cool(k, clk.Now().Add(r), "limit", 429)
					}
				}
				if size == "large" {
					settle(t, m)
				}
				if !tt.neverServed {
					// Some key served the model: a resting key may serve
					// it again (the proof NextFor waits on).
					m.ServedModel("gpt-4o")
				}
				for range 3 {
					k, excluded, err := m.NextFor("gpt-4o")
					var nk *NoKeysError
					switch {
					case tt.wantErr:
						if !errors.As(err, &nk) || !nk.RetryAt.Equal(clk.Now().Add(tt.wantRetry)) {
							t.Fatalf("NextFor = %v, %v, %v; want *NoKeysError retrying in %v", k, excluded, err, tt.wantRetry)
						}
					case err != nil || k == nil || excluded != tt.wantExcluded:
						t.Fatalf("NextFor = %v, %v, %v; want a key, excluded %v", k, excluded, err, tt.wantExcluded)
					}
				}
				// Other models are served as before, while any key is usable.
				if k, excl, err := m.NextFor("other"); tt.rest[0] == 0 && (err != nil || excl || k == nil) {
					t.Errorf("NextFor(other) = %v, %v, %v; want a key", k, excl, err)
				}
				if !tt.wantErr {
					return
				}
				// At RetryAt a key may serve the model.
				clk.Advance(tt.wantRetry)
				if k, excluded, err := m.NextFor("gpt-4o"); err != nil || excluded {
					t.Errorf("NextFor at RetryAt = %v, %v, %v; want a key that may serve the model", k, excluded, err)
				}
			})
		}
	}
}

// TestBlacklistShowsStatusOfTheChange: a key blacklisted on a 403 shows 403,
// even when a success still in flight is counted afterwards (issue i18).
func TestBlacklistShowsStatusOfTheChange(t *testing.T) {
	m := New(testKeys(2), Options{})
	k := keyAt(t, m, 0)
	k.CountRequest(403, true)
	m.FailedPermanent(k, "account_deactivated", 403)
	k.CountRequest(200, false) // an attempt sent before the 403 came back
	if s := k.Snapshot(); s.State != Blacklisted || s.LastStatus != 403 {
		t.Errorf("snapshot = %v, status %d; want blacklisted, 403", s.State, s.LastStatus)
	}
	m.Restore(k)
	k.CountRequest(200, false)
	if s := k.Snapshot(); s.State != Active || s.LastStatus != 200 {
		t.Errorf("after restore: %v, status %d; want active with its last attempt's 200", s.State, s.LastStatus)
	}
	k1 := keyAt(t, m, 1)
	if _, changed := m.RateLimited(k1, time.Minute, "rate_limit_exceeded", 429); !changed {
		t.Fatal("RateLimited did not rest the key")
	}
	k1.CountRequest(200, false)
	if s := k1.Snapshot(); s.State != Cooling || s.LastStatus != 429 {
		t.Errorf("cooling key: %v, status %d; want cooling, 429", s.State, s.LastStatus)
	}
}

// asLarge makes m rebuild its rotation as a large set does, in the
// background, from now on.
func asLarge(m *Manager) {
	m.mu.Lock()
	m.inlineMax = 0
	m.install(m.view.Load().all, m.now().UnixNano())
	m.mu.Unlock()
}
