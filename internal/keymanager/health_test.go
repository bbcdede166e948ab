package keymanager

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestFailedPermanentCountsConsecutive(t *testing.T) {
	m := New(testKeys(2), Options{BlacklistThreshold: 3})
	k := keyAt(t, m, 0)
	for i := range 2 {
		if m.FailedPermanent(k, "invalid_api_key", 401) {
			t.Fatalf("failure %d blacklisted the key; want the third", i+1)
		}
	}
	m.Succeeded(k) // resets the count
	for i := range 2 {
		if m.FailedPermanent(k, "invalid_api_key", 401) {
			t.Fatalf("after a success, failure %d blacklisted the key", i+1)
		}
	}
	if !m.FailedPermanent(k, "invalid_api_key", 401) {
		t.Fatal("third consecutive failure did not blacklist the key")
	}
	s := k.Snapshot()
	if s.State != Blacklisted || s.Reason != "invalid_api_key" || s.LastStatus != 401 || s.FailCount != 3 {
		t.Errorf("snapshot = %+v; want blacklisted, invalid_api_key, 401, 3 failures", s)
	}
	if m.FailedPermanent(k, "invalid_api_key", 401) {
		t.Error("an already blacklisted key reported as blacklisted again")
	}
}

func TestRateLimitedCooldown(t *testing.T) {
	clk := newClock()
	m := New(testKeys(2), Options{Cooldown: 10 * time.Second, Now: clk.Now})
	k := keyAt(t, m, 0)
	tests := []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first episode, no Retry-After", 0, 10 * time.Second},
		{"second episode doubles", 0, 20 * time.Second},
		{"third episode doubles again", 0, 40 * time.Second},
		{"Retry-After wins", 7 * time.Second, 7 * time.Second},
		{"Retry-After capped at a day", 48 * time.Hour, MaxRetryAfter},
	}
	for _, tt := range tests {
		until, _ := m.RateLimited(k, tt.retryAfter, "rate_limit_exceeded", 429)
		if got := until.Sub(clk.Now()); got != tt.want {
			t.Errorf("%s: cooling for %v; want %v", tt.name, got, tt.want)
		}
		clk.Advance(tt.want + 2*time.Second) // the rest and its episode are over
	}
	// The doubling is capped at MaxCooldown.
	for range 20 {
		until, _ := m.RateLimited(k, 0, "rate_limit_exceeded", 429)
		clk.Advance(until.Sub(clk.Now()) + 2*time.Second)
	}
	if until, _ := m.RateLimited(k, 0, "", 429); until.Sub(clk.Now()) != MaxCooldown {
		t.Errorf("after many episodes: cooling for %v; want the %v cap", until.Sub(clk.Now()), MaxCooldown)
	}
	clk.Advance(MaxCooldown + 2*time.Second)
	m.Succeeded(k) // after the rest: the doubling starts again
	if until, _ := m.RateLimited(k, 0, "", 429); until.Sub(clk.Now()) != 10*time.Second {
		t.Errorf("after a success: cooling for %v; want the first 10s again", until.Sub(clk.Now()))
	}
}

// TestRateLimitEpisode fires many concurrent 429s at one key: they are one
// episode (no doubling), one state change told, and the deadline only
// moves later.
func TestRateLimitEpisode(t *testing.T) {
	clk := newClock()
	m := New(testKeys(2), Options{Cooldown: 60 * time.Second, Now: clk.Now})
	var r recorder
	m.SetListener(&r)
	k := keyAt(t, m, 0)
	var wg sync.WaitGroup
	for range 300 {
		wg.Go(func() { m.RateLimited(k, 0, "rate_limit_exceeded", 429) })
	}
	wg.Wait()
	s := m.Snapshots(false)[0]
	if got := s.Until.Sub(clk.Now()); s.State != Cooling || got != 60*time.Second {
		t.Errorf("after 300 concurrent 429s: %v for %v; want cooling for 60s (one episode)", s.State, got)
	}
	if len(r.seen) != 1 {
		t.Errorf("listener told %d times; want once", len(r.seen))
	}
	// A shorter Retry-After inside the episode does not shorten the rest;
	// a longer one lengthens it.
	clk.Advance(10 * time.Second)
	if until, _ := m.RateLimited(k, 5*time.Second, "rate_limit_exceeded", 429); !until.Equal(s.Until) {
		t.Errorf("shorter Retry-After moved the deadline to %v; want %v kept", until, s.Until)
	}
	if until, _ := m.RateLimited(k, 90*time.Second, "rate_limit_exceeded", 429); !until.Equal(clk.Now().Add(90 * time.Second)) {
		t.Errorf("longer Retry-After: deadline %v; want %v", until, clk.Now().Add(90*time.Second))
	}
	// After the rest, with no success between, a new limit is a second
	// episode: the cooldown doubles once.
	clk.Advance(90 * time.Second)
	if until, _ := m.RateLimited(k, 0, "", 429); until.Sub(clk.Now()) != 120*time.Second {
		t.Errorf("second episode: cooling for %v; want 120s", until.Sub(clk.Now()))
	}
}

// TestLateLimitKeepsBlacklist checks a rate limit never lowers a
// blacklisted key to cooling.
func TestLateLimitKeepsBlacklist(t *testing.T) {
	m := New(testKeys(2), Options{})
	k := keyAt(t, m, 0)
	m.Blacklist(k, "insufficient_quota", 429)
	if _, changed := m.RateLimited(k, 0, "rate_limit_exceeded", 429); changed {
		t.Error("RateLimited on a blacklisted key reported a change")
	}
	if m.QuotaExhausted(k, time.Now().Add(time.Minute)) {
		t.Error("QuotaExhausted on a blacklisted key reported a change")
	}
	if s := k.Snapshot(); s.State != Blacklisted || s.Reason != "insufficient_quota" {
		t.Errorf("after a late 429: %v (%s); want blacklisted (insufficient_quota)", s.State, s.Reason)
	}
}

// TestConcurrentPermanentBlacklistsOnce fires hundreds of permanent
// failures at one key at once: exactly one caller blacklists it and the
// listener hears it once.
func TestConcurrentPermanentBlacklistsOnce(t *testing.T) {
	m := New(testKeys(3), Options{BlacklistThreshold: 2})
	var r recorder
	m.SetListener(&r)
	k := keyAt(t, m, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	blacklisted := 0
	for range 500 {
		wg.Go(func() {
			if m.FailedPermanent(k, "invalid_api_key", 401) {
				mu.Lock()
				blacklisted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if blacklisted != 1 || len(r.seen) != 1 {
		t.Errorf("500 concurrent failures: %d callers blacklisted, listener told %d times; want 1 and 1", blacklisted, len(r.seen))
	}
}

func TestSucceededWithin(t *testing.T) {
	clk := newClock()
	m := New(testKeys(1), Options{Now: clk.Now})
	k := keyAt(t, m, 0)
	if m.SucceededWithin(k, time.Minute) {
		t.Error("a key that never succeeded counts as recently successful")
	}
	m.Succeeded(k)
	clk.Advance(59 * time.Second)
	if !m.SucceededWithin(k, time.Minute) {
		t.Error("success 59s ago not within a minute")
	}
	clk.Advance(2 * time.Second)
	if m.SucceededWithin(k, time.Minute) {
		t.Error("success 61s ago still within a minute")
	}
}

type recorder struct {
	mu   sync.Mutex
	seen []Snapshot
}

func (r *recorder) KeyChanged(k *Key, s Snapshot) {
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
}

func TestListenerHearsOwnChangesOnly(t *testing.T) {
	m := New(testKeys(3), Options{})
	var r recorder
	m.SetListener(&r)
	k0, k1 := keyAt(t, m, 0), keyAt(t, m, 1)
	m.Blacklist(k0, "invalid_api_key", 401)
	m.Restore(k0)
	// A change another replica decided is applied without an echo.
	m.Apply(k1, Change{State: Blacklisted, Since: time.Now(), Reason: "quota", Status: 429, FailCount: 1})
	if len(r.seen) != 2 || r.seen[0].State != Blacklisted || r.seen[1].State != Active {
		t.Errorf("listener heard %+v; want blacklisted then active, and not the applied change", r.seen)
	}
	if s := k1.Snapshot(); s.State != Blacklisted || s.Reason != "quota" {
		t.Errorf("applied state = %+v; want blacklisted for quota", s)
	}
	for range 6 {
		if k, _ := m.Next(); k == k1 {
			t.Fatal("an applied blacklisted key is still in rotation")
		}
	}
	m.SetListener(nil)
	m.Blacklist(k0, "x", 401)
	if len(r.seen) != 2 {
		t.Error("a removed listener still hears changes")
	}
}

// TestStaleViewAllCoolingHasRetryAt covers a large key set whose rotation
// has not been rebuilt yet when every key went cooling: the error still
// says when the soonest one returns.
func TestStaleViewAllCoolingHasRetryAt(t *testing.T) {
	clk := newClock() // frozen: the rebuild throttle keeps the old view
	m := New(testKeys(10_001), Options{Now: clk.Now})
	soonest := clk.Now().Add(time.Hour)
	for i, k := range m.Keys() {
		m.Cool(k, soonest.Add(time.Duration(i)*time.Second), "rate_limit_exceeded", 429)
	}
	_, err := m.Next()
	var nk *NoKeysError
	if !errors.As(err, &nk) || !nk.RetryAt.Equal(soonest) {
		t.Fatalf("Next() error = %v; want NoKeysError with RetryAt %v", err, soonest)
	}
}

// TestCoolingAgainRestartsSince checks a key cooled a second time reports
// when this rest began, not the first one.
func TestCoolingAgainRestartsSince(t *testing.T) {
	clk := newClock()
	m := New(testKeys(2), Options{Cooldown: time.Second, Now: clk.Now})
	k := keyAt(t, m, 0)
	m.RateLimited(k, 0, "rate_limit_exceeded", 429)
	clk.Advance(5 * time.Second) // the rest is over
	m.RateLimited(k, 0, "rate_limit_exceeded", 429)
	s := m.Snapshots(false)[0] // at the manager's clock
	if got := s.Until.Sub(s.Since); got != 2*time.Second {
		t.Errorf("second rest: until - since = %v; want 2s (since = the second limit)", got)
	}
	m.Blacklist(k, "invalid_api_key", 401)
	first := m.Snapshots(false)[0].Since
	clk.Advance(time.Second)
	m.Blacklist(k, "invalid_api_key", 401)
	if got := m.Snapshots(false)[0].Since; !got.Equal(first) {
		t.Errorf("blacklisting again moved since from %v to %v; want it kept", first, got)
	}
}
